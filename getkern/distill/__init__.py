"""Distillation of teacher pairs into a GET: the Trainer (reference recipe by default), its objectives,
checkpoints and resumption, under torchrun/DDP (the process group itself: getkern/distributed.py).

The public names load on first use, so ``getkern.distill.config`` (the settings, which ``getkern train``'s
parser reads) imports no torch.
"""

from __future__ import annotations

from getkern._lazy import lazy_exports

_PUBLIC = {
    "TrainConfig": "getkern.distill.config",
    "Trainer": "getkern.distill.trainer",
    "fpc_loss": "getkern.distill.objectives.regression",
    "load_ema_model": "getkern.distill.trainer",
    "load_train_checkpoint": "getkern.checkpoint",
}
__all__ = list(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, __all__)
