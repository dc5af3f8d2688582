"""The code-generation gate on demo kernels defined here: it must pass good kernels and fail a spilling
kernel and a tl.dot kernel without tensor-core instructions. The full gate over getkern's own kernels
runs separately (`make gpu-check`, a few minutes)."""

import dataclasses
import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import triton
import triton.language as tl

from getkern.ops._aot import AotSpec, distinct_specializations, jit_launch
from getkern.tools import gpu_check

THIS = str(Path(__file__).resolve())


@triton.jit
def _demo_matmul(A, B, C, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """C = A @ B, bf16 in, fp32 accumulate: must use mma.sync (sm_80) / wgmma (sm_90)."""
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), tl.float32)
    for k in range(0, K, BK):
        a = tl.load(A + rm[:, None] * K + (k + rk)[None, :], mask=(rm[:, None] < M) & (k + rk[None, :] < K), other=0.0)
        b = tl.load(B + (k + rk)[:, None] * N + rn[None, :], mask=(k + rk[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc)
    tl.store(C + rm[:, None] * N + rn[None, :], acc.to(tl.bfloat16), mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def _demo_add(X, Y, Z, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(X + offs, mask=offs < n).to(tl.float32)
    y = tl.load(Y + offs, mask=offs < n).to(tl.float32)
    tl.store(Z + offs, (x + y).to(tl.bfloat16), mask=offs < n)


@triton.jit
def _demo_fp32_dot(A, B, C, BM: tl.constexpr):
    """An fp32 dot in IEEE precision: compiled to FMAs, no tensor cores."""
    r = tl.arange(0, BM)
    a = tl.load(A + r[:, None] * BM + r[None, :])
    b = tl.load(B + r[:, None] * BM + r[None, :])
    tl.store(C + r[:, None] * BM + r[None, :], tl.dot(a, b, input_precision="ieee"))


@triton.jit
def _demo_spill(X, Y, BLOCK: tl.constexpr):
    """Five BLOCK-wide rows live across a reduction on one warp: 5 * 2048 / 32 = 320 values per thread."""
    offs = tl.arange(0, BLOCK)
    a = tl.load(X + offs)
    b = tl.load(X + BLOCK + offs)
    c = tl.load(X + 2 * BLOCK + offs)
    d = tl.load(X + 3 * BLOCK + offs)
    e = tl.load(X + 4 * BLOCK + offs)
    s = tl.sum(a * b + c * d + e, 0)
    tl.store(Y + offs, a * s + b)
    tl.store(Y + BLOCK + offs, c * s + d)
    tl.store(Y + 2 * BLOCK + offs, e * s + a)


def good_specs():
    mm = {"A": "*bf16", "B": "*bf16", "C": "*bf16", "M": "i32", "N": "i32", "K": "i32"}
    yield AotSpec(
        "demo_matmul[bf16,64x64x32]",
        _demo_matmul,
        mm,
        {"BM": 64, "BN": 64, "BK": 32},
        num_warps=4,
        num_stages=2,
        uses_dot=True,
        values={"M": 4096, "N": 768, "K": 768},
    )
    yield AotSpec(
        "demo_add[bf16]",
        _demo_add,
        {"X": "*bf16", "Y": "*bf16", "Z": "*bf16", "n": "i32"},
        {"BLOCK": 1024},
        num_warps=4,
        values={"n": 1000},
    )


def bad_specs():
    yield AotSpec(
        "demo_fp32_dot[ieee]",
        _demo_fp32_dot,
        {"A": "*fp32", "B": "*fp32", "C": "*fp32"},
        {"BM": 16},
        num_warps=1,
        num_stages=1,
        uses_dot=True,
    )
    yield AotSpec(
        "demo_spill[2048,1 warp]", _demo_spill, {"X": "*fp32", "Y": "*fp32"}, {"BLOCK": 2048}, num_warps=1, num_stages=1
    )


@pytest.fixture(scope="module")
def demo_gate(tmp_path_factory):
    """One gate run over all demo specs, both architectures, two worker processes (~20-40 s here)."""
    return gpu_check.run_gate(
        [f"{THIS}:good_specs", f"{THIS}:bad_specs"],
        archs=(80, 90),
        jobs=2,
        cuda_sources=[],
        log_dir=tmp_path_factory.mktemp("gpu_check_logs"),
    )


def _report(result, name, arch):
    (match,) = [r for r in result.reports if r.name == name and r.arch == arch]
    return match


@pytest.mark.parametrize("arch", [80, 90])
def test_gate_passes_good_kernels_with_tensor_cores(demo_gate, arch):
    assert not demo_gate.problems
    mm = _report(demo_gate, "demo_matmul[bf16,64x64x32]", arch)
    assert mm.ok, mm.failures
    assert mm.ptx_mma == {80: "mma.sync", 90: "wgmma"}[arch]
    assert ("HGMMA" if arch == 90 else "HMMA") in mm.sass_mma
    assert 0 < mm.registers <= 255 and mm.spill_bytes == 0 and mm.shared_bytes > 0
    assert 0 < mm.occupancy <= 1
    add = _report(demo_gate, "demo_add[bf16]", arch)
    assert add.ok and add.ptx_mma == "-" and add.sass_mma == "-"


@pytest.mark.parametrize("arch", [80, 90])
def test_gate_fails_spills_and_dots_without_tensor_cores(demo_gate, arch):
    spill = _report(demo_gate, "demo_spill[2048,1 warp]", arch)
    assert spill.spill_bytes > 0 and any("spills" in f for f in spill.failures)
    dot = _report(demo_gate, "demo_fp32_dot[ieee]", arch)
    assert dot.sass_mma == "-" and any("tensor-core" in f for f in dot.failures)
    assert not demo_gate.ok
    table = gpu_check.format_table(demo_gate)
    assert "FAIL: spills" in table and "| ok |" in table


def test_judge_shared_memory_limit_and_occupancy():
    report = gpu_check.KernelReport("triton", "k", "m", 80, shared_bytes=170 * 1024, spill_bytes=0)
    gpu_check.judge(report, gpu_check.ARCHS[80], uses_dot=False)
    assert report.failures == [f"shared memory {170 * 1024} B > {163 * 1024} B limit"]
    ok = gpu_check.KernelReport("triton", "k", "m", 90, shared_bytes=170 * 1024, spill_bytes=0)
    gpu_check.judge(ok, gpu_check.ARCHS[90], uses_dot=False)
    assert ok.ok
    # Hand-checked: 128 regs * 32 lanes = 4096 per warp -> 16 warps by registers; 4-warp blocks -> 4 blocks.
    assert gpu_check.occupancy(gpu_check.ARCHS[80], 128, 0, 4) == 16 / 64
    # 100 KB of shared memory per block: one block fits in 164 KB, two do not.
    assert gpu_check.occupancy(gpu_check.ARCHS[80], 32, 100 * 1024, 8) == 8 / 64
    assert gpu_check.occupancy(gpu_check.ARCHS[90], 32, 0, 4) == 1.0


def test_parse_ptxas_log():
    log = textwrap.dedent("""\
        ptxas info    : Compiling entry function '_Z4axpyPf' for 'sm_80'
        ptxas info    : Function properties for _Z4axpyPf
            8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
        ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 360 bytes cmem[0]
        ptxas info    : Compiling entry function '_Z4axpyPf' for 'sm_90'
        ptxas info    : Function properties for _Z4axpyPf
            0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 10 registers, used 0 barriers
        """)
    stats = gpu_check.parse_ptxas_log(log)
    assert stats[("_Z4axpyPf", "sm_80")] == {"registers": 40, "stack": 8, "spill": 16, "smem": 2048}
    assert stats[("_Z4axpyPf", "sm_90")] == {"registers": 10, "stack": 0, "spill": 0, "smem": 0}


def test_discovery_lists_every_ops_module():
    ops_dir = Path(gpu_check.__file__).resolve().parents[1] / "ops"
    expected = {f"getkern.ops.{p.stem}" for p in ops_dir.glob("*.py") if p.stem != "__init__"}
    assert set(gpu_check.discover_sources()) == expected


def test_collect_specs_covers_modules_and_flags_uncovered_kernels(tmp_path, monkeypatch):
    """A package with one covered module, one kernel without a spec and a kernel-free module."""
    pkg = tmp_path / "demo_ops"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    header = "import triton\nimport triton.language as tl\nfrom getkern.ops._aot import AotSpec\n"
    (pkg / "covered.py").write_text(
        header
        + textwrap.dedent("""
        @triton.jit
        def _helper(x):
            return x * 2

        @triton.jit
        def kernel(X, BLOCK: tl.constexpr):
            offs = tl.arange(0, BLOCK)
            tl.store(X + offs, _helper(tl.load(X + offs)))

        def aot_specs():
            for block in (64, 128):
                yield AotSpec(f"kernel[{block}]", kernel, {"X": "*fp32"}, {"BLOCK": block})
        """)
    )
    (pkg / "forgotten.py").write_text(
        header
        + textwrap.dedent("""
        @triton.jit
        def lonely(X):
            tl.store(X, 1.0)
        """)
    )
    (pkg / "plain.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "demo_ops", raising=False)
    specs, problems = gpu_check.collect_specs(["demo_ops.covered", "demo_ops.forgotten", "demo_ops.plain"])
    assert [(origin, s.name) for origin, s in specs] == [
        ("demo_ops.covered", "kernel[64]"),
        ("demo_ops.covered", "kernel[128]"),
    ]
    assert len(problems) == 1 and "demo_ops.forgotten" in problems[0] and "lonely" in problems[0]


def test_getkern_ops_specs_are_valid_and_cover_every_kernel():
    """Every getkern.ops module's aot_specs() imports, yields AotSpecs, and covers all its kernels."""
    specs, problems = gpu_check.collect_specs(gpu_check.discover_sources())
    assert not problems, problems
    assert all(s.num_warps in (1, 2, 4, 8, 16) for _, s in specs)


def test_identical_compilations_are_compiled_once():
    """Two specs that differ only in name (one config chosen for two widths) share one compilation;
    a size the JIT specialises differently (n not a multiple of 16, n = 1) is a compilation of its own."""
    sig = {"X": "*bf16", "Y": "*bf16", "Z": "*bf16", "n": "i32"}
    a = AotSpec("add[D=384]", _demo_add, sig, {"BLOCK": 512}, values={"n": 384 * 256})
    b = AotSpec("add[D=512]", _demo_add, sig, {"BLOCK": 512}, values={"n": 512 * 256})
    c = AotSpec("add[D=768]", _demo_add, sig, {"BLOCK": 1024}, values={"n": 768 * 256})
    assert gpu_check._compile_key(a, 90) == gpu_check._compile_key(b, 90)
    assert len({gpu_check._compile_key(s, cc) for s in (a, b, c) for cc in (80, 90)}) == 4
    odd = dataclasses.replace(a, values={"n": 1000})
    one = dataclasses.replace(a, values={"n": 1})
    assert len({gpu_check._compile_key(s, 90) for s in (a, odd, one)}) == 3
    # One name per GET size in, one spec per distinct specialisation out, tagged where they differ.
    names = [s.name for s in distinct_specializations([a, dataclasses.replace(b, name=a.name), odd, one])]
    assert names == ["add[D=384,n%16=0]", "add[D=384,n%16>0]", "add[D=384,n=1]"]
    signature, _, attrs, _ = jit_launch(one)
    assert signature["n"] == "constexpr" and signature["X"] == "*bf16"
    assert {k: v for k, v in attrs.items() if v} == {(i,): [["tt.divisibility", 16]] for i in range(3)}


def _record_launches(monkeypatch, module, kernel_name: str) -> list:
    """Replace module.<kernel_name> by a recorder of the (args, kwargs) of each launch."""
    launches = []

    class Recorder:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((args, kwargs))

    monkeypatch.setattr(module, kernel_name, Recorder())
    monkeypatch.setattr(module, "interpreter_enabled", lambda: False)  # the GPU configs, as on CUDA
    return launches


def _jit_specialization(kernel, args, kwargs, cc=90):
    """What Triton's JIT hands to ASTSource for this launch, by its own code: the binder that
    JITFunction.run calls, then JITFunction._pack_args; attrs without the empty entries. (Under
    TRITON_INTERPRET=1 the kernel is an InterpretedFunction: the JITFunction of the same function.)"""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    if not isinstance(kernel, JITFunction):
        kernel = JITFunction(kernel.fn, **kernel.kwargs)
    backend = make_backend(GPUTarget("cuda", cc, 32))
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    _, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return signature, constexprs, {k: v for k, v in attrs.items() if v}


def _assert_launches_are_specs(kernel, launches, specs):
    """Every recorded launch specialises exactly as some spec of the kernel with its config does."""
    assert launches
    for args, kwargs in launches:
        real = _jit_specialization(kernel, args, kwargs)
        candidates = [
            s
            for s in specs
            if s.kernel is kernel
            and s.num_warps == kwargs.get("num_warps", 4)
            and s.num_stages == kwargs.get("num_stages", 3)
            and all(kwargs.get(k, v) == v for k, v in s.constexprs.items())
            and s.signature[kernel.arg_names[0]] == real[0][kernel.arg_names[0]]
        ]
        assert candidates, f"no spec for the launch {kwargs}"
        from_specs = []
        for spec in candidates:
            signature, constexprs, attrs, _ = jit_launch(spec)
            from_specs.append((signature, constexprs, {k: v for k, v in attrs.items() if v}))
        assert real in from_specs, (real, [s.name for s in candidates])


@pytest.mark.parametrize("dtype,tf32", [("bfloat16", True), ("float32", True), ("float32", False)])
def test_mlp_spec_attrs_are_the_jits_for_real_tensors(monkeypatch, dtype, tf32):
    """The MLP launches of GET-B at patch 8 (D = 768, hidden 3072, 16 tokens), forward with and without
    the kept pre-activation and the backward's GELU-grad launch, with the CPU tensors the dispatcher
    builds: the JIT's own specialisation of them equals the one the gate compiles for their spec."""
    import torch

    mlp = importlib.import_module("getkern.ops.mlp")
    matmul = importlib.import_module("getkern.ops.matmul")
    kernel, specs = matmul._linear_kernel, list(matmul.aot_specs())
    launches = _record_launches(monkeypatch, matmul, "_linear_kernel")
    monkeypatch.setattr(matmul, "cuda_fp32_matmul_is_tf32", lambda: tf32)
    dt = getattr(torch, dtype)
    B, N, D, H = 1, 16, 768, 3072
    h, residual = torch.randn(B, N, D, dtype=dt), torch.randn(B, N, D, dtype=dt)
    w1, b1, w2, b2 = (torch.randn(*shape, dtype=dt) for shape in ((H, D), (H,), (D, H), (D,)))
    mlp._forward(h, w1, b1, w2, b2, None, keep_pre=False)
    _, _, pre = mlp._forward(h, w1, b1, w2, b2, residual, keep_pre=True)
    matmul.linear_launch(h.reshape(-1, D), w2.t(), None, epilogue="gelu_grad", pre=pre)  # as mlp_backward_op
    assert len(launches) == 5
    assert {kw["DOT_PRECISION"] for _, kw in launches} == {"tf32" if tf32 or dt != torch.float32 else "ieee"}
    _assert_launches_are_specs(kernel, launches, specs)


@pytest.mark.parametrize("D,heads", [(768, 12), (1024, 16)])
def test_attention_spec_attrs_are_the_jits_for_real_tensors(monkeypatch, D, heads):
    """GET-B (12 heads) and ViT-L (16 heads: H a multiple of 16, a variant of its own) at 64 tokens,
    with c and u: the JIT's specialisation of the dispatcher's launches is one the gate compiles."""
    import torch

    attn = importlib.import_module("getkern.ops.attention")
    kernel, specs = attn._attn_fwd_kernel, list(attn.aot_specs())
    launches = _record_launches(monkeypatch, attn, "_attn_fwd_kernel")
    qkv, c, u = torch.randn(2, 64, 3 * D), torch.randn(2, 1, 3 * D), torch.randn(2, 64, 3 * D)
    attn._forward_triton(qkv.half(), c.half(), u.half(), heads, 0.125)
    _assert_launches_are_specs(kernel, launches, specs)
