"""The cases of ``getkern gpu-validate`` (runner: getkern.tools.gpu_validate): phases 1-3.

Every case is small and data-driven: a table of shapes per op, one shape set for the GPU and a tiny
one for ``--dry`` (CPU, Triton interpreter). Accuracy rule (the suite's, tests/test_models_fused.py):
the Triton path's max error against float64 is at most twice the PyTorch path's own error in the same
dtype, plus a floor of a few rounding units of the magnitudes involved (8 for outputs, 64 for
gradients; the rounding unit is TF32's, 2^-10, for fp32 under fp32_precision="tf32"). The Triton
call runs with ``torch.use_deterministic_algorithms(True)``, which fills every ``torch.empty`` with
NaN, so an element a kernel forgets to write shows as NaN (and every output is checked finite).
Whole models (phase 3): getkern.tools.gpu_validate_models; timings and verdicts (phases 4-5):
getkern.tools.gpu_validate_timings.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from getkern.tools.gpu_validate import NEEDS_GPU

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16
DTYPE_NAMES = {F32: "fp32", BF16: "bf16", F16: "fp16", torch.float64: "fp64"}
TF32_EPS = 2.0**-10
TINY = dict(input_size=8, patch_size=2, in_channels=1, hidden_size=64, num_heads=2, num_classes=10)
TINY_GET = dict(TINY, depth=1, deq_depth=2, mlp_ratio=2, deq_mlp_ratio=2)
TINY_VIT = dict(TINY, depth=2, mlp_ratio=2)


@dataclass
class Context:
    rec: object
    device: torch.device
    dry: bool
    out: Path
    build: object = None
    ceilings: dict = field(default_factory=dict)  # measured rates every later ratio uses
    data: dict = field(default_factory=dict)  # timings and failures the verdicts read
    _models: dict = field(default_factory=dict)

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def gen(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def randn(self, g, *shape, dtype=F32, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return (torch.randn(shape, generator=g, device=self.device) * scale + shift).to(dtype)


# ---------------------------------------------------------------------- helpers


@contextlib.contextmanager
def poisoned():
    """torch.empty returns NaN-filled memory while inside (deterministic mode's memory fill)."""
    import torch.utils.deterministic as det

    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        det.fill_uninitialized_memory,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.use_deterministic_algorithms(True, warn_only=True)
        det.fill_uninitialized_memory = True
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
            det.fill_uninitialized_memory = previous[2]


@contextlib.contextmanager
def precision(mode: str | None):
    """torch.backends.cuda.matmul.fp32_precision = mode ("ieee" | "tf32") inside; None leaves it."""
    if mode is None:
        yield
        return
    matmul = torch.backends.cuda.matmul
    saved = matmul.fp32_precision
    matmul.fp32_precision = mode
    try:
        yield
    finally:
        matmul.fp32_precision = saved


@contextlib.contextmanager
def block_path(path: str | None):
    """getkern.nn.fused_block.BLOCK_PATH = path inside (the switch of docs/defaults.md)."""
    from getkern.nn import fused_block

    saved = fused_block.BLOCK_PATH
    fused_block.BLOCK_PATH = path or saved
    try:
        yield
    finally:
        fused_block.BLOCK_PATH = saved


class Checks:
    """Collects rule checks of one case: per-tensor {err, own, floor} and the failures."""

    def __init__(self):
        self.numbers: dict = {}
        self.failures: list[str] = []
        self.worst = (0.0, "")

    def rule(self, name, got, ref, exact, ulps: float = 8.0, eps: float | None = None, keep: bool = True) -> None:
        exact = exact.detach().double()
        err = float((got.detach().double() - exact).abs().max())
        own = float((ref.detach().double() - exact).abs().max())
        unit = eps if eps is not None else torch.finfo(got.dtype).eps
        floor = ulps * unit * float(exact.abs().max())
        finite = bool(torch.isfinite(got).all())
        bound = 2 * own + floor
        ratio = err / bound if bound > 0 else (0.0 if err == 0 else float("inf"))
        if not finite:
            ratio = float("inf")
        if keep:
            self.numbers[name] = {"err": err, "own": own, "floor": floor}
        if not ratio <= self.worst[0]:
            self.worst = (ratio, name)
        if not (finite and err <= bound):
            self.failures.append(
                f"{name}: {'non-finite output; ' if not finite else ''}error {err:.3g} > 2 x {own:.3g} + {floor:.3g}"
            )

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.numbers[name] = bool(ok)
        if not ok:
            self.failures.append(f"{name}{': ' + detail if detail else ''}")

    def result(self, **extra) -> dict:
        return {**extra, **self.numbers, "worst": [self.worst[1], self.worst[0]], "failures": self.failures}


def _eps_for(dtype, mode):
    return TF32_EPS if (dtype == F32 and mode == "tf32") else None


def compare_op(
    ctx: Context,
    call,
    inputs: dict,
    grads: tuple,
    *,
    seed: int,
    mode: str | None = None,
    out_names=("out",),
    batched: tuple | None = None,
    keep: int | None = None,
) -> dict:
    """Triton (poisoned) vs PyTorch (same dtype) vs PyTorch (float64) on ``inputs``; forward and, for
    the inputs named in ``grads``, gradients of sum(out * cotangent). ``call(tensors, backend)`` returns
    the outputs. With ``keep``: the kernel runs on all of ``inputs``, the references only on the last
    ``keep`` rows of the ``batched`` inputs (for tensors too large for a float64 copy)."""
    chk = Checks()
    g = ctx.gen(seed)
    cots: list = []
    dtype = next(iter(inputs.values())).dtype
    eps = _eps_for(dtype, mode)

    def run(src, backend, double, poison, cut):
        ts = {
            k: (v.detach().double() if double else v.detach()).clone().requires_grad_(k in grads)
            for k, v in src.items()
        }
        with poisoned() if poison else contextlib.nullcontext(), precision(mode):
            outs = call(ts, backend)
            if grads:
                if not cots:
                    cots.extend(torch.randn(o.shape, generator=g, device=o.device).to(o.dtype) for o in outs)
                cs = [c[-cut:] if cut else c for c in cots]
                sum((o * c.to(o.dtype)).sum() for o, c in zip(outs, cs)).backward()
        return [o.detach() for o in outs] + [ts[k].grad for k in grads]

    kernel = run(inputs, "triton", False, True, None)
    small = inputs
    if keep:
        small = {k: (v[-keep:] if k in batched else v) for k, v in inputs.items()}
        kernel = [t[-keep:] for t in kernel]
    same = run(small, "torch", False, False, keep)
    exact = run(small, "torch", True, False, keep)
    names = list(out_names) + [f"d{k}" for k in grads]
    for i, (name, k, s, e) in enumerate(zip(names, kernel, same, exact)):
        if k is None:
            chk.check(name, False, "no gradient on the Triton path")
            continue
        chk.rule(name, k, s, e, ulps=8.0 if i < len(out_names) else 64.0, eps=eps)
    return chk.result(dtype=DTYPE_NAMES[dtype], **({"fp32_precision": mode} if mode else {}))


# ---------------------------------------------------------------------- phase 1: environment


def _nvidia_smi(query: str) -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def environment(ctx: Context) -> dict:
    import numpy

    from getkern import _extension

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    cuda_home = _extension.find_cuda_home()
    n = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version,
        "numpy": numpy.__version__,
        "cpu_count": os.cpu_count(),
        "cuda_home": cuda_home,
        "nvcc": _extension.nvcc_version(cuda_home) if cuda_home else None,
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET"),
        "dry": ctx.dry,
        "deadline_s": ctx.rec.deadline_s,
        "argv": sys.argv[1:],
    }
    arch = None
    if ctx.gpu:
        props = torch.cuda.get_device_properties(0)
        major, minor = torch.cuda.get_device_capability(0)
        arch = f"{major}.{minor}"
        n.update(
            device=props.name,
            capability=arch,
            sms=props.multi_processor_count,
            memory_GiB=props.total_memory / 2**30,
            driver=_nvidia_smi("driver_version"),
            cudnn=torch.backends.cudnn.version(),
            l2_MB=getattr(props, "L2_cache_size", 0) / 2**20,
        )
    device = n.get("device", "cpu (dry)" if ctx.dry else "no GPU")
    n["versions"] = (
        f"torch {n['torch']} (CUDA {n['torch_cuda']}), triton {triton_version}, numpy {n['numpy']}, "
        f"Python {n['python']}, nvcc {n['nvcc']}" + (f", driver {n['driver']}" if ctx.gpu else "")
    )
    ctx.rec.add("versions and device", "pass", {k: v for k, v in n.items() if k != "versions"})
    return {"device": device, "versions": n["versions"], "arch": arch}


