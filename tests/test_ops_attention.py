"""Fused attention: Triton kernels (under the interpreter) vs a float64 reference, forward and gradients.

Tolerance (FlashAttention style): for each output and gradient, the kernel's max error vs float64 must
be at most ERR_MULT times the error of the plain PyTorch computation in the same dtype, plus a small
absolute floor ATOL[dtype] (the fp32 PyTorch error can be ~0, and exp2 vs exp differ by a few ulps).
Outputs are poisoned: torch.use_deterministic_algorithms fills every torch.empty with NaN, so an
element a kernel forgets to write shows up as NaN.
"""

import math

import pytest
import torch

import getkern.ops.attention as attn_ops
from getkern._backend import BackendUnavailable
from getkern.models.layers import Block
from getkern.nn import Attention, set_backend
from getkern.ops import fused_attention
from getkern.ops.attention import attention_config, attention_reference

ERR_MULT = 3.0
ATOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture
def poisoned():
    """Every torch.empty / new_empty returns NaN-filled memory while the test runs."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def _inputs(B, N, D, dtype, with_c, with_u, seed):
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(B, N, 3 * D, generator=g).to(dtype)
    c = torch.randn(B, 1, 3 * D, generator=g).to(dtype) if with_c else None
    # u as GET makes it: one chunk of a wider projection (a strided view, not contiguous)
    u = torch.randn(B, N, 6 * D, generator=g).to(dtype).chunk(2, dim=-1)[1] if with_u else None
    return qkv, c, u


def _forward_backward(fn, qkv, c, u, dout):
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (qkv, c, u)]
    out = fn(*leaves)
    out.backward(dout.to(out.dtype))
    return [out.detach()] + [t.grad for t in leaves if t is not None]


def _max_err(x, ref):
    return (x.double() - ref).abs().max().item()


CASES = [  # (B, N, H, head_dim, dtype, with_c, with_u)
    (2, 1, 2, 32, torch.float32, True, True),
    (1, 17, 2, 64, torch.float16, True, False),
    (1, 65, 2, 32, torch.bfloat16, False, True),
    (1, 17, 1, 128, torch.bfloat16, True, True),
    (1, 65, 1, 128, torch.float32, False, False),
    (1, 257, 1, 32, torch.bfloat16, True, True),
    (1, 33, 1, 64, torch.float16, False, True),
]


@pytest.mark.parametrize("B,N,H,head_dim,dtype,with_c,with_u", CASES)
def test_matches_float64_forward_and_grads(poisoned, B, N, H, head_dim, dtype, with_c, with_u):
    D = H * head_dim
    qkv, c, u = _inputs(B, N, D, dtype, with_c, with_u, seed=N * 131 + head_dim)
    dout = torch.randn(B, N, D, generator=torch.Generator().manual_seed(N))

    def run(backend):
        return lambda q, cc, uu: fused_attention(q, H, c=cc, u=uu, backend=backend)

    kernel = _forward_backward(run("triton"), qkv, c, u, dout)
    same_dtype = _forward_backward(run("torch"), qkv, c, u, dout)
    exact = _forward_backward(
        lambda q, cc, uu: attention_reference(q, H, cc, uu),
        *[t.double() if t is not None else None for t in (qkv, c, u)],
        dout,
    )
    names = ["out", "dqkv"] + (["dc"] if with_c else []) + (["du"] if with_u else [])
    for name, k, t, ref in zip(names, kernel, same_dtype, exact):
        assert k.dtype == dtype and k.shape == ref.shape, name
        assert torch.isfinite(k).all(), f"{name}: unwritten (NaN) or non-finite elements"
        err, torch_err = _max_err(k, ref), _max_err(t, ref)
        assert err <= ERR_MULT * torch_err + ATOL[dtype] * ref.abs().max().item(), (
            f"{name}: kernel error {err:.3g} vs torch {dtype} error {torch_err:.3g}"
        )


def test_mixed_dtypes_promote_like_the_reference():
    """Under autocast GET mixes a bf16 projection with an fp32 class embedding: compute in fp32."""
    qkv, _, u = _inputs(1, 9, 64, torch.bfloat16, False, True, seed=1)
    c = torch.randn(1, 1, 192)
    kernel = _forward_backward(
        lambda q, cc, uu: fused_attention(q, 2, c=cc, u=uu, backend="triton"), qkv, c, u, torch.ones(1, 9, 64)
    )
    exact = _forward_backward(
        lambda q, cc, uu: attention_reference(q, 2, cc, uu), qkv.double(), c.double(), u.double(), torch.ones(1, 9, 64)
    )
    assert [t.dtype for t in kernel] == [torch.float32, torch.bfloat16, torch.float32, torch.bfloat16]
    assert _max_err(kernel[0], exact[0]) < 1e-5
    assert _max_err(kernel[2], exact[2]) < 1e-4  # dc in fp32


def test_grads_of_leaves_accumulate_independently():
    """d(qkv) and d(u) are the same values: two backward passes must still accumulate each leaf."""
    qkv, c, u = _inputs(1, 5, 32, torch.float32, True, True, seed=2)
    leaves = [t.clone().requires_grad_() for t in (qkv, c, u)]
    for _ in range(2):
        fused_attention(leaves[0], 1, c=leaves[1], u=leaves[2], backend="triton").sum().backward()
    once = _forward_backward(lambda q, cc, uu: attention_reference(q, 1, cc, uu), qkv, c, u, torch.ones(1, 5, 32))
    for leaf, grad in zip(leaves, once[1:]):
        torch.testing.assert_close(leaf.grad, 2 * grad, rtol=1e-4, atol=1e-5)


def test_scale_argument():
    qkv, _, _ = _inputs(1, 6, 32, torch.float32, False, False, seed=3)
    got = fused_attention(qkv, 1, scale=0.3, backend="triton")
    torch.testing.assert_close(got, attention_reference(qkv, 1, scale=0.3), rtol=1e-5, atol=1e-6)


def test_dispatch(monkeypatch):
    qkv, _, _ = _inputs(1, 3, 32, torch.float32, False, False, seed=4)
    calls = []
    real = attn_ops._forward_triton
    monkeypatch.setattr(attn_ops, "_forward_triton", lambda *a: calls.append(1) or real(*a))
    fused_attention(qkv, 1)  # auto + interpreter -> Triton
    fused_attention(qkv, 1, backend="torch")  # reference
    assert calls == [1]
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    torch.testing.assert_close(fused_attention(qkv, 1), attention_reference(qkv, 1))  # auto -> torch
    assert calls == [1]
    with pytest.raises(BackendUnavailable, match="fused_attention"):
        fused_attention(qkv, 1, backend="triton")
    with pytest.raises(ValueError, match="backend"):
        fused_attention(qkv, 1, backend="cuda")


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: dict(qkv=torch.zeros(2, 4, 95), num_heads=1), "qkv must be a"),
        (lambda: dict(qkv=torch.zeros(4, 96), num_heads=1), "qkv must be a"),
        (lambda: dict(qkv=torch.zeros(2, 0, 96), num_heads=1), "non-empty"),
        (lambda: dict(qkv=torch.zeros(2, 4, 96), num_heads=5), "num_heads"),
        (lambda: dict(qkv=torch.zeros(2, 4, 96, dtype=torch.int32), num_heads=1), "qkv must be float16"),
        (lambda: dict(qkv=torch.zeros(2, 4, 96, dtype=torch.float64), num_heads=1), "float64"),  # torch only
        (
            lambda: dict(qkv=torch.zeros(2, 4, 96), num_heads=1, c=torch.zeros(2, 4, 96)),
            r"c must have shape \(2, 1, 96\)",
        ),
        (
            lambda: dict(qkv=torch.zeros(2, 4, 96), num_heads=1, u=torch.zeros(1, 4, 96)),
            r"u must have shape \(2, 4, 96\)",
        ),
        (lambda: dict(qkv=torch.zeros(2, 4, 96), num_heads=1, u=torch.zeros(2, 4, 96, device="meta")), "u is on meta"),
        (lambda: dict(qkv=torch.zeros(2, 4, 96), num_heads=1, scale=math.inf), "scale"),
        (lambda: dict(qkv=torch.zeros(2, 4, 48), num_heads=1), "head dim 16"),  # torch only
    ],
)
def test_bad_inputs_raise_clear_errors(make, match):
    kwargs = make()
    with pytest.raises((ValueError, TypeError, BackendUnavailable), match=match):
        fused_attention(kwargs.pop("qkv"), kwargs.pop("num_heads"), backend="triton", **kwargs)


def test_auto_takes_the_torch_path_for_inputs_the_kernel_does_not_implement():
    for qkv, heads in ((torch.randn(2, 5, 96, dtype=torch.float64), 1), (torch.randn(2, 5, 48), 1)):
        torch.testing.assert_close(
            fused_attention(qkv, heads, backend="auto"), attn_ops.attention_reference(qkv, heads)
        )


def test_config_rule_covers_every_head_dim_dtype_and_arch():
    for arch in ((8, 0), (8, 6), (9, 0)):
        for dtype in attn_ops.DTYPES:
            for head_dim in attn_ops.HEAD_DIMS:
                cfg = attention_config(head_dim, dtype, arch)
                assert cfg.bwd_block_n1 % cfg.bwd_block_m1 == 0 and cfg.bwd_block_n1 % cfg.bwd_block_n2 == 0
    with pytest.raises(ValueError, match="head_dim"):
        attention_config(96, torch.float16, (8, 0))


def test_aot_specs_cover_the_configs_and_match_the_kernel_signatures():
    specs = list(attn_ops.aot_specs())
    assert len({s.name for s in specs}) == len(specs)
    for spec in specs:
        assert list(spec.signature) == spec.kernel.arg_names, spec.name
        assert set(spec.constexprs) == {k for k, v in spec.signature.items() if v == "constexpr"}, spec.name
        assert spec.archs == (int(spec.name.split("[sm")[1][:2]),), spec.name
    fwd = {
        (s.constexprs["HEAD_DIM"], s.signature["QKV"], s.constexprs["BLOCK_M"], s.num_warps)
        for s in specs
        if s.name.startswith("attention_fwd")
    }
    for arch in attn_ops.AOT_ARCHS:
        for dtype, ty in attn_ops._TRITON_DTYPE.items():
            for head_dim in attn_ops.HEAD_DIMS:
                cfg = attention_config(head_dim, dtype, arch)
                assert (head_dim, f"*{ty}", cfg.fwd_block_m, cfg.fwd_warps) in fwd


def test_compiled_block_has_no_graph_breaks_and_matches_eager():
    """torch.compile(fullgraph=True) over a GET block: the attention is one custom op (Triton inside,
    run by the interpreter here); aot_eager traces forward and backward without compiling C++."""
    torch.manual_seed(0)
    block = set_backend(Block(64, 2, mlp_ratio=2.0), "torch")
    block.attn.backend = "triton"
    x = torch.randn(1, 7, 64)
    c, u = torch.randn(1, 1, 192), torch.randn(1, 7, 192)

    def run(fn):
        xs = x.clone().requires_grad_()
        out = fn(xs, c, u)
        out.square().sum().backward()
        return out.detach(), xs.grad, block.attn.qkv.weight.grad.clone()

    torch._dynamo.reset()
    gm_ops = []

    def counting_backend(gm, example_inputs):
        gm_ops.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return torch._dynamo.backends.debugging.aot_eager(gm, example_inputs)

    compiled = torch.compile(block, fullgraph=True, backend=counting_backend)
    got = run(compiled)
    block.zero_grad()
    want = run(block)
    assert any("attention_forward" in op for op in gm_ops), gm_ops
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_nn_attention_module_switches_backend():
    torch.manual_seed(0)
    module = Attention(64, 2, backend="triton")
    h = torch.randn(2, 5, 64)
    fused = module(h)
    module.backend = "torch"
    torch.testing.assert_close(fused, module(h), rtol=1e-5, atol=1e-6)
    assert set(dict(module.named_parameters())) == {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}


def test_channel_strided_qkv_matches_dense(poisoned):
    """A qkv whose channel dim is not unit-stride (a transposed view) is copied once, not refused."""
    qkv = torch.randn(2, 3 * 64, 9).transpose(1, 2)  # (B, N, 3D) view, channel stride N
    assert qkv.stride(-1) != 1
    torch.testing.assert_close(
        fused_attention(qkv, 2, backend="triton"), fused_attention(qkv, 2, backend="torch"), rtol=1e-5, atol=1e-5
    )


def test_traffic_model_matches_the_counted_forward():
    """fused_attention_traffic (the docs' byte table) vs the bytes the interpreted kernel really touches."""
    from getkern.profiling.traffic import count_triton_traffic

    B, N, D, H = 1, 130, 128, 1  # head dim 128: 2 query blocks, so K/V are fetched twice per head
    qkv, c, u = _inputs(B, N, D, torch.bfloat16, True, False, seed=5)
    u = torch.randn(B, N, 3 * D).to(torch.bfloat16)  # contiguous: the model counts u's rows densely
    _, counted = count_triton_traffic(fused_attention, qkv, H, c=c, u=u, backend="triton")
    model = attn_ops.fused_attention_traffic(B, N, D, H, torch.bfloat16, attn_ops.INTERPRETER_ARCH)
    assert counted.launches == model["launches"] == 1
    assert counted.bytes == model["op_bytes"]
    assert counted.requested_bytes_read + counted.requested_bytes_written == model["tile_bytes"]


def test_alignment_promise_only_for_aligned_rows():
    """The kernels tell the compiler rows start 16-byte aligned only when the host saw it (ALIGNED)."""
    qkv, c, u = _inputs(2, 5, 64, torch.bfloat16, True, True, seed=6)  # u: GET's chunk view
    assert attn_ops._kernel_args(qkv, c, u)[3]
    odd_rows = torch.randn(2, 5, 193).to(torch.bfloat16)[..., :192]  # row stride 193
    assert not attn_ops._kernel_args(odd_rows, c, u)[3]
    got = fused_attention(odd_rows, 2, c=c, u=u, backend="triton")
    assert torch.equal(got, fused_attention(odd_rows.contiguous(), 2, c=c, u=u, backend="triton"))


def test_grid_has_no_65535_limit_on_batch_times_heads(monkeypatch):
    """B*H > 65535 (large-batch FID sampling): every launch keeps each grid axis beyond the first within
    CUDA's 65535. The launches are recorded, not run (66k interpreted programs would take minutes);
    the indexing on axes (head, batch) is what every other test of this file checks numerically."""
    from triton.runtime import interpreter

    grids = []

    def record(executor, *args, **kwargs):
        grids.append(
            tuple(executor.grid(dict(zip(executor.arg_names, args))) if callable(executor.grid) else executor.grid)
        )

    monkeypatch.setattr(interpreter.GridExecutor, "__call__", record)
    B, H = 32769, 2
    qkv = torch.randn(B, 1, 3 * 64, requires_grad=True)
    out = fused_attention(qkv, H, backend="triton")
    out.backward(torch.ones_like(out))
    assert len(grids) == 3  # forward, backward delta, backward
    assert B * H > 65535 and all(max(g[1:], default=1) <= 65535 for g in grids), grids
