"""Image grids as PNG files (matplotlib only; no torchvision): what training runs and ``getkern sample``
write. Labelled figures of several grids are an application's (getkern/apps/figures.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from getkern.checkpoint import atomic_write

__all__ = ["as_rgb", "make_grid", "save_grid"]


def make_grid(images: torch.Tensor, nrow: int, pad: int = 1, scale: int = 1) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> uint8 (rows*(H+pad)+pad, nrow*(W+pad)+pad[, 3]), ``nrow`` images per row,
    each pixel repeated ``scale`` times (8x8 digits are unreadable at 1x)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1 or 3, H, W), got {tuple(images.shape)}")
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if scale > 1:
        x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    B, C, H, W = x.shape
    rows = -(-B // nrow)
    grid = torch.full((C, rows * (H + pad) + pad, nrow * (W + pad) + pad), 255, dtype=torch.uint8)
    for i in range(B):
        r, c = divmod(i, nrow)
        grid[:, pad + r * (H + pad) : pad + r * (H + pad) + H, pad + c * (W + pad) : pad + c * (W + pad) + W] = x[i]
    return grid[0].numpy() if C == 1 else grid.permute(1, 2, 0).numpy()


def save_grid(images: torch.Tensor, path, nrow: int, scale: int = 1) -> Path:
    """Write :func:`make_grid` to a PNG file (atomically, pixel values exact) and return its path."""
    import matplotlib.image  # optional (getkern[demo])

    path = Path(path)
    grid = make_grid(images, nrow, scale=scale)
    atomic_write(path, lambda p: matplotlib.image.imsave(p, as_rgb(grid), format="png"))
    return path


def as_rgb(grid: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> (H, W, 3), written to PNG exactly (a grey colormap would shift some levels by one)."""
    return np.repeat(grid[..., None], 3, axis=2) if grid.ndim == 2 else grid
