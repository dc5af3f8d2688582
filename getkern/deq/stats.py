"""Per-sample solver statistics shared by every solver: traces, the stopping test, the info dict.

Everything stays on the device; the host reads the batch stopping flag only at check points
(see docs/solvers.md, "Stopping").
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class SolverStats:
    """Bookkeeping of one solve over a batch of B samples.

    Call :meth:`observe` once per iteration with that iteration's residuals, :meth:`should_break`
    after the iteration's update, and :meth:`info` at the end.
    """

    def __init__(
        self,
        batch: int,
        device: torch.device,
        *,
        max_iter: int,
        tol: float | None,
        stop: str,
        check_every: int,
        solver: str,
        backend: str,
    ):
        self.max_iter, self.tol, self.stop, self.check_every = max_iter, tol, stop, check_every
        self.solver, self.backend = solver, backend
        self.abs_rows: list[Tensor] = []
        self.rel_rows: list[Tensor] = []
        self.nstep = torch.full((batch,), max_iter, dtype=torch.int64, device=device)
        self.nan = torch.zeros(batch, dtype=torch.bool, device=device)
        self.fallback = torch.zeros(batch, dtype=torch.int32, device=device)
        self.restarts = torch.zeros(batch, dtype=torch.int32, device=device)
        self.stopped = torch.zeros((), dtype=torch.bool, device=device)  # batch test held at or before now
        self.stop_iter = torch.full((), max_iter - 1, dtype=torch.int64, device=device)
        self.nfev = 0

    def observe(self, k: int, abs_res: Tensor, rel_res: Tensor) -> Tensor:
        """Record iteration k's (B,) fp32 residuals. Returns the residual to use in the best-iterate
        update: the ``stop`` metric, or +inf once the batch had stopped before iteration k (frozen)."""
        self.nfev += 1
        self.abs_rows.append(abs_res)
        self.rel_rows.append(rel_res)
        res = abs_res if self.stop == "abs" else rel_res
        self.nan |= ~(torch.isfinite(abs_res) & torch.isfinite(rel_res))
        res_best = torch.where(self.stopped, torch.full_like(res, float("inf")), res)
        if self.tol is not None:
            below = res < self.tol
            first = below & (self.nstep == self.max_iter) & ~self.stopped
            self.nstep = torch.where(first, torch.full_like(self.nstep, k + 1), self.nstep)
            # the reference's batch rule, except that a sample already dead (non-finite) cannot block it
            done = (below | self.nan).all()
            self.stop_iter = torch.where(~self.stopped & done, torch.full_like(self.stop_iter, k), self.stop_iter)
            self.stopped = self.stopped | done
        return res_best

    def should_break(self, k: int) -> bool:
        """Host check, only every ``check_every`` iterations (one device->host read each)."""
        if self.tol is None or (k + 1) % self.check_every or k + 1 >= self.max_iter:
            return False
        return bool(self.stopped)

    def info(self, best_res: Tensor) -> dict:
        """The statistics dict (keys documented in docs/solvers.md)."""
        rows = len(self.abs_rows)
        if self.tol is not None:  # trim iterations run after the batch stopped (one read, after the loop)
            rows = min(rows, int(self.stop_iter) + 1)
        abs_trace = torch.stack(self.abs_rows[:rows])
        rel_trace = torch.stack(self.rel_rows[:rows])
        return {
            "solver": self.solver,
            "backend": self.backend,
            "nstep": self.nstep,
            "abs_trace": abs_trace,
            "rel_trace": rel_trace,
            "abs_lowest": _nanmin_rows(abs_trace),
            "rel_lowest": _nanmin_rows(rel_trace),
            "best_res": best_res,
            "nan": self.nan,
            "fallback": self.fallback,
            "restarts": self.restarts,
            "nfev": self.nfev,
        }


def _nanmin_rows(trace: Tensor) -> Tensor:
    """(T, B) -> (B,): minimum over T ignoring NaN; +inf where nothing is finite."""
    return torch.where(torch.isnan(trace), torch.full_like(trace, float("inf")), trace).amin(0)