def _event_ms(fn, reps: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def ceilings(ctx: Context) -> None:
    """Device-to-device copy bandwidth and large matmul rates (CUDA events, median, warm-up excluded)."""
    names = (
        "ceiling: device copy bandwidth",
        "ceiling: bf16 matmul 8192^3",
        "ceiling: TF32 matmul 8192^3",
        "ceiling: fp32 IEEE matmul 8192^3",
    )
    if not ctx.gpu:
        for name in names:
            ctx.rec.skip_gpu(name)
        return

    def copy_bw():
        src = torch.randn(2**28, device=ctx.device)  # 1 GiB: far past the L2
        dst = torch.empty_like(src)
        ms = _event_ms(lambda: dst.copy_(src), 10)
        ctx.ceilings["copy_Bps"] = 2 * src.nbytes / (ms / 1e3)
        return {"ms": ms, "TB_per_s": ctx.ceilings["copy_Bps"] / 1e12, "bytes": 2 * src.nbytes}

    def matmul(dtype, mode, key):
        def case():
            a = torch.randn(8192, 8192, device=ctx.device).to(dtype)
            b = torch.randn(8192, 8192, device=ctx.device).to(dtype)
            with precision(mode):
                ms = _event_ms(lambda: a @ b, 5)
            ctx.ceilings[key] = 2 * 8192**3 / (ms / 1e3)
            return {"ms": ms, "TFLOP_per_s": ctx.ceilings[key] / 1e12}

        return case

    for name, fn in zip(
        names,
        (
            copy_bw,
            matmul(BF16, None, "bf16_flops"),
            matmul(F32, "tf32", "tf32_flops"),
            matmul(F32, "ieee", "fp32_flops"),
        ),
    ):
        ctx.rec.run(name, fn)
    torch.cuda.empty_cache()


# ---------------------------------------------------------------------- phase 2: op correctness


def _attention_cases(dry: bool):
    """(B, H, N, head_dim, dtype, with_c, with_u): every N x head dim, dtypes and c/u spread over them."""
    ns, dts, cus = (1, 17, 65, 256, 257), (F32, BF16, F16), ((True, True), (False, True), (True, False), (False, False))
    cases = []
    for i, hd in enumerate((32, 64, 128)):
        for j, n in enumerate(ns):
            dt, (c, u) = dts[(i + j) % 3], cus[(i + 2 * j) % 4]
            if dry and n > 65:
                continue
            cases.append((1 if dry else 2, 2 if dry else 3, n, hd, dt, c, u))
        if not dry:
            cases.append((2, 12 if hd == 64 else 3, 256, hd, BF16, True, True))  # GET's shape
    if dry:
        cases.append((1, 1, 257, 32, BF16, True, True))  # several key and query blocks
    return cases


def attention_case(ctx, B, H, N, hd, dtype, with_c, with_u, seed, mode=None, keep=None, grads=True):
    from getkern.ops import fused_attention

    D = H * hd
    g = ctx.gen(seed)
    inputs = {"qkv": ctx.randn(g, B, N, 3 * D, dtype=dtype)}
    if with_c:
        inputs["c"] = ctx.randn(g, B, 1, 3 * D, dtype=dtype, scale=0.5)
    if with_u:  # as GET makes u: one chunk of a wider projection (a strided view)
        inputs["u6"] = ctx.randn(g, B, N, 6 * D, dtype=dtype, scale=0.5)

    def call(t, backend):
        u = t["u6"].chunk(2, dim=-1)[1] if "u6" in t else None
        return (fused_attention(t["qkv"], H, c=t.get("c"), u=u, backend=backend),)

    names = tuple(inputs) if grads else ()
    numbers = compare_op(ctx, call, inputs, names, seed=seed + 1, mode=mode, batched=tuple(inputs), keep=keep)
    if keep is None:
        _check_lse(ctx, numbers, inputs, H, mode)
    return {"shape": [B, H, N, hd], "c": with_c, "u": with_u, **numbers}


def _check_lse(ctx, numbers, inputs, H, mode):
    """The saved log-sum-exp (B, H, N) of the scaled scores, vs float64 and the same-dtype torch path."""
    import math

    import getkern.ops.attention as attn_ops

    qkv, c = inputs["qkv"], inputs.get("c")
    u = inputs["u6"].chunk(2, dim=-1)[1] if "u6" in inputs else None
    if qkv.dtype == BF16 and (c is not None or u is not None) and os.environ.get("TRITON_INTERPRET", "0") != "0":
        # measured: the interpreter converts fp32 -> bf16 by truncation (a GPU rounds to nearest), so the
        # rounded qkv + c + u and with it the lse differ from round-to-nearest references by ~2^-9
        numbers["lse"] = "not checked under the interpreter (bf16 with c/u: its fp32->bf16 conversion truncates)"
        return
    D = qkv.shape[-1] // 3
    scale = 1.0 / math.sqrt(D // H)
    with poisoned(), precision(mode):
        _, lse = attn_ops._attention_forward_op(qkv, c, u, H, scale)

    def ref(dtype):
        s = qkv.to(dtype) + (0 if c is None else c.to(dtype)) + (0 if u is None else u.to(dtype))
        B, N, _ = s.shape
        q, k = (s[..., i * D : (i + 1) * D].reshape(B, N, H, D // H).transpose(1, 2) for i in (0, 1))
        with precision(mode):
            return torch.logsumexp(
                (q @ k.transpose(-1, -2)).to(torch.float64 if dtype == torch.float64 else F32) * scale, dim=-1
            )

    chk = Checks()
    chk.rule("lse", lse, ref(qkv.dtype), ref(torch.float64), eps=_eps_for(qkv.dtype, mode))
    numbers.update(chk.numbers)
    numbers["failures"] = numbers["failures"] + chk.failures
    if chk.worst[0] > numbers["worst"][1]:
        numbers["worst"] = [chk.worst[1], chk.worst[0]]


def layer_norm_case(ctx, M, D, dtype, residual, seed, keep=None, grads=True):
    from getkern.ops import layer_norm

    g = ctx.gen(seed)
    inputs = {
        "x": ctx.randn(g, M, D, dtype=dtype, scale=2.0, shift=0.5),
        "w": ctx.randn(g, D, dtype=dtype, scale=0.2, shift=1.0),
        "b": ctx.randn(g, D, dtype=dtype, scale=0.1),
    }
    if residual:
        inputs["r"] = ctx.randn(g, M, D, dtype=dtype)

    def call(t, backend):
        out = layer_norm(t["x"], t["w"], t["b"], 1e-6, residual=t.get("r"), backend=backend)
        return out if residual else (out,)

    names = ("s", "y") if residual else ("y",)
    return {
        "shape": [M, D],
        **compare_op(
            ctx,
            call,
            inputs,
            tuple(inputs) if grads else (),
            seed=seed + 1,
            out_names=names,
            batched=("x", "r"),
            keep=keep,
        ),
    }


def _linear_params(ctx, g, n_out, n_in, dtype):
    return (ctx.randn(g, n_out, n_in, dtype=dtype, scale=n_in**-0.5), ctx.randn(g, n_out, dtype=dtype, scale=0.1))


def mlp_case(ctx, B, N, D, Hd, dtype, residual, seed, mode=None, keep=None, grads=True):
    from getkern.ops import mlp

    g = ctx.gen(seed)
    inputs = {"h": ctx.randn(g, B, N, D, dtype=dtype)}
    inputs["w1"], inputs["b1"] = _linear_params(ctx, g, Hd, D, dtype)
    inputs["w2"], inputs["b2"] = _linear_params(ctx, g, D, Hd, dtype)
    if residual:
        inputs["res"] = ctx.randn(g, B, N, D, dtype=dtype)

    def call(t, backend):
        return (mlp(t["h"], t["w1"], t["b1"], t["w2"], t["b2"], residual=t.get("res"), backend=backend),)

    return {
        "shape": [B, N, D, Hd],
        "residual": residual,
        **compare_op(
            ctx, call, inputs, tuple(inputs) if grads else (), seed=seed + 1, mode=mode, batched=("h", "res"), keep=keep
        ),
    }


def ln_linear_case(ctx, B, N, K, Nout, dtype, seed, mode=None):
    from getkern.ops.ln_linear import layer_norm_linear

    g = ctx.gen(seed)
    inputs = {
        "x": ctx.randn(g, B, N, K, dtype=dtype, scale=2.0, shift=0.3),
        "nw": ctx.randn(g, K, dtype=dtype, scale=0.2, shift=1.0),
        "nb": ctx.randn(g, K, dtype=dtype, scale=0.1),
    }
    inputs["w"], inputs["b"] = _linear_params(ctx, g, Nout, K, dtype)

    def call(t, backend):
        return (layer_norm_linear(t["x"], t["nw"], t["nb"], t["w"], t["b"], 1e-6, backend=backend),)

    return {"shape": [B, N, K, Nout], **compare_op(ctx, call, inputs, tuple(inputs), seed=seed + 1, mode=mode)}


def ln_mlp_case(ctx, B, N, D, Hd, dtype, seed, mode=None):
    from getkern.ops.ln_mlp import add_layer_norm_mlp

    g = ctx.gen(seed)
    inputs = {
        "x": ctx.randn(g, B, N, D, dtype=dtype),
        "a": ctx.randn(g, B, N, D, dtype=dtype, shift=0.2),
        "nw": ctx.randn(g, D, dtype=dtype, scale=0.2, shift=1.0),
        "nb": ctx.randn(g, D, dtype=dtype, scale=0.1),
    }
    inputs["w1"], inputs["b1"] = _linear_params(ctx, g, Hd, D, dtype)
    inputs["w2"], inputs["b2"] = _linear_params(ctx, g, D, Hd, dtype)

    def call(t, backend):
        return (
            add_layer_norm_mlp(
                t["x"], t["a"], t["nw"], t["nb"], t["w1"], t["b1"], t["w2"], t["b2"], 1e-6, backend=backend
            ),
        )

    return {"shape": [B, N, D, Hd], **compare_op(ctx, call, inputs, tuple(inputs), seed=seed + 1, mode=mode)}


def anderson_lockstep_case(ctx, B, m, n, dtype, tau, iters, seed):
    """Both passes on both backends from the same state every iteration (the PyTorch path's state is
    carried on): ring slots bitwise, Gram row, residuals, z_next and the best iterate by the rule."""
    from getkern.deq.anderson import bordered_solve
    from getkern.ops.anderson import REL_EPS, anderson_mix, anderson_record

    g = ctx.gen(seed)
    x0 = ctx.randn(g, B, n)
    z = ctx.randn(g, B, n, dtype=dtype)
    # the solver's start: zero rings (the PyTorch path reads unused slots with a zero weight); the
    # Triton copy gets its never-written slots poisoned with NaN (its passes must not read them)
    state = {"F": torch.zeros((B, m, n), device=ctx.device, dtype=dtype)}
    state["G"] = state["F"].clone()
    state["gram"] = torch.full((B, m, m), float("nan"), device=ctx.device)
    state["best"], state["best_res"] = z.clone(), torch.full((B,), float("inf"), device=ctx.device)
    chk = Checks()
    for k in range(iters):
        fz = (0.5 * torch.tanh(z.float().roll(1, dims=1)) + x0).to(dtype)
        tri = {key: v.clone() for key, v in state.items()}
        tri["F"][:, min(k, m) :] = float("nan")
        tri["G"][:, min(k, m) :] = float("nan")
        with poisoned():
            t_abs, t_rel = anderson_record(fz, z, tri["F"], tri["G"], tri["gram"], k, backend="triton")
        r_abs, r_rel = anderson_record(fz, z, state["F"], state["G"], state["gram"], k, backend="torch")
        slot, valid = k % m, min(k + 1, m)
        chk.check(
            f"k{k} rings",
            torch.equal(tri["F"][:, :valid], state["F"][:, :valid])
            and torch.equal(tri["G"][:, :valid], state["G"][:, :valid]),
            "F/G slots differ",
        )
        G64 = state["G"].double()
        row64 = torch.einsum("bin,bn->bi", G64[:, :valid], G64[:, slot])
        abs64 = G64[:, slot].norm(dim=1)
        rel64 = abs64 / (state["F"][:, slot].double().norm(dim=1) + REL_EPS)
        chk.rule(f"k{k} gram", tri["gram"][:, slot, :valid], state["gram"][:, slot, :valid], row64, keep=False)
        chk.rule(f"k{k} abs", t_abs, r_abs, abs64, keep=False)
        chk.rule(f"k{k} rel", t_rel, r_rel, rel64, keep=False)
        if k == 0:
            alpha = torch.zeros(B, m, device=ctx.device)
            alpha[:, 0] = 1.0
        else:
            alpha, ok = bordered_solve(state["gram"], k, 1e-4)
            plain = torch.zeros_like(alpha)
            plain[:, slot] = 1.0
            alpha = torch.where(ok.unsqueeze(1), alpha, plain).contiguous()
        res = r_abs
        with poisoned():
            t_z = anderson_mix(
                tri["F"],
                tri["G"],
                alpha,
                tau,
                k=k,
                res=res,
                best=tri["best"],
                best_res=tri["best_res"],
                backend="triton",
            )
        r_z = anderson_mix(
            state["F"],
            state["G"],
            alpha,
            tau,
            k=k,
            res=res,
            best=state["best"],
            best_res=state["best_res"],
            backend="torch",
        )
        F64 = state["F"].double()[:, :valid]
        z64 = torch.einsum("bi,bin->bn", alpha.double()[:, :valid], F64 - (1 - tau) * G64[:, :valid])
        chk.rule(f"k{k} z_next", t_z, r_z, z64, keep=False)
        chk.check(
            f"k{k} best",
            torch.equal(tri["best"], state["best"]) and torch.equal(tri["best_res"], state["best_res"]),
            "best iterate differs",
        )
        z = r_z
    return chk.result(shape=[B, m, n], dtype=DTYPE_NAMES[dtype], tau=tau, iters=iters)


def anderson_solve_case(ctx, B, n, dtype, seed):
    """deq.solve with Anderson on the Triton passes vs the PyTorch passes vs float64, end to end."""
    from getkern.deq import solve

    g = ctx.gen(seed)
    x0 = ctx.randn(g, B, n)
    z0 = ctx.randn(g, B, n, dtype=dtype)

    def f(z):
        return 0.5 * torch.tanh(z.roll(1, dims=1)) + x0.to(z.dtype)

    outs = [
        solve(f, z0.to(dt), solver="anderson", max_iter=12, tol=None, backend=be)[0]
        for dt, be in ((dtype, "triton"), (dtype, "torch"), (torch.float64, "torch"))
    ]
    chk = Checks()
    chk.rule("z_star", *outs)
    return chk.result(shape=[B, n], dtype=DTYPE_NAMES[dtype])


def correctness(ctx: Context) -> None:
    rec, dry = ctx.rec, ctx.dry
    for i, (B, H, N, hd, dt, c, u) in enumerate(_attention_cases(dry)):
        rec.run(
            f"attention fwd+bwd+lse N={N} hd={hd} {DTYPE_NAMES[dt]} c={int(c)} u={int(u)}",
            attention_case,
            ctx,
            B,
            H,
            N,
            hd,
            dt,
            c,
            u,
            seed=100 + i,
        )
    ln = (
        [(34, 64, F32, True), (17, 100, BF16, False), (17, 256, F16, True)]
        if dry
        else [
            (514, 64, F32, False),
            (514, 256, BF16, True),
            (514, 384, F16, False),
            (514, 768, BF16, True),
            (514, 768, F32, True),
            (514, 1024, F16, True),
            (513, 1000, BF16, False),
        ]
    )
    for i, (M, D, dt, r) in enumerate(ln):
        rec.run(
            f"layer_norm fwd+bwd M={M} D={D} {DTYPE_NAMES[dt]} residual={int(r)}",
            layer_norm_case,
            ctx,
            M,
            D,
            dt,
            r,
            seed=200 + i,
        )
    mlps = (
        [(1, 17, 64, 128, F32, True), (1, 17, 48, 96, BF16, False), (1, 9, 64, 256, F16, True)]
        if dry
        else [
            (2, 257, 64, 256, BF16, True),
            (2, 257, 768, 3072, BF16, True),
            (2, 257, 768, 9216, F16, False),
            (2, 257, 768, 3072, F32, True),
            (2, 257, 200, 800, BF16, True),
            (1, 256, 1024, 4096, BF16, False),
        ]
    )
    for i, (B, N, D, Hd, dt, r) in enumerate(mlps):
        rec.run(
            f"mlp fwd+bwd {B}x{N}x{D} hidden={Hd} {DTYPE_NAMES[dt]} residual={int(r)}",
            mlp_case,
            ctx,
            B,
            N,
            D,
            Hd,
            dt,
            r,
            seed=300 + i,
        )
    lnl = (
        [(1, 17, 64, 192, F32), (1, 17, 48, 144, BF16)]
        if dry
        else [(2, 257, 768, 2304, BF16), (2, 257, 64, 192, F16), (2, 257, 200, 600, F32), (2, 256, 1024, 3072, BF16)]
    )
    for i, (B, N, K, Nout, dt) in enumerate(lnl):
        rec.run(
            f"layer_norm_linear fwd+bwd {B}x{N}x{K} -> {Nout} {DTYPE_NAMES[dt]}",
            ln_linear_case,
            ctx,
            B,
            N,
            K,
            Nout,
            dt,
            seed=400 + i,
        )
    lnm = (
        [(1, 17, 64, 128, F32), (1, 17, 48, 96, BF16)]
        if dry
        else [(2, 257, 768, 9216, BF16), (2, 257, 64, 256, F16), (2, 257, 200, 800, F32), (2, 256, 768, 3072, BF16)]
    )
    for i, (B, N, D, Hd, dt) in enumerate(lnm):
        rec.run(
            f"add_layer_norm_mlp fwd+bwd {B}x{N}x{D} hidden={Hd} {DTYPE_NAMES[dt]}",
            ln_mlp_case,
            ctx,
            B,
            N,
            D,
            Hd,
            dt,
            seed=500 + i,
        )
    # fp32 under both settings of torch.backends.cuda.matmul.fp32_precision (an explicit "triton")
    B, N, D, Hd, H = (1, 17, 64, 128, 2) if dry else (2, 257, 768, 3072, 12)
    for j, mode in enumerate(("ieee", "tf32")):
        rec.run(f"fp32 {mode}: mlp", mlp_case, ctx, B, N, D, Hd, F32, True, seed=600 + j, mode=mode)
        rec.run(f"fp32 {mode}: layer_norm_linear", ln_linear_case, ctx, B, N, D, 3 * D, F32, seed=610 + j, mode=mode)
        rec.run(f"fp32 {mode}: add_layer_norm_mlp", ln_mlp_case, ctx, B, N, D, Hd, F32, seed=620 + j, mode=mode)
        rec.run(
            f"fp32 {mode}: attention",
            attention_case,
            ctx,
            B,
            H,
            65 if dry else 256,
            D // H,
            F32,
            True,
            True,
            seed=630 + j,
            mode=mode,
        )
    anderson = (
        [(2, 3, 300, F32, 1.0, 5), (2, 3, 300, BF16, 0.7, 4)]
        if dry
        else [
            (16, 6, 256 * 768, F32, 1.0, 10),
            (16, 6, 256 * 768, BF16, 1.0, 10),
            (16, 6, 256 * 768, F16, 0.7, 10),
            (128, 6, 4096 + 7, F32, 0.7, 8),
        ]
    )
    for i, (B, m, n, dt, tau, iters) in enumerate(anderson):
        rec.run(
            f"anderson passes lock-step B={B} m={m} n={n} {DTYPE_NAMES[dt]} tau={tau}",
            anderson_lockstep_case,
            ctx,
            B,
            m,
            n,
            dt,
            tau,
            iters,
            seed=700 + i,
        )
    for i, dt in enumerate((F32, BF16)):
        B, n = (2, 300) if dry else (64, 256 * 768)
        rec.run(
            f"anderson solve (Triton passes) {DTYPE_NAMES[dt]} B={B} n={n}",
            anderson_solve_case,
            ctx,
            B,
            n,
            dt,
            seed=800 + i,
        )


# ---------------------------------------------------------------------- run last: sizes that could corrupt memory


def large_and_compiled(ctx: Context) -> None:
    """Index-overflow cases (> 2^31 elements, B*H > 65535); an out-of-bounds write there would poison
    the CUDA context, so they run after everything else. Then the JIT's register/spill counts. The
    kernel runs on the whole tensor, the references on its last rows (sliced: same per-row math)."""
    rec, dry = ctx.rec, ctx.dry
    stand_in = {"dry_stand_in": True} if dry else {}
    big_rows = 2**31 // 768 + 3

    def wrapped(fn, *args, **kw):
        def case():
            try:
                return {**stand_in, **fn(*args, **kw)}
            finally:
                if ctx.gpu:
                    torch.cuda.empty_cache()

        return case

    rec.run(
        "B*H > 65535: attention fwd+bwd B=5462 H=12 N=17 hd=64 bf16",
        wrapped(
            attention_case,
            ctx,
            3 if dry else 5462,
            2 if dry else 12,
            5 if dry else 17,
            64 if not dry else 32,
            BF16,
            True,
            True,
            seed=900,
            keep=2,
        ),
    )
    rec.run(
        f"> 2^31 elements: add+layer_norm fwd ({big_rows} x 768 bf16)",
        wrapped(
            layer_norm_case, ctx, 20 if dry else big_rows, 64 if dry else 768, BF16, True, seed=901, keep=4, grads=False
        ),
    )
    rec.run(
        f"> 2^31 elements: mlp fwd ({2**31 // 3072 + 5} x 768, hidden 3072 bf16)",
        wrapped(
            mlp_case,
            ctx,
            20 if dry else 2**31 // 3072 + 5,
            1,
            64 if dry else 768,
            128 if dry else 3072,
            BF16,
            False,
            seed=902,
            keep=4,
            grads=False,
        ),
    )
    rec.run(
        "> 2^31 elements: attention fwd (B=3641 N=256 H=12 hd=64 bf16, c and u)",
        wrapped(
            attention_case,
            ctx,
            3 if dry else 2**31 // (256 * 2304) + 1,
            2 if dry else 12,
            5 if dry else 256,
            32 if dry else 64,
            BF16,
            True,
            True,
            seed=903,
            keep=2,
            grads=False,
        ),
    )
    if not ctx.gpu:
        rec.skip_gpu("registers/spills of the JIT-compiled kernels", "the interpreter compiles nothing")
        return
    for name, numbers in jit_kernel_stats():
        spills = numbers.get("n_spills")
        rec.add(
            f"registers/spills: {name}",
            "fail" if spills else "pass",
            numbers,
            reason=f"{spills} spilled registers" if spills else None,
        )


def jit_kernel_stats():
    """(kernel variant, {n_regs, n_spills, ...}) of every getkern kernel the JIT compiled so far."""
    import importlib

    import triton

    seen = []
    for mod_name in ("attention", "layernorm", "matmul", "anderson"):  # the modules defining kernels
        module = importlib.import_module(f"getkern.ops.{mod_name}")
        for attr, fn in vars(module).items():
            if not isinstance(fn, triton.runtime.jit.JITFunction):
                continue
            for entry in getattr(fn, "device_caches", {}).values():
                cache = entry[0] if isinstance(entry, tuple) else {}
                for i, (key, kernel) in enumerate(cache.items()):
                    meta = getattr(kernel, "metadata", None)
                    numbers = {
                        "key": str(key)[:240],
                        "n_regs": getattr(kernel, "n_regs", None),
                        "n_spills": getattr(kernel, "n_spills", None),
                        "num_warps": getattr(meta, "num_warps", None),
                        "num_stages": getattr(meta, "num_stages", None),
                        "shared_bytes": getattr(meta, "shared", None),
                    }
                    seen.append((f"{mod_name}.{attr} #{i}", numbers))
    return seen


def report_build(ctx: Context, wait: float) -> None:
    """The background build's outcome, once (phase "environment")."""
    build = ctx.build
    if build is None or build.reported or build.proc is None:
        return
    if build.running() and not build.wait(wait):
        ctx.rec.add(
            "extension build finished", "skip", build.numbers(), reason="still running at the end", phase="environment"
        )
    else:
        rc = build.proc.returncode
        ctx.rec.add(
            "extension build finished",
            "pass" if rc == 0 else "fail",
            build.numbers(),
            reason=None if rc == 0 else f"rc {rc}, see {build.log}",
            phase="environment",
        )
    build.reported = True


def models(ctx: Context) -> None:
    from getkern.tools import gpu_validate_models

    gpu_validate_models.models(ctx)


def timings(ctx: Context) -> None:
    from getkern.tools import gpu_validate_timings

    gpu_validate_timings.timings(ctx)


def verdicts(ctx: Context) -> None:
    from getkern.tools import gpu_validate_timings

    gpu_validate_timings.verdicts(ctx)


__all__ = [
    "Context",
    "environment",
    "ceilings",
    "correctness",
    "models",
    "timings",
    "large_and_compiled",
    "report_build",
    "verdicts",
    "NEEDS_GPU",
]
