"""A small GET with the C++ solver loop: same samples, statistics and gradients as the Python loop."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_get

from getkern import GET

pytestmark = pytest.mark.cpp  # needs the C++ extension (conftest.py)


# helpers.TINY_GET (3 channels), class-conditional, with the decoder's bias randomised too.
SMALL = dict(cond=True, bias_std=0.2)


def inputs(model: GET, dtype: torch.dtype, batch: int = 3):
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(batch, 3, 8, 8, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (batch,), generator=g)
    z0 = torch.randn(batch, 16, 32, generator=g, dtype=dtype)
    return noise, y, z0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("solver,tol", [("fixed_point", 1e-3), ("anderson", None), ("anderson", 1e-2)])
def test_sampling_matches_python_loop(dtype, solver, tol):
    model = tiny_get(dtype=dtype, **SMALL).eval()
    noise, y, z0 = inputs(model, dtype)
    if dtype == torch.float64:  # the fused ops may not take fp64 (the toy-map tests cover the loop in fp64)
        try:
            model.equilibrium_fn(*model.inject(noise, y))(z0)
        except TypeError as error:
            pytest.skip(f"GET does not run in float64 here: {error}")
    out = {}
    for backend in ("torch", "cpp"):
        model.solver_backend = backend
        with torch.no_grad():
            out[backend] = model(noise, y, z0=z0, iters=8, solver=solver, tol=tol, stop="rel", return_info=True)
    (img_py, info_py), (img_cpp, info_cpp) = out["torch"], out["cpp"]
    assert info_cpp["backend"] == "cpp"
    assert img_cpp.abs().max() > 0  # the decoder is live, so equality below means something
    torch.testing.assert_close(img_cpp, img_py, rtol=0, atol=0)
    for key in ("nstep", "abs_trace", "rel_trace", "best_res", "fallback", "nan"):
        torch.testing.assert_close(info_cpp[key], info_py[key], rtol=0, atol=0, msg=key)
    assert info_cpp["nfev"] == info_py["nfev"]


@pytest.mark.parametrize("grad,solver", [("implicit", "anderson"), ("phantom", "fixed_point")])
def test_gradients_through_cpp_loop(grad, solver):
    """The loop is forward-only; the gradient modes wrap it (the implicit adjoint solve runs in C++ too)."""
    grads = {}
    for backend in ("torch", "cpp"):
        model = tiny_get(**SMALL)
        model.solver_backend = backend
        noise, y, z0 = inputs(model, torch.float32)
        images, info = model(
            noise,
            y,
            z0=z0,
            iters=5,
            solver=solver,
            grad=grad,
            return_iterates=True,
            return_info=True,
            adjoint_max_iter=8,
            phantom_steps=2,
        )
        loss = sum(0.8 ** (len(images) - 1 - k) * img.square().mean() for k, img in enumerate(images))
        loss.backward()
        if grad == "implicit":
            assert info["adjoint"]["backend"] == ("cpp" if backend == "cpp" else "torch")
        grads[backend] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["cpp"].keys() == grads["torch"].keys() and len(grads["cpp"]) > 10
    for name, g in grads["cpp"].items():
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, grads["torch"][name], rtol=1e-6, atol=1e-7, msg=name)
    assert any(g.abs().max() > 0 for n, g in grads["cpp"].items() if n.startswith("deq_blocks"))
