"""MLP sub-layer of the GET block: fc2(GELU_exact(fc1(h))) (+ residual), fused epilogues."""

from __future__ import annotations

import torch
import torch.nn as nn

from getkern.ops.mlp import mlp


class MLP(nn.Module):
    """h: (..., D) -> (..., D); hidden width ``hidden``; ``residual`` is added to the output."""

    def __init__(self, dim: int, hidden: int, backend: str = "auto"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=True)
        self.fc2 = nn.Linear(hidden, dim, bias=True)
        self.backend = backend

    def forward(self, h: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        return mlp(
            h, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, residual=residual, backend=self.backend
        )
