"""Writes the Python Anderson solver's results on a fixed linear map to a text file, which the C++ unit
test (test_solver anderson_matches_python) must reproduce. ctest runs it first (the make_fixture test in
CMakeLists.txt), on the same machine and torch, so the comparison never crosses CPUs or BLAS builds:

    python getkern/csrc/tests/make_fixture.py build/cmake/anderson_fixture.txt

Format: one array per line, `name dtype numel v0 v1 ...` (values printed exactly, repr of float64).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from getkern import deq

B, N = 3, 7
OPTIONS = dict(solver="anderson", max_iter=12, tol=None, stop="abs", m=4, lam=1e-4, tau=0.8)


def linear_problem() -> dict[str, torch.Tensor]:
    """The affine contraction f(z) = z @ W^T + c (float64), W of spectral norm 0.9."""
    g = torch.Generator().manual_seed(7)
    w = torch.randn(N, N, generator=g, dtype=torch.float64)
    w *= 0.9 / torch.linalg.matrix_norm(w, ord=2)
    c = torch.randn(N, generator=g, dtype=torch.float64)
    z0 = torch.randn(B, N, generator=g, dtype=torch.float64)
    return {"w": w, "c": c, "z0": z0}


def expected(problem: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Python (torch) Anderson results in float32 and float64."""
    out = {}
    for dtype in (torch.float32, torch.float64):
        w, c = problem["w"].to(dtype), problem["c"].to(dtype)
        z, info = deq.solve(lambda z: z @ w.T + c, problem["z0"].to(dtype), backend="torch", **OPTIONS)
        tag = str(dtype).removeprefix("torch.")
        out[f"z_{tag}"] = z
        for key in ("abs_trace", "rel_trace", "nstep", "fallback", "best_res"):
            out[f"{key}_{tag}"] = info[key]
    return out


def render() -> str:
    problem = linear_problem()
    lines = []
    for name, t in {**problem, **expected(problem)}.items():
        values = " ".join(repr(float(v)) for v in t.double().flatten().tolist())
        lines.append(f"{name} {str(t.dtype).removeprefix('torch.')} {t.numel()} {values}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTPUT_FILE")
    Path(sys.argv[1]).write_text(render())
    print(f"wrote {sys.argv[1]}")
