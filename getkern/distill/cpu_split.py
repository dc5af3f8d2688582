"""Data parallelism inside one CPU process: a micro-batch's forward and backward as one part per
thread, each part on one intra-op thread, run side by side.

At the digits GET's sizes (1024 token rows of width 64) every op is 0.1-1 ms and ends in an OpenMP
barrier; when another process shares the cores, each barrier waits for a thread the OS has descheduled,
and a 2-thread step took 1.8x the time of the split one. On a quiet machine the split gains about 3 % on
the bare step and loses 9 % on the demo's (whose discriminator runs between the parts' forward and
backward): docs/results/cpu-speed.md. So it is opt-in (the trainer's ``cpu_split="threads"``). The
trainer's step then runs the parts in a thread pool (ATen releases the GIL inside ops) and joins them
only at the loss:

1. each part's forward, on its rows, in its own thread -> its outputs (with their graph);
2. the loss on the outputs of all rows, on the calling thread: objectives that keep state (the
   discriminator's update, statistics) see the whole micro-batch exactly as without the split;
3. each part's backward from its rows' output gradients, in its own thread;
4. each parameter's gradients summed in part order (deterministic) and added to ``.grad``.

Equal to the unsplit step up to float rounding (matmuls of fewer rows sum in another order): the
tests compare gradients and losses (tests/test_cpu_split.py). Only for forwards whose rows are independent (GET's
unrolled iterations, the ViT), which the trainer checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch


class ThreadSplit:
    """``ThreadSplit(parts)``; :meth:`step` runs one micro-batch as ``parts`` parts on as many threads."""

    def __init__(self, parts: int):
        if parts < 2:
            raise ValueError(f"ThreadSplit: parts must be at least 2, got {parts}")
        self.parts = parts
        self.pool = ThreadPoolExecutor(parts, thread_name_prefix="getkern-split")

    def _on_one_thread(self, fn):
        def run(arg):
            torch.set_num_threads(1)  # this thread's ops; the caller's count is restored after
            return fn(arg)

        return run

    def _map(self, fn, args):
        threads = torch.get_num_threads()
        try:
            return list(self.pool.map(self._on_one_thread(fn), args))
        finally:
            torch.set_num_threads(threads)

    def step(
        self,
        forward: Callable[[slice], Sequence[torch.Tensor]],
        loss_fn: Callable[[list[torch.Tensor]], torch.Tensor],
        rows: int,
        params: Sequence[torch.Tensor],
        scale: float = 1.0,
    ) -> torch.Tensor:
        """``forward(rows_slice)`` -> the outputs for those rows (each batch-first); ``loss_fn(outputs)`` ->
        the scalar loss of all ``rows``. Adds d(scale * loss)/d(param) to each param's ``.grad`` and
        returns the loss, detached."""
        bounds = torch.linspace(0, rows, min(self.parts, rows) + 1).round().long().tolist()
        slices = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
        outs = self._map(forward, slices)
        leaves = [[t.detach().requires_grad_(t.requires_grad) for t in part] for part in outs]
        loss = loss_fn([torch.cat(column) for column in zip(*leaves)])
        params = [p for p in params if p.requires_grad]  # frozen ones (a fixed pos_embed) get none
        wanted = [leaf for part in leaves for leaf in part if leaf.requires_grad]
        # The parameters too, in case the loss reaches one directly (not through the outputs).
        grads = torch.autograd.grad(scale * loss, wanted + params, allow_unused=True)
        out_grads, direct = iter(grads[: len(wanted)]), grads[len(wanted) :]
        per_part = [
            [(t, next(out_grads)) for t, leaf in zip(part, parts_leaves) if leaf.requires_grad]
            for part, parts_leaves in zip(outs, leaves)
        ]

        def backward(pairs):
            pairs = [(t, g) for t, g in pairs if g is not None]
            if not pairs:
                return [None] * len(params)
            tensors, grad_outputs = zip(*pairs)
            return torch.autograd.grad(tensors, params, grad_outputs=grad_outputs, allow_unused=True)

        part_grads = self._map(backward, per_part)
        with torch.no_grad():
            for i, p in enumerate(params):
                terms = [g[i] for g in part_grads if g[i] is not None] + ([direct[i]] if direct[i] is not None else [])
                if not terms:
                    continue
                total = terms[0]
                for g in terms[1:]:
                    total = total + g
                p.grad = total if p.grad is None else p.grad + total
        return loss.detach()
