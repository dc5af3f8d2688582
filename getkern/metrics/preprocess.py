"""Sample -> Inception input: uint8 quantisation (as GET exported its samples), then a protocol's resize
and scaling (getkern.metrics.protocols: gan-metrics, clean or fidelity)."""

from __future__ import annotations

import torch

from getkern.metrics.protocols import INCEPTION_SIZE, get_protocol


def quantize_to_uint8(samples: torch.Tensor) -> torch.Tensor:
    """Model outputs in [-1, 1] -> uint8 images: (x * 127.5 + 128).clip(0, 255), truncated like GET."""
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        raise TypeError("samples must be a floating-point tensor in [-1, 1]")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or Inf")
    return (samples.float() * 127.5 + 128).clip(0, 255).to(torch.uint8)


def inception_input(images: torch.Tensor, size: int = INCEPTION_SIZE, protocol: str | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W), C = 1 or 3 -> float32 (N, 3, size, size) as ``protocol`` (default gan-metrics)
    scales it for the network: gan-metrics in [-1, 1], clean and fidelity in [-1, 127/128]."""
    return get_protocol(protocol).preprocess(images, size)
