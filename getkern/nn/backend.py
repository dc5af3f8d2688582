"""Switch a model between the fused kernels and the PyTorch reference."""

from __future__ import annotations

import torch.nn as nn

from getkern._backend import check_backend_name


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Set ``backend`` ("auto" | "triton" | "torch") on every submodule that has one, and swap blocks:
    a module whose class declares ``fused_class`` (the plain GET/ViT block) is replaced by
    ``fused_class(module)`` for "auto"/"triton", and a fused one goes back to its plain block
    (``module.unfused()``) for "torch"; both hold the same submodule objects, nothing is copied.

    Returns ``model``, or its replacement when ``model`` is itself such a block."""
    check_backend_name(backend)
    for module in model.modules():
        if hasattr(module, "backend") and module is not model:
            module.backend = backend
    _swap_children(model, backend)
    return _swapped(model, backend)


def _swapped(module: nn.Module, backend: str) -> nn.Module:
    fused_class = getattr(type(module), "fused_class", None)
    if backend == "torch" and callable(getattr(module, "unfused", None)):
        return module.unfused()
    if backend != "torch" and fused_class is not None:
        return fused_class(module)
    return module


def _swap_children(module: nn.Module, backend: str) -> None:
    for name, child in list(module.named_children()):
        new = _swapped(child, backend)
        if new is not child:
            setattr(module, name, new)  # same key in _modules: order and state-dict keys stay
        _swap_children(new, backend)
