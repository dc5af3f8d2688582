"""Anderson's attainable residual: fixed point vs Anderson, per state dtype.

On the two contractions of tests/test_deq_solvers.py (n = 64, batch 3, z0 = 0, m = 6, lam = 1e-4,
tau = 1, stop="rel", 600 iterations, no early exit, torch path): per sample, the iterations to a relative
residual of 1e-5 and 1e-8 ("-": never) and the lowest relative residual reached. Iteration counts do not
depend on the machine; the floor's last digits may.

    python benchmarks/anderson_floor.py          # the table of docs/anderson.md, "Precision"
"""

from __future__ import annotations

import torch

from getkern import deq

ITERS, N, BATCH = 600, 64, 3


def linear(dtype):
    """z A^T + b, A symmetric with eigenvalues in [-0.5, 0.95] (tests/test_deq_solvers.py linear_problem)."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(N, N, generator=g, dtype=torch.float64))
    A = (Q @ torch.diag(torch.linspace(-0.5, 0.95, N, dtype=torch.float64)) @ Q.T).to(dtype)
    b = torch.randn(BATCH, N, generator=g, dtype=torch.float64).to(dtype)
    return lambda z: z @ A.T + b


def tanh(dtype):
    """tanh(z W^T + b) with ||W||_2 = 0.95 (tests/test_deq_solvers.py tanh_problem)."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(N, N, generator=g, dtype=torch.float64)
    W = (W * 0.95 / torch.linalg.matrix_norm(W, ord=2)).to(dtype)
    b = torch.randn(BATCH, N, generator=g, dtype=torch.float64).to(dtype)
    return lambda z: torch.tanh(z @ W.T + b)


def first_below(trace: torch.Tensor, tol: float) -> list[str]:
    hit = trace < tol
    return [str(int(i) + 1) if any_ else "-" for i, any_ in zip(hit.int().argmax(0), hit.any(0))]


def rows():
    for problem in (linear, tanh):
        for dtype in (torch.float64, torch.float32):
            for solver in ("fixed_point", "anderson"):
                _, info = deq.solve(
                    problem(dtype),
                    torch.zeros(BATCH, N, dtype=dtype),
                    solver=solver,
                    max_iter=ITERS,
                    stop="rel",
                    backend="torch",
                )
                tr = info["rel_trace"]
                yield (
                    problem.__name__,
                    str(dtype).removeprefix("torch."),
                    solver,
                    " ".join(first_below(tr, 1e-5)),
                    " ".join(first_below(tr, 1e-8)),
                    " ".join(f"{v:.1e}" for v in tr.amin(0).tolist()),
                    " ".join(map(str, info["restarts"].tolist())),
                )


if __name__ == "__main__":
    torch.set_num_threads(1)
    print("| problem | dtype | solver | iterations to 1e-5 | to 1e-8 | lowest relative residual | restarts |")
    print("|---|---|---|---|---|---|---|")
    for row in rows():
        print("| " + " | ".join(row) + " |")
