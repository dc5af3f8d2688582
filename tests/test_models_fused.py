"""Whole models on the fused (Triton) path, as users run them: GET (unconditional, conditional, guided)
and ViT, forward, training iterates with every gradient mode and a training step, on backend="triton"
under the interpreter (the dispatch a GPU takes), against the PyTorch path and a float64 model.

Accuracy rule (the suite's): the fused path's error against float64 is at most twice the PyTorch
path's own error in the same dtype, plus a floor of a few float rounding units of the magnitudes
involved (the PyTorch path can be luckier than its rounding on some entries).
"""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from helpers import randomise_outputs

from getkern import GET, ViT

TINY = dict(input_size=8, patch_size=2, in_channels=1, hidden_size=64, num_heads=2, num_classes=10)
TINY_GET = dict(TINY, depth=1, deq_depth=2, mlp_ratio=2, deq_mlp_ratio=2)
TINY_VIT = dict(TINY, depth=2, mlp_ratio=2)
KINDS = ["uncond", "cond", "guided"]


def build(kind: str, arch: str = "GET", seed: int = 0):
    """A tiny model in float32 on the torch backend, with its zero-initialised outputs randomised."""
    torch.manual_seed(seed)
    cond = kind != "uncond"
    extra = dict(guidance_range=(0.0, 3.0)) if kind == "guided" else {}
    model = (
        GET(**TINY_GET, cond=cond, backend="torch", solver_backend="torch", **extra)
        if arch == "GET"
        else ViT(**TINY_VIT, cond=cond, backend="torch", **extra)
    )
    return randomise_outputs(model, std=0.3)


def variants(model):
    """(fused float32, torch float32, torch float64) copies of one model."""
    fused = copy.deepcopy(model).set_backend("triton")
    exact = copy.deepcopy(model).double()
    return fused, model, exact


