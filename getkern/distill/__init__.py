"""Distillation of teacher pairs into a GET: the Trainer (reference recipe by default), checkpoints,
torchrun/DDP integration and sample grids.

The public names load on first use, so ``getkern.distill.config`` (the settings, which ``getkern train``'s
parser reads) imports no torch.
"""
from __future__ import annotations

import importlib

_PUBLIC = {"TrainConfig": "getkern.distill.config", "Trainer": "getkern.distill.trainer",
           "fpc_loss": "getkern.distill.objectives.regression", "load_ema_model": "getkern.distill.trainer",
           "load_train_checkpoint": "getkern.distill.trainer"}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'getkern.distill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
