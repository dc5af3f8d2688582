"""f-evaluations to reach a relative residual of 1e-3: fixed point vs Anderson (docs/solvers.md).

    pytest benchmarks/test_solver_bench.py --benchmark-only -s           # short default (seconds)
    pytest benchmarks/test_solver_bench.py --benchmark-only -s --full    # GET-T/2 at 32x32, cap 200

Each row prints the per-sample evaluation counts (the first iteration whose relative residual is below
1e-3; "-" when the cap was reached first) and the lowest relative residual reached. The time per
solve is pytest-benchmark's (wall clock; the solves run on CPU, with the PyTorch loop). The run's
summary gives one line per problem: the most evaluations any sample needed, fixed point vs Anderson.
GET-T here is randomly initialised (no trained checkpoint).
"""

from __future__ import annotations

import harness
import pytest
import torch

from getkern import GET, deq

TOL = 1e-3


def count_evaluations(f, z0, solver: str, cap: int) -> dict:
    _, info = deq.solve(f, z0, solver=solver, max_iter=cap, tol=TOL, stop="rel", check_every=1, backend="torch")
    reached = info["rel_lowest"] < TOL
    return {
        "solver": solver,
        "cap": cap,
        "nfev": info["nfev"],
        "evals_to_1e-3": [int(n) if ok else None for n, ok in zip(info["nstep"], reached)],
        "rel_lowest": [float(r) for r in info["rel_lowest"]],
        "fallback": int(info["fallback"].sum()),
    }


def report(name: str, row: dict) -> None:
    evals = " ".join("-" if n is None else str(n) for n in row["evals_to_1e-3"])
    lowest = " ".join(f"{r:.1e}" for r in row["rel_lowest"])
    print(
        f"\n{name:<28} {row['solver']:<12} cap {row['cap']:>4}  evals to rel 1e-3: {evals:<16} "
        f"lowest rel: {lowest}  fallbacks: {row['fallback']}"
    )


def _line(subject) -> str:
    def most(row):
        evals, lowest = row["evals_to_1e-3"], row["rel_lowest"]
        if any(n is None for n in evals):
            return f"not every sample within {row['cap']} (lowest rel {min(lowest):.1e} .. {max(lowest):.1e})"
        return f"{max(evals)} (max over samples)"

    return f"{subject.name}: " + " vs ".join(f"{lb} {most(r)}" for lb, r in harness.ordered(subject))


def put(benchmark, subject: str, row: dict) -> None:
    harness.SUMMARY.put(
        subject,
        row["solver"],
        question=benchmark.group,
        order=("fixed_point", "anderson"),
        render=_line,
        **{k: row[k] for k in ("cap", "evals_to_1e-3", "rel_lowest")},
    )


def toy_map(n: int = 256, batch: int = 4, seed: int = 0):
    """z -> z A^T + 0.05 tanh(z) + b, A symmetric with eigenvalues in [-0.5, 0.93]: a slow nonlinear
    contraction (Lipschitz <= 0.98), the regime Anderson is for."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    A = Q @ torch.diag(torch.linspace(-0.5, 0.93, n)) @ Q.T
    b = torch.randn(batch, n, generator=g)
    return (lambda z: z @ A.T + 0.05 * torch.tanh(z) + b), torch.zeros(batch, n)


@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
def test_toy_map_evaluations_to_rel_1e3(benchmark, solver):
    f, z0 = toy_map()
    subject = "f-evaluations to rel 1e-3, toy map n=256 B=4"
    benchmark.group = f"{subject}: fixed point vs anderson"
    row = benchmark.pedantic(count_evaluations, args=(f, z0, solver, 500), rounds=1, iterations=1)
    benchmark.extra_info.update(row)
    put(benchmark, subject, row)
    report("toy map n=256 B=4", row)
    assert all(n is not None for n in row["evals_to_1e-3"])
    if solver == "anderson":
        fixed = count_evaluations(f, z0, "fixed_point", 500)
        assert max(row["evals_to_1e-3"]) < max(fixed["evals_to_1e-3"])


@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
def test_get_t_evaluations_to_rel_1e3(benchmark, solver, full):
    size, cap = (32, 200) if full else (8, 30)
    torch.manual_seed(0)
    model = GET.from_config("GET-T/2", input_size=size, backend="torch").eval()
    noise = torch.randn(2, 3, size, size)
    with torch.no_grad():
        f = model.equilibrium_fn(*model.inject(noise))
        z0 = model.initial_state(noise, torch.Generator().manual_seed(1))
        subject = f"f-evaluations to rel 1e-3, GET-T/2 {size}x{size} random init B=2"
        benchmark.group = f"{subject}: fixed point vs anderson"
        row = benchmark.pedantic(count_evaluations, args=(f, z0, solver, cap), rounds=1, iterations=1)
    benchmark.extra_info.update(row)
    put(benchmark, subject, row)
    report(f"GET-T/2 {size}x{size} random init B=2", row)
    assert all(r == r for r in row["rel_lowest"])  # finite statistics, whatever the convergence