def inputs(kind: str, dtype=torch.float32, B: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(B, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (B,), generator=g) if kind != "uncond" else None
    w = torch.tensor([0.0, 1.5, 3.0][:B], dtype=torch.float64) if kind == "guided" else None
    z0 = torch.randn(B, 16, 64, generator=g, dtype=torch.float64)
    return noise.to(dtype), y, w, z0.to(dtype)


def assert_as_accurate(got, same_dtype_ref, exact, floor_ulps: float = 8.0, what: str = ""):
    """``got`` (fused) is within 2x the PyTorch path's error against float64, plus a rounding floor."""
    exact = exact.double()
    err = float((got.double() - exact).abs().max())
    own = float((same_dtype_ref.double() - exact).abs().max())
    floor = floor_ulps * torch.finfo(got.dtype).eps * float(exact.abs().max())
    assert torch.isfinite(got).all(), what
    assert err <= 2 * own + floor, f"{what}: fused error {err:.3e} vs torch path {own:.3e} (floor {floor:.3e})"


def run(model, kind, noise, y, w, z0, **kw):
    dtype = next(model.parameters()).dtype
    args = dict(guidance=None if w is None else w.to(dtype))
    if isinstance(model, GET):
        args.update(z0=z0.to(dtype), tol=None)
    return model(noise.to(dtype), y, **args, **kw)


@pytest.fixture(params=["per_op", "prologue"])
def block_path(request, monkeypatch):
    """Both Triton block paths (getkern.nn.fused_block.BLOCK_PATH)."""
    monkeypatch.setattr("getkern.nn.fused_block.BLOCK_PATH", request.param)
    return request.param


@pytest.mark.slow  # the fused kernels under the Triton interpreter: 3-22 s a case
@pytest.mark.parametrize("kind", KINDS)
def test_get_inference_on_the_fused_path_matches_float64(kind, block_path, poisoned):
    fused, ref, exact = variants(build(kind))
    noise, y, w, z0 = inputs(kind)
    with torch.no_grad():
        iterates = [run(m, kind, noise, y, w, z0, iters=4, return_iterates=True) for m in (fused, ref, exact)]
        finals = [run(m, kind, noise, y, w, z0, iters=4) for m in (fused, ref, exact)]
    for k, (got, want, ex) in enumerate(zip(*iterates)):
        assert_as_accurate(got, want, ex, what=f"iterate {k}")
    assert_as_accurate(*finals, what="forward")


@pytest.mark.parametrize("kind", ["uncond", "cond"])
def test_vit_on_the_fused_path_matches_float64(kind, poisoned):
    fused, ref, exact = variants(build(kind, "ViT"))
    noise, y, w, z0 = inputs(kind)
    with torch.no_grad():
        assert_as_accurate(*(run(m, kind, noise, y, w, z0) for m in (fused, ref, exact)), what="ViT forward")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_get_16_bit_inference_on_the_fused_path(dtype):
    model = build("cond")
    fused, ref = copy.deepcopy(model).to(dtype).set_backend("triton"), copy.deepcopy(model).to(dtype)
    exact = copy.deepcopy(model).double()
    noise, y, w, z0 = inputs("cond")
    # Iterates, not the selected one: in 16 bits the per-sample lowest-residual choice between iterates of
    # near-equal residual may fall either way on the two paths (both are correct).
    with torch.no_grad():
        iterates = [run(m, "cond", noise, y, w, z0, iters=3, return_iterates=True) for m in (fused, ref, exact)]
    for k, (got, want, ex) in enumerate(zip(*iterates)):
        assert_as_accurate(got, want, ex, what=f"{dtype} iterate {k}")


def fpc_loss(outs, target):
    """The fixed-point-correction loss over decoded iterates (squared error: smooth, so float noise
    cannot flip a subgradient between the paths as |.| could)."""
    return sum(0.8 ** (len(outs) - 1 - k) * ((o - target) ** 2).mean() for k, o in enumerate(outs))


@pytest.mark.slow  # the fused kernels under the Triton interpreter: 3-22 s a case
@pytest.mark.parametrize("grad", ["unrolled", "phantom", "implicit"])
@pytest.mark.parametrize("kind", ["uncond", "guided"])
def test_get_training_gradients_on_the_fused_path_match_float64(kind, grad, monkeypatch):
    if (kind, grad) == ("guided", "implicit"):  # one gradient case on the other block path too
        monkeypatch.setattr("getkern.nn.fused_block.BLOCK_PATH", "prologue")
    models = [m.train() for m in variants(build(kind))]
    noise, y, w, z0 = inputs(kind)
    target = torch.randn(noise.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = []
    for model in models:
        dtype = next(model.parameters()).dtype
        # implicit: 8 adjoint iterations exactly on every path (interpreted kernels are slow; equal counts
        # keep the three comparable)
        extra = dict(adjoint_max_iter=8, adjoint_tol=None) if grad == "implicit" else {}
        outs = run(model, kind, noise, y, w, z0, iters=3, return_iterates=True, grad=grad, **extra)
        fpc_loss(outs, target.to(dtype)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[2].keys()
    for name in grads[2]:
        assert grads[0][name] is not None, f"{name}: no gradient on the fused path"
        assert_as_accurate(grads[0][name], grads[1][name], grads[2][name], floor_ulps=64, what=f"{grad} d{name}")


def test_vit_training_step_on_the_fused_path_matches_float64():
    """Gradient, one optimizer step, and the forward after it."""
    models = [m.train() for m in variants(build("cond", "ViT"))]
    noise, y, _, _ = inputs("cond")
    target = torch.randn(noise.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    after = []
    for model in models:
        dtype = next(model.parameters()).dtype
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        ((model(noise.to(dtype), y) - target.to(dtype)) ** 2).mean().backward()
        opt.step()
        with torch.no_grad():
            after.append(model(noise.to(dtype), y))
    params = [dict(m.named_parameters()) for m in models]
    for name in params[2]:
        assert_as_accurate(
            params[0][name].detach(),
            params[1][name].detach(),
            params[2][name].detach(),
            floor_ulps=64,
            what=f"{name} after a step",
        )
    assert_as_accurate(*after, floor_ulps=64, what="forward after a step")


def test_auto_takes_the_fused_path_and_never_raises_where_torch_runs(monkeypatch):
    """Under the interpreter "auto" is the Triton path; float64 (which no kernel takes) and strided noise
    still run; an explicit "triton" on float64 is a clear error."""
    from getkern._backend import BackendUnavailable

    mlp_ops = importlib.import_module("getkern.ops.mlp")  # the module (getkern.ops.mlp is also a function)

    model = build("cond").set_backend("auto")
    noise, y, _, z0 = inputs("cond")
    calls = []
    monkeypatch.setattr(mlp_ops, "linear_launch", _counting(mlp_ops.linear_launch, calls))  # the MLP's Triton matmul
    with torch.no_grad():
        fused = model(noise, y, z0=z0, tol=None, iters=2)
        assert calls, "auto did not take the fused path under the interpreter"
        strided = model(noise.expand(3, 4, 8, 8)[:, :1], y, z0=z0, tol=None, iters=2)  # a strided view
        torch.testing.assert_close(strided, fused, rtol=0, atol=0)
        exact = copy.deepcopy(model).double()
        out64 = exact(noise.double(), y, z0=z0.double(), tol=None, iters=2)  # auto: the PyTorch path
        assert out64.dtype == torch.float64
        with pytest.raises(BackendUnavailable, match="float64"):
            exact.set_backend("triton")(noise.double(), y, z0=z0.double(), tol=None, iters=2)


def _counting(fn, calls):
    def wrapper(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    return wrapper


def test_fp32_precision_setting_is_read_through_the_current_api():
    """IEEE fp32 ("highest", torch's default) vs TF32 ("high"), through torch.backends.*.fp32_precision;
    at IEEE, CUDA fp32 matmuls are handed to cuBLAS under "auto"."""
    from getkern import _backend

    mlp_ops = importlib.import_module("getkern.ops.matmul")  # the MLP's matmul kernels

    matmul = torch.backends.cuda.matmul
    saved = matmul.fp32_precision  # torch >= 2.9 (the oldest supported torch is 2.11)
    try:
        matmul.fp32_precision = "tf32"
        assert _backend.cuda_fp32_matmul_is_tf32() and mlp_ops._dot_precision(torch.float32) == "tf32"
        matmul.fp32_precision = "ieee"
        assert not _backend.cuda_fp32_matmul_is_tf32() and mlp_ops._dot_precision(torch.float32) == "ieee"
    finally:
        matmul.fp32_precision = saved
    assert mlp_ops._dot_precision(torch.bfloat16) == "tf32"
    x = torch.randn(2, 4)
    assert not mlp_ops.ieee_fp32_on_cuda(x)  # CPU tensors: the interpreter computes exactly anyway
    assert _backend.resolve_backend("auto", x.device, op="t", slower=True) == "torch"
    assert _backend.resolve_backend("triton", x.device, op="t", slower=True) == "triton"
