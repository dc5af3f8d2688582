"""Switch every getkern.nn module inside a model between the fused kernels and the reference."""
from __future__ import annotations

import torch.nn as nn

from getkern._backend import check_backend_name


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Set ``backend`` on every submodule that has one ("auto" | "triton" | "torch"); returns model."""
    check_backend_name(backend)
    for module in model.modules():
        if hasattr(module, "backend") and module is not model:
            module.backend = backend
    return model
