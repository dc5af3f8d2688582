"""Adapter for the EDM authors' published network pickles (``edm-cifar10-32x32-cond-vp.pkl`` etc.).

Those files are plain pickles of EDM's own ``EDMPrecond``/``VPPrecond`` modules: loading one runs
code from EDM's repository (``dnnlib``, ``torch_utils``, ``training.networks``), which must be
importable (``git clone https://github.com/NVlabs/edm`` and put it on ``sys.path`` or pass
``edm_root``). Unpickling executes arbitrary code, unlike everything else in getkern (which loads
with ``weights_only=True``), so it only happens when the caller passes ``trust_pickle=True`` for a
file they trust. Not tested here (no EDM code, no network on the build machines).

The loaded network already applies its own preconditioning: ``net(x, sigma, class_labels_onehot)``;
the adapter converts getkern's integer labels to EDM's one-hot rows.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import torch

from getkern.checkpoint import CheckpointError


class EDMPickleDenoiser(torch.nn.Module):
    """D(x, sigma, labels) over an EDM network; labels: int64 (B,) -> one-hot (B, label_dim)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.label_dim = int(getattr(net, "label_dim", 0))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None):
        onehot = None
        if self.label_dim:
            if class_labels is None:
                raise ValueError("this EDM network is class-conditional: class_labels are required")
            onehot = torch.nn.functional.one_hot(class_labels, self.label_dim).to(x.device, torch.float32)
        return self.net(x.to(torch.float32), sigma.to(torch.float32), onehot).to(x.dtype)


def load_edm_pickle(path, *, trust_pickle: bool = False, edm_root=None, device="cpu") -> tuple[EDMPickleDenoiser, dict]:
    """Load the ``'ema'`` network of an EDM pickle; returns (denoiser, metadata for the pair manifest)."""
    path = Path(path)
    if not trust_pickle:
        raise CheckpointError(
            f"{path}: EDM pickles execute code when loaded; pass trust_pickle=True "
            "(CLI: --trust-pickle) only for a file you trust"
        )
    if not path.is_file():
        raise CheckpointError(f"EDM pickle {path} does not exist")
    if edm_root is not None:
        sys.path.insert(0, str(edm_root))
    try:
        import dnnlib  # noqa: F401  (EDM's own package: the pickle references it)
        import torch_utils  # noqa: F401
    except ImportError:
        raise CheckpointError(
            f"{path}: loading an EDM pickle needs EDM's code importable "
            "(dnnlib, torch_utils): clone NVlabs/edm and pass edm_root=<clone>"
        ) from None
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)  # noqa: S301 - the caller vouched for this file (trust_pickle=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign: the unpickler fails anywhere
        raise CheckpointError(f"{path} is not a readable EDM network pickle: {type(e).__name__}: {e}") from None
    if not isinstance(data, dict) or "ema" not in data:
        raise CheckpointError(f"{path} is not an EDM network pickle (no 'ema' entry)")
    try:
        net = data["ema"].to(device).eval().requires_grad_(False)
        meta = {
            "kind": "edm-pickle",
            "path": str(path),
            "img_channels": int(net.img_channels),
            "img_resolution": int(net.img_resolution),
            "num_classes": int(getattr(net, "label_dim", 0)),
        }
    except (AttributeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its 'ema' entry is not an EDM network ({e})") from None
    return EDMPickleDenoiser(net), meta
