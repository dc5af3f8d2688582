"""GET sampling with the injection transformer and the equilibrium map compiled by inductor with
frozen weights (oneDNN weight prepacking, fused bias/GELU/residual epilogues), solved by getkern.deq
(the C++ loop when built). The default eager path already fuses the same epilogues on CPU
(getkern/ops/cpu_epilogues.py) and needs no compilation; this is the option for shapes sampled so
often that minutes of compilation pay off (measure with benchmarks/test_cpu_speed_bench.py --compiled).

Same procedure as ``model(noise, y, ...)`` in eval mode; outputs agree to float rounding (about 1e-6
relative at GET-T, docs/cpp.md). Compilation happens on the first call for each input shape and takes
tens of seconds to minutes on a small CPU, so it pays off for repeated sampling.
"""
from __future__ import annotations

import torch

from getkern import deq
from getkern.models.inputs import check_inputs


class CompiledSampler:
    """``sample = CompiledSampler(model); images = sample(noise, y, iters=6)`` (no gradients)."""

    def __init__(self, model, *, solver_backend: str | None = None):
        self.model = model.eval()
        self.solver_backend = solver_backend or model.solver_backend
        options = {"freezing": True}  # weights as constants: prepacked matmuls, fused epilogues

        def equilibrium(z, c, *u):
            return model.equilibrium_fn(c, list(u))(z)

        self._inject = torch.compile(model.inject, options=options)
        self._equilibrium = torch.compile(equilibrium, options=options)

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor, y: torch.Tensor | None = None, *, iters: int = 6,
                 solver: str = "fixed_point", z0: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, tol: float | None = 1e-3,
                 return_info: bool = False, **solver_kwargs):
        model = self.model
        check_inputs(model, noise, y, iters=iters, z0=z0)
        c, u = self._inject(noise, y)
        z0 = model.initial_state(noise, generator) if z0 is None else z0
        z, info = deq.solve(lambda z: self._equilibrium(z, c, *u), z0, solver=solver, max_iter=iters,
                            tol=tol, backend=self.solver_backend, **solver_kwargs)
        out = model.decode(z)
        return (out, info) if return_info else out
