"""FID protocols: how uint8 images become Inception inputs, and how the Inception Score is split.

Published FIDs are only comparable when computed the same way; the resize alone moves pixels by up to
170/255 between these protocols on random images. Each protocol imitates one package:

``gan-metrics`` (the default): **pytorch-gan-metrics** (0.5.x), what the GET paper's evaluation calls
    (``get_inception_score_and_fid``, reference statistics of the CIFAR-10 test set). Samples are
    quantised to uint8 and divided by 255; ``F.interpolate(bilinear, align_corners=False)`` to 299
    (half-pixel centres, no antialiasing); ``2 x - 1``. Network: pytorch-fid's port of the TF
    Inception (``pt_inception-2015-12-05-6726825d.pth``). Inception Score over 10 consecutive splits,
    no shuffle.
``clean``: **clean-fid** (0.1.35, ``mode="clean"``). Each channel of the uint8 image as a float32 PIL
    image, ``resize((299, 299), BICUBIC)`` (antialiased), clipped to [0, 255]; ``(x - 128) / 128``.
    Network: clean-fid uses NVIDIA's TorchScript port (``inception-2015-12-05.pt``). clean-fid has no
    Inception Score; getkern computes it as gan-metrics does.
``fidelity``: **torch-fidelity** (0.4.0). The uint8 image as float32, TF1 ``resize_bilinear``
    (``align_corners=False``, no half-pixel centres: output pixel i samples ``i * in / out``);
    ``(x - 128) / 128``. Network: torch-fidelity's copy of pytorch-fid's weights
    (``weights-inception-2015-12-05-6726825d.pth``, same sha256 prefix). Inception Score over 10 splits
    after a fixed shuffle (``np.random.RandomState(2020).permutation``).

Grayscale images are repeated to three channels first. tests/test_metrics_protocols.py checks each
preprocessing against its package on random images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from getkern.errors import GetkernError, UsageError
from getkern.metrics.resize import tf_bilinear_resize

INCEPTION_SIZE = 299  # the networks' input side; here, below preprocess.py, which builds on the protocols
PROTOCOLS = ("gan-metrics", "clean", "fidelity")  # also in getkern/commands/fid_stats.py (no torch there)
DEFAULT_PROTOCOL = "gan-metrics"


def _rgb(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise TypeError(
            f"images must be a uint8 tensor (N, C, H, W), got "
            f"{images.dtype if isinstance(images, torch.Tensor) else type(images).__name__}"
        )
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1)


def preprocess_gan_metrics(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, 3, size, size) in [-1, 1], as pytorch-gan-metrics' InceptionV3
    (resize_input and normalize_input on) sees ``uint8 / 255``."""
    x = _rgb(images).float().div(255)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return 2 * x - 1


def preprocess_fidelity(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, 3, size, size) in [-1, 127/128]: TF1 bilinear, (x - 128) / 128."""
    x = tf_bilinear_resize(_rgb(images).float(), size, float32_coordinates=True)
    return (x - 128) / 128


def _pil_bicubic(channel: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    # A 2-D float32 array becomes a mode "F" image (fromarray's inference; its mode argument is deprecated).
    return np.asarray(Image.fromarray(channel).resize((size, size), resample=Image.BICUBIC))


def preprocess_clean(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, 3, size, size): per channel PIL bicubic on float32, clipped to
    [0, 255], then (x - 128) / 128, as clean-fid's ``mode="clean"`` resizer and feature extractor."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise GetkernError(
            "--fid-protocol clean resizes with Pillow (PIL), which is not installed: pip install pillow"
        ) from None
    x = _rgb(images).cpu().numpy().astype(np.float32)
    out = np.empty((x.shape[0], 3, size, size), np.float32)
    for i in range(x.shape[0]):
        for c in range(3):
            out[i, c] = _pil_bicubic(x[i, c], size).clip(0, 255)
    t = torch.from_numpy(out).to(images.device)
    return (t - 128) / 128


@dataclass(frozen=True)
class FIDProtocol:
    name: str
    imitates: str
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    inception_score_shuffle_seed: int | None  # None: consecutive splits of the samples in order


_PROTOCOLS = {
    "gan-metrics": FIDProtocol(
        "gan-metrics", "pytorch-gan-metrics 0.5 (the GET paper's evaluation)", preprocess_gan_metrics, None
    ),
    "clean": FIDProtocol("clean", "clean-fid 0.1.35, mode='clean'", preprocess_clean, None),
    "fidelity": FIDProtocol("fidelity", "torch-fidelity 0.4", preprocess_fidelity, 2020),
}


def get_protocol(name: str | FIDProtocol | None, option: str = "--fid-protocol") -> FIDProtocol:
    """The protocol called ``name`` (None: the default); an unknown name is a UsageError naming ``option``."""
    if isinstance(name, FIDProtocol):
        return name
    if name is None:
        name = DEFAULT_PROTOCOL
    if name not in _PROTOCOLS:
        raise UsageError(f"{option} {name!r}: expected one of {', '.join(PROTOCOLS)}")
    return _PROTOCOLS[name]
