"""FLOPs of a piece of work by torch.utils.flop_counter.FlopCounterMode, getkern's custom ops included
(getkern.ops.flops registers their formulas), forward and backward."""

from __future__ import annotations

from torch.utils.flop_counter import FlopCounterMode

import getkern.ops.flops  # noqa: F401  (registers the custom ops' formulas)

__all__ = ["count_flops"]


class _TotalsOnly:
    """Stands in for FlopCounterMode's module tracker: only the total is wanted here, and the tracker's
    backward hooks refuse the nested ``autograd.grad`` of the implicit gradient's adjoint solve."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def count_flops(fn) -> int:
    """FLOPs of ``fn()``, forward and backward, custom ops included."""
    mode = FlopCounterMode(display=False)
    mode.mod_tracker = _TotalsOnly()
    with mode:
        fn()
    return int(mode.get_total_flops())
