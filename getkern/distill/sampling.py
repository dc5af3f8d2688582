"""Seeded sampling for the commands and the demo (``sample_get``), on top of :func:`getkern.sample`."""
from __future__ import annotations

import warnings

import torch

from getkern.models import GET
from getkern.sampling import sample


def load_get(path, backend: str = "auto") -> GET:
    """Deprecated: use :func:`getkern.load` (which also loads ViTs, run folders and Hub ids).

    A GET in eval mode from any checkpoint kind :func:`getkern.load` reads."""
    warnings.warn("getkern.distill.sampling.load_get is deprecated: use getkern.load(path, backend=...)",
                  DeprecationWarning, stacklevel=2)
    from getkern.checkpoint import CheckpointError
    from getkern.loading import load
    model = load(path, backend=backend)
    if not isinstance(model, GET):
        raise CheckpointError(f"{path} holds a {type(model).__name__}, not a GET")
    return model


@torch.no_grad()
def sample_get(model: GET, num: int, *, seed: int = 0, iters: int = 6, solver: str = "fixed_point",
               labels: torch.Tensor | None = None, noise: torch.Tensor | None = None, batch_size: int = 500,
               guidance: float | torch.Tensor | None = None,
               **solver_kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``num`` images (num, C, H, W) float32 on CPU, and the labels. ``noise`` (num, C, H, W) defaults to
    N(0, I) seeded by ``seed``; z0 always comes from ``seed`` (drawn after the noise, as
    ``getkern.sample(generator=torch.Generator().manual_seed(seed))`` draws them). Class-conditional
    models take ``labels`` (num,) int64, default 0, 1, ..., K-1, 0, 1, ... . Guidance-distilled models
    take ``guidance`` w (a number or (num,))."""
    g = torch.Generator().manual_seed(seed)
    if model.cond and labels is None:
        labels = torch.arange(num) % model.num_classes
    if model.cond and len(labels) != num:
        raise ValueError(f"labels must have shape ({num},), got {tuple(labels.shape)}")
    images, used = sample(model, labels if model.cond else num, generator=g, iters=iters, solver=solver,
                          noise=noise, guidance=guidance, batch_size=batch_size, return_labels=True,
                          **solver_kwargs)
    return images.float().cpu(), (used if model.cond else labels)


def class_rows(num_classes: int, per_class: int) -> torch.Tensor:
    """Labels for a grid with one row per class: (num_classes * per_class,) = [0]*per_class + [1]*per_class ..."""
    return torch.arange(num_classes).repeat_interleave(per_class)
