"""Derived random streams of a training run: one generator per (seed, epoch), (seed, step), ... so that a
rank, a micro-batch or a resumed run draws the same numbers as the uninterrupted single-process run.
Its own module because the Trainer and the objectives both draw from these streams."""

from __future__ import annotations

import torch


def hash_seeds(*seeds: int) -> int:
    """A 63-bit seed from a tuple of ints (so (seed, epoch) and (seed, step) streams never collide)."""
    h = 1469598103934665603
    for s in seeds:
        h = ((h ^ (s & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


def seeded_generator(*seeds: int) -> torch.Generator:
    """A CPU generator seeded with :func:`hash_seeds` of ``seeds``."""
    g = torch.Generator()
    g.manual_seed(hash_seeds(*seeds))
    return g
