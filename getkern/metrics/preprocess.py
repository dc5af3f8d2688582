"""Sample -> Inception input: uint8 quantisation (as GET exported its samples), then the TF-style
resize and (x - 128) / 128 scaling the TF Inception graph expects."""
from __future__ import annotations

import torch

from getkern.metrics.resize import tf_bilinear_resize

INCEPTION_SIZE = 299


def quantize_to_uint8(samples: torch.Tensor) -> torch.Tensor:
    """Model outputs in [-1, 1] -> uint8 images: (x * 127.5 + 128).clip(0, 255), truncated like GET."""
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        raise TypeError("samples must be a floating-point tensor in [-1, 1]")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or Inf")
    return (samples.float() * 127.5 + 128).clip(0, 255).to(torch.uint8)


def inception_input(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """uint8 (N, C, H, W), C = 1 or 3 -> float32 (N, 3, size, size) in [-1, 127/128]."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise TypeError(f"images must be a uint8 tensor (N, C, H, W), got "
                        f"{images.dtype if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    x = images.float().expand(-1, 3, -1, -1)  # grayscale -> RGB by repetition
    return (tf_bilinear_resize(x, size) - 128.0) / 128.0
