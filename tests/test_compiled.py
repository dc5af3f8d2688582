"""CompiledSampler (inductor, frozen weights): same images as the eager GET, both solvers, conditional."""

import pytest
import torch
from helpers import tiny_get

from getkern.sampling import CompiledSampler

pytestmark = pytest.mark.slow  # an inductor compile each: the first about 20 s

SMALL = dict(in_channels=1, deq_mlp_ratio=2, cond=True)  # on top of helpers.TINY_GET


def test_compiled_sampler_matches_eager_model():
    model = tiny_get(**SMALL).eval()
    noise, y, z0 = torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 9]), torch.randn(3, 16, 32)
    sample = CompiledSampler(model)
    with torch.no_grad():
        for solver, iters in (("fixed_point", 6), ("anderson", 5)):
            out, info = sample(noise, y, z0=z0, iters=iters, solver=solver, return_info=True)
            ref, ref_info = model(noise, y, z0=z0, iters=iters, solver=solver, return_info=True)
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
            assert info["abs_trace"].shape == ref_info["abs_trace"].shape


def test_model_compiles_fullgraph_with_auto_solver_and_checks_values_in_eager():
    """torch.compile(model, fullgraph=True) of inference (PyTorch path; solver "auto", which takes the
    Python loop while compiling since the C++ loop cannot be traced): no graph break from the input
    checks (their value checks need the host, so they run in eager mode only), same images."""
    model = tiny_get(**SMALL, solver_backend="auto").eval()
    noise, y, z0 = torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 9]), torch.randn(3, 16, 32)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        out = compiled(noise, y, z0=z0, iters=4, tol=None)
        ref = model(noise, y, z0=z0, iters=4, tol=None)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="NaN"):
            model(noise.clone().fill_(float("nan")), y, z0=z0)
