"""Freezing parts of the student (Zheng & Yang 2024 train only a few layers of a pretrained network)."""
from __future__ import annotations

import torch.nn as nn


def freeze_parameters(model: nn.Module, prefixes: list[str]) -> int:
    """Set ``requires_grad=False`` on every parameter whose dotted name starts with one of ``prefixes``
    (a whole module: ``"blocks"`` freezes ``blocks.*``, ``"blocks.0"`` only the first block) and return
    how many parameters (elements) were frozen. For a GET, ``["x_embedder", "y_embedder", "blocks",
    "qkv_inj"]`` freezes the injection transformer and trains the equilibrium blocks and the decoder."""
    names = [n for n, _ in model.named_parameters()]
    roots = sorted({n.split(".")[0] for n in names})
    frozen = 0
    for prefix in prefixes:
        hits = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            raise ValueError(f"freeze: {prefix!r} names no parameter of the {type(model).__name__} "
                             f"(its top-level parameter names: {roots})")
    for name, p in model.named_parameters():
        if any(name == q or name.startswith(q + ".") for q in prefixes) and p.requires_grad:
            p.requires_grad_(False)
            frozen += p.numel()
    if prefixes and not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"freeze={prefixes} freezes every trainable parameter of the {type(model).__name__}")
    return frozen
