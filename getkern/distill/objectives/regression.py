"""The regression term of GET's recipe: fixed-point correction over the K decoded iterates."""

from __future__ import annotations

import torch


def fpc_sum(distances: list[torch.Tensor], weight: float) -> torch.Tensor:
    """sum_k weight^(K-1-k) * distances[k]: the last iterate counts fully, earlier ones geometrically less."""
    K = len(distances)
    return sum(weight ** (K - 1 - k) * d for k, d in enumerate(distances))


def fpc_loss(iterates: list[torch.Tensor], target: torch.Tensor, weight: float, kind: str = "l1"):
    """Fixed-point-correction loss sum_k weight^(K-1-k) * mean|x_k - target|^p over K decoded iterates."""
    base = (lambda a: (a - target).abs().mean()) if kind == "l1" else (lambda a: ((a - target) ** 2).mean())
    return fpc_sum([base(x) for x in iterates], weight)
