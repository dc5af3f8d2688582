"""getkern: fast one-step image generation with Generative Equilibrium Transformers.

    model = getkern.load("runs/get")                          # any checkpoint kind, eval mode
    images = getkern.sample(model, 16, generator=0)            # nominally in [-1, 1], not clamped

The public names load on first use, so ``import getkern`` (and ``getkern --help``) stays fast.
"""

from __future__ import annotations

from getkern._lazy import lazy_exports

__version__ = "0.1.0"

_PUBLIC = {
    "GET": "getkern.models",
    "ViT": "getkern.models",
    "load": "getkern.loading",
    "sample": "getkern.sampling",
    "CheckpointError": "getkern.checkpoint",
    "GetkernError": "getkern.errors",
    "UsageError": "getkern.errors",
}
__all__ = [*_PUBLIC, "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, __all__)
