"""Phases 4 and 5 of ``getkern gpu-validate``: timings and verdicts.

Timing: CUDA events around each call, median of the repetitions, one warm-up call excluded (it
compiles, autotunes and loads), and a 256 MiB buffer zeroed between repetitions so the L2 (60 MB on an
H200) never serves a repetition's inputs. Each figure is also given as a fraction of the ceilings
phase 1 measured (copy bandwidth for bytes, the bf16 / TF32 / fp32 matmul rate for FLOPs). Under
``--dry`` every timing case builds its inputs and calls each variant once on CPU (so the code cannot
rot), then is recorded as skipped: timing needs a GPU.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from getkern.tools.gpu_validate import NEEDS_GPU, Skip
from getkern.tools.gpu_validate_cases import BF16, DTYPE_NAMES, F32, block_path, precision
from getkern.tools.gpu_validate_models import base_model, cpp_ready, fpc_loss, model_inputs, model_label

RATE_KEY = {"bf16": "bf16_flops", "fp16": "bf16_flops", "fp32-tf32": "tf32_flops", "fp32-ieee": "fp32_flops"}
DRY_SKIP = NEEDS_GPU + " (inputs built and each variant called once on CPU)"


class Timer:
    def __init__(self, ctx):
        self.ctx = ctx
        self.flush = torch.empty(2**28, dtype=torch.int8, device=ctx.device) if ctx.gpu else None

    def __call__(self, fn, budget_ms: float = 150.0, min_reps: int = 3, max_reps: int = 30):
        """Median milliseconds of fn() (None under --dry, after one call)."""
        fn()
        if not self.ctx.gpu:
            return None
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        reps = int(min(max_reps, max(min_reps, budget_ms / max(start.elapsed_time(end), 1e-3))))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s, e in events:
            self.flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        times = sorted(s.elapsed_time(e) for s, e in events)
        return times[len(times) // 2]


def count_flops(fn):
    """FLOPs of one call (torch's counter; getkern's custom ops register their formulas)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()
    except Exception:  # an op without a formula, a mode the counter cannot enter
        return None


def compare_variants(
    ctx,
    timer,
    variants: dict,
    *,
    flops=None,
    io_bytes=None,
    rate=None,
    images=None,
    store=None,
    budget_ms: float = 150.0,
) -> dict:
    """Time each variant (first = getkern's); speedups of the first over the others; ceiling fractions."""
    numbers, times = {}, {}
    for name, fn in variants.items():
        try:
            times[name] = timer(fn, budget_ms=budget_ms)
        except Skip as why:
            numbers[f"{name}_skipped"] = str(why)[:120]
        except Exception as error:  # a variant that cannot run here (e.g. an SDPA backend): say so, go on
            numbers[f"{name}_error"] = f"{type(error).__name__}: {str(error)[:160]}"
    if store is not None:
        store.update(times)
    if not ctx.gpu:
        raise Skip(DRY_SKIP)
    times = {name: ms for name, ms in times.items() if ms}
    first = next(iter(variants))
    for name, ms in times.items():
        numbers[f"{name}_ms"] = ms
        if images:
            numbers[f"{name}_img_per_s"] = images / (ms / 1e3)
    base = times.get(first)
    if base:
        for name, ms in times.items():
            if name != first:
                numbers[f"speedup_vs_{name}"] = ms / base
        if flops:
            numbers["TFLOP_per_s"] = flops / (base / 1e3) / 1e12
            if rate and ctx.ceilings.get(RATE_KEY[rate]):
                numbers["frac_matmul_ceiling"] = flops / (base / 1e3) / ctx.ceilings[RATE_KEY[rate]]
        if io_bytes:
            numbers["GB_per_s"] = io_bytes / (base / 1e3) / 1e9
            if ctx.ceilings.get("copy_Bps"):
                numbers["frac_copy_bw"] = io_bytes / (base / 1e3) / ctx.ceilings["copy_Bps"]
    return numbers


def _nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _modes(ctx):
    return [(BF16, None, "bf16"), (F32, "tf32", "fp32-tf32")]


# ---------------------------------------------------------------------- op and block timings


def op_timings(ctx, timer) -> None:
    from getkern.models.layers import Block
    from getkern.ops import fused_attention, layer_norm, mlp
    from getkern.ops.attention import attention_reference
    from getkern.ops.ln_linear import layer_norm_linear
    from getkern.ops.ln_mlp import add_layer_norm_mlp

    rec = ctx.rec
    B, N, D, H, Hd = (1, 17, 64, 2, 128) if ctx.dry else (128, 256, 768, 12, 9216)
    M, hd = B * N, D // H
    g = ctx.gen(1234)
    where = "" if ctx.dry else " GET-B/2 B=128"

    def attention(dtype, mode, label, backward):
        qkv = ctx.randn(g, B, N, 3 * D, dtype=dtype)
        c = ctx.randn(g, B, 1, 3 * D, dtype=dtype)
        u = ctx.randn(g, B, N, 6 * D, dtype=dtype).chunk(2, dim=-1)[1]
        q, k, v = (ctx.randn(g, B, H, N, hd, dtype=dtype) for _ in range(3))
        flops = 4 * B * H * N * N * hd * (3.5 if backward else 1.0)

        def run(fn, *args):
            if not backward:

                def forward():
                    with torch.no_grad():
                        fn(*args)

                return forward
            leaves = [a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
            dout = torch.randn(B, N, D, device=ctx.device).to(dtype)

            def step():
                out = fn(*leaves)
                out.backward(dout if out.shape == dout.shape else dout.view(B, N, H, hd).transpose(1, 2))

            return step

        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = SDPBackend.FLASH_ATTENTION if dtype != F32 else SDPBackend.EFFICIENT_ATTENTION

        def sdpa_only(q_, k_, v_):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q_, k_, v_)

        variants = {
            "getkern": run(lambda a, b, cc: fused_attention(a, H, c=b, u=cc, backend="triton"), qkv, c, u),
            "torch_path": run(lambda a, b, cc: attention_reference(a, H, b, cc), qkv, c, u),
            f"sdpa_{'flash' if dtype != F32 else 'efficient'}_presplit": run(sdpa_only, q, k, v),
        }
        with precision(mode):
            return compare_variants(
                ctx,
                timer,
                variants,
                flops=flops,
                rate=label,
                io_bytes=None if backward else _nbytes(qkv, c, u) + _nbytes(qkv) // 3,
            )

    for dtype, mode, label in _modes(ctx):
        rec.run(f"time attention fwd{where} {label}", attention, dtype, mode, label, False)
    rec.run(f"time attention fwd+bwd{where} bf16", attention, BF16, None, "bf16", True)

    def add_ln():
        x, r = ctx.randn(g, M, D, dtype=BF16), ctx.randn(g, M, D, dtype=BF16)
        w, b = ctx.randn(g, D, dtype=BF16), ctx.randn(g, D, dtype=BF16)
        with torch.no_grad():
            return compare_variants(
                ctx,
                timer,
                {
                    "getkern": lambda: layer_norm(x, w, b, residual=r, backend="triton"),
                    "torch": lambda: layer_norm(x, w, b, residual=r, backend="torch"),
                },
                io_bytes=4 * _nbytes(x),
            )

    rec.run(f"time add+layer_norm{where} bf16", add_ln)

    def matmul_op(which, dtype, mode, label):
        x, a = ctx.randn(g, B, N, D, dtype=dtype), ctx.randn(g, B, N, D, dtype=dtype)
        nw, nb = ctx.randn(g, D, dtype=dtype, shift=1.0), ctx.randn(g, D, dtype=dtype)
        w1, b1 = ctx.randn(g, Hd, D, dtype=dtype, scale=D**-0.5), ctx.randn(g, Hd, dtype=dtype)
        w2, b2 = ctx.randn(g, D, Hd, dtype=dtype, scale=Hd**-0.5), ctx.randn(g, D, dtype=dtype)
        wq, bq = ctx.randn(g, 3 * D, D, dtype=dtype, scale=D**-0.5), ctx.randn(g, 3 * D, dtype=dtype)
        calls = {
            "mlp": (lambda be: mlp(x, w1, b1, w2, b2, residual=a, backend=be), 4 * M * D * Hd),
            "layer_norm_linear": (lambda be: layer_norm_linear(x, nw, nb, wq, bq, backend=be), 6 * M * D * D),
            "add_layer_norm_mlp": (
                lambda be: add_layer_norm_mlp(x, a, nw, nb, w1, b1, w2, b2, backend=be),
                4 * M * D * Hd,
            ),
        }
        fn, flops = calls[which]
        store = ctx.data.setdefault("ops", {}).setdefault((which, label), {})
        with torch.no_grad(), precision(mode):
            return compare_variants(
                ctx,
                timer,
                {"getkern": lambda: fn("triton"), "torch": lambda: fn("torch")},
                flops=flops,
                rate=label,
                store=store,
            )

    for which in ("mlp", "layer_norm_linear", "add_layer_norm_mlp"):
        for dtype, mode, label in _modes(ctx) + [(F32, "ieee", "fp32-ieee")]:
            if which != "mlp" and mode == "ieee":
                continue
            rec.run(f"time {which}{where} {label} (Triton vs cuBLAS)", matmul_op, which, dtype, mode, label)

    def anderson(dtype):
        from getkern.ops.anderson import anderson_mix, anderson_record, traffic_floor

        Bs, m, n = (2, 3, 300) if ctx.dry else (128, 6, 256 * 768)
        k = m + 2
        fz, z = ctx.randn(g, Bs, n, dtype=dtype), ctx.randn(g, Bs, n, dtype=dtype)
        Fh, Gh = ctx.randn(g, Bs, m, n, dtype=dtype), ctx.randn(g, Bs, m, n, dtype=dtype, scale=0.3)
        gram = torch.zeros(Bs, m, m, device=ctx.device)
        alpha = torch.full((Bs, m), 1.0 / m, device=ctx.device)
        best, best_res = z.clone(), torch.full((Bs,), float("inf"), device=ctx.device)

        def step(be):
            def run():
                res, _ = anderson_record(fz, z, Fh, Gh, gram, k, backend=be)
                anderson_mix(Fh, Gh, alpha, 1.0, k=k, res=res, best=best, best_res=best_res, backend=be)

            return run

        return compare_variants(
            ctx, timer, {"getkern": step("triton"), "torch": step("torch")}, io_bytes=traffic_floor(Bs, m, n, k, dtype)
        )

    for dtype in (F32, BF16):
        rec.run(
            f"time anderson record+mix{'' if ctx.dry else ' B=128 m=6 n=196608'} {DTYPE_NAMES[dtype]}", anderson, dtype
        )

    def block(dtype, mode, label):
        from getkern.nn import set_backend

        blk = set_backend(Block(D, H, Hd / D), "triton").to(ctx.device, dtype)  # the fused block
        ref = set_backend(copy.deepcopy(blk), "torch")
        x, c, u = (
            ctx.randn(g, B, N, D, dtype=dtype),
            ctx.randn(g, B, 1, 3 * D, dtype=dtype),
            ctx.randn(g, B, N, 3 * D, dtype=dtype),
        )

        def on(path, module):
            def run():
                with block_path(path):
                    module(x, c, u)

            return run

        with torch.no_grad(), precision(mode):
            return compare_variants(
                ctx,
                timer,
                {"per_op": on("per_op", blk), "prologue": on("prologue", blk), "torch": on("per_op", ref)},
                flops=2 * M * (4 * D * D + 2 * D * Hd) + 4 * B * N * N * D,
                rate=label,
                store=ctx.data.setdefault("block", {}).setdefault(label, {}),
            )

    for dtype, mode, label in _modes(ctx):
        rec.run(
            f"time block per_op vs prologue vs torch{'' if ctx.dry else ' (GET-B deq block)'} {label}",
            block,
            dtype,
            mode,
            label,
        )


# ---------------------------------------------------------------------- model timings


def sampling_timings(ctx, timer) -> None:
    rec = ctx.rec
    iters = 2 if ctx.dry else 6
    label_model = model_label(ctx, "GET")
    base = base_model(ctx, "GET", "cond")

    def variant(model, backend, path, loop, noise, y, z0, **kw):
        def run():
            model.set_backend(backend)
            model.solver_backend = loop
            with block_path(path), torch.no_grad():
                return model(noise, y, z0=z0, iters=iters, tol=kw.get("tol"), solver=kw.get("solver", "fixed_point"))

        return run

    def cpp_or_skip(fn):
        def run():
            cpp_ready(ctx, ctx.gpu)  # raises Skip / an error that compare_variants records per variant
            return fn()

        return run

    def sampling(B, dtype, mode, label):
        model = copy.deepcopy(base).to(dtype)
        noise, y, z0 = model_inputs(ctx, base, B, seed=B)
        noise, z0 = noise.to(dtype), z0.to(dtype)
        per_op = variant(model, "triton", "per_op", "torch", noise, y, z0)
        with precision(mode):
            flops = count_flops(per_op)
            return compare_variants(
                ctx,
                timer,
                {
                    "per_op/python": per_op,
                    "per_op/cpp": cpp_or_skip(variant(model, "triton", "per_op", "cpp", noise, y, z0)),
                    "prologue/python": variant(model, "triton", "prologue", "torch", noise, y, z0),
                    "torch/python": variant(model, "torch", "per_op", "torch", noise, y, z0),
                },
                flops=flops,
                rate=label,
                images=B,
                budget_ms=300,
                store=ctx.data.setdefault("sampling", {}).setdefault((B, label), {}),
            )

    for B in (2,) if ctx.dry else (64, 128, 256):
        for dtype, mode, label in _modes(ctx):
            rec.run(
                f"time {label_model} sampling B={B} {label}, {iters} iterations, tol=None",
                sampling,
                B,
                dtype,
                mode,
                label,
            )

    B = 2 if ctx.dry else 128

    def extras():
        model = copy.deepcopy(base).to(BF16)
        noise, y, z0 = model_inputs(ctx, base, B, seed=5)
        noise, z0 = noise.to(BF16), z0.to(BF16)
        per_op = variant(model, "triton", "per_op", "torch", noise, y, z0)
        return model, noise, y, z0, per_op

    def reference():
        model, noise, y, z0, per_op = extras()
        return compare_variants(
            ctx,
            timer,
            {
                "per_op/python": per_op,
                "reference (torch, SDPA, tol=1e-3)": variant(model, "torch", "per_op", "torch", noise, y, z0, tol=1e-3),
            },
            images=B,
            budget_ms=300,
        )

    rec.run(f"time {label_model} sampling B={B} bf16 vs the reference procedure", reference)

    def anderson_loops():
        model, noise, y, z0, _ = extras()
        return compare_variants(
            ctx,
            timer,
            {
                "python+triton_passes": variant(model, "triton", "per_op", "triton", noise, y, z0, solver="anderson"),
                "cpp": cpp_or_skip(variant(model, "triton", "per_op", "cpp", noise, y, z0, solver="anderson")),
            },
            images=B,
            budget_ms=300,
            store=ctx.data.setdefault("anderson_loop", {}),
        )

    rec.run(f"time {label_model} Anderson sampling B={B} bf16: Python loop + Triton passes vs C++ loop", anderson_loops)

    def graphs():
        from getkern.sampling import CapturedSampler

        cpp_ready(ctx, True)
        model, noise, y, z0, per_op = extras()
        model.set_backend("triton")
        model.solver_backend = "cpp"
        sampler = CapturedSampler(model, noise, y, iters=iters)
        return compare_variants(
            ctx,
            timer,
            {
                "graph": lambda: sampler(noise, y, z0=z0),
                "per_op/cpp": variant(model, "triton", "per_op", "cpp", noise, y, z0),
                "per_op/python": per_op,
            },
            images=B,
            budget_ms=300,
            store=ctx.data.setdefault("graph", {}),
        )

    name = f"time {label_model} sampling B={B} bf16 with a CUDA graph (CapturedSampler)"
    if ctx.gpu:
        rec.run(name, graphs)
    else:
        rec.skip_gpu(name, "CUDA graphs")

    def vit(dtype, mode, label):
        vit_model = copy.deepcopy(base_model(ctx, "ViT", "cond")).to(dtype)
        get_model = copy.deepcopy(base).to(dtype)
        noise, y, z0 = model_inputs(ctx, base, B, seed=6)
        noise, z0 = noise.to(dtype), z0.to(dtype)

        def run_vit(backend):
            def run():
                vit_model.set_backend(backend)
                with torch.no_grad():
                    return vit_model(noise, y)

            return run

        with precision(mode):
            return compare_variants(
                ctx,
                timer,
                {
                    "GET per_op/python": variant(get_model, "triton", "per_op", "torch", noise, y, z0),
                    "ViT triton": run_vit("triton"),
                    "ViT torch": run_vit("torch"),
                },
                flops=count_flops(run_vit("triton")),
                rate=label,
                images=B,
                budget_ms=300,
            )

    for dtype, mode, label in _modes(ctx):
        rec.run(
            f"time {model_label(ctx, 'ViT')} vs {label_model} at equal images B={B} {label}", vit, dtype, mode, label
        )


def training_timings(ctx, timer) -> None:
    rec = ctx.rec
    B = 2 if ctx.dry else 32
    iters = 2 if ctx.dry else 6
    mode, label = (None, "fp32") if ctx.dry else ("tf32", "fp32-tf32")

    def train(arch, grad):
        model = copy.deepcopy(base_model(ctx, arch, "cond")).set_backend("triton").train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        noise, y, z0 = model_inputs(ctx, model, B, seed=9)
        noise, z0 = noise.float(), z0.float()
        target = torch.randn_like(noise)
        extra = dict(adjoint_max_iter=8) if grad == "implicit" else {}

        def step():
            opt.zero_grad(set_to_none=True)
            if arch == "GET":
                outs = model(noise, y, z0=z0, iters=iters, return_iterates=True, grad=grad, tol=None, **extra)
                loss = fpc_loss(outs, target)
            else:
                loss = ((model(noise, y) - target) ** 2).mean()
            loss.backward()
            opt.step()

        with precision(mode):
            numbers = {}
            if ctx.gpu:
                step()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                step()
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated()
                numbers = {"peak_GiB": peak / 2**30, "above_weights_GiB": (peak - before) / 2**30}
            numbers.update(compare_variants(ctx, timer, {"step": step}, images=B, budget_ms=400))
            ctx.data.setdefault("training", {})[(arch, grad)] = numbers
            return numbers

    for arch, grad in (("GET", "unrolled"), ("GET", "phantom"), ("GET", "implicit"), ("ViT", None)):
        what = f"grad={grad}" if grad else "backprop"
        rec.run(f"time training step {model_label(ctx, arch)} B={B} {label} {what} (+ peak memory)", train, arch, grad)


def timings(ctx) -> None:
    timer = Timer(ctx)
    for part in (op_timings, sampling_timings, training_timings):
        part(ctx, timer)
    timer.flush = None
    if ctx.gpu:
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------- phase 5: verdicts


def _ratio(pairs):
    """[(default_ms, other_ms)] -> the median of default / other over the pairs where both were timed."""
    ratios = sorted(d / o for d, o in pairs if d and o)
    return ratios[len(ratios) // 2] if ratios else None


def verdicts(ctx) -> None:
    """For each switch of docs/defaults.md, the default the measured data supports. pass: the data
    supports the current default; fail: it supports the other choice (flip it); skip: no data."""
    rec, data = ctx.rec, ctx.data
    margin = 1.03  # a change of default needs the other choice faster by more than 3 %

    def verdict(name, default, other, ratio, evidence, veto=None):
        """ratio: time(default) / time(other) (> 1: the other choice is faster)."""
        if ratio is None:
            rec.add(
                name,
                "skip",
                {"default": default},
                reason="no timing data (needs a GPU)" if not ctx.gpu else "the timing cases did not run",
            )
            return
        supports = other if ratio > margin and not veto else default
        rec.add(
            name,
            "pass" if supports == default else "fail",
            {
                "default": default,
                "supports": supports,
                "time_default_over_other": ratio,
                "evidence": f"{evidence}: {ratio:.3g}" + (f"; {veto}" if veto else ""),
            },
        )

    sampling = data.get("sampling", {}).values()
    ops = data.get("ops", {})

    def op(which, label):
        times = ops.get((which, label), {})
        return times.get("getkern"), times.get("torch")

    failed = data.get("failed_paths", set())
    verdict(
        "block path on Triton (BLOCK_PATH)",
        "per_op",
        "prologue",
        _ratio(
            [(t.get("per_op/python"), t.get("prologue/python")) for t in sampling]
            + [(t.get("per_op"), t.get("prologue")) for t in data.get("block", {}).values()]
        ),
        "median per_op/prologue time over the GET-B/2 sampling and block cases",
        veto="prologue failed a model correctness case" if "prologue" in failed else None,
    )
    triton_ms, torch_ms = op("mlp", "fp32-ieee")
    verdict(
        "fp32 matmuls at 'ieee' under auto: cuBLAS fp32 (not Triton's IEEE kernels)",
        "torch",
        "triton",
        _ratio([(torch_ms, triton_ms)]),
        "mlp fp32-ieee: cuBLAS time / Triton time",
    )
    verdict(
        "fp32 matmuls at 'tf32' under auto: Triton TF32 kernels (not cuBLAS TF32)",
        "triton",
        "torch",
        _ratio([op(w, "fp32-tf32") for w in ("mlp", "layer_norm_linear", "add_layer_norm_mlp")]),
        "median Triton/cuBLAS time over mlp, layer_norm_linear, add_layer_norm_mlp",
    )
    verdict(
        "auto takes Triton for CUDA tensors (not the PyTorch path)",
        "triton",
        "torch",
        _ratio(
            [op(w, "bf16") for w in ("mlp", "layer_norm_linear", "add_layer_norm_mlp")]
            + [(t.get("per_op/python"), t.get("torch/python")) for t in sampling]
        ),
        "median getkern/torch time over the bf16 matmul ops and every sampling case",
    )
    verdict(
        "solver loop, fixed point: the C++ loop once built",
        "cpp",
        "python",
        _ratio([(t.get("per_op/cpp"), t.get("per_op/python")) for t in sampling]),
        "median C++/Python loop time over the sampling cases",
    )
    loops = data.get("anderson_loop", {})
    verdict(
        "solver loop, Anderson on CUDA: Python loop + fused Triton passes",
        "python+triton_passes",
        "cpp",
        _ratio([(loops.get("python+triton_passes"), loops.get("cpp"))]),
        "GET-B/2 Anderson sampling, B=128 bf16",
    )
    for name in ("while torch.compile traces: the Python loop", "CPU tensors: the PyTorch path"):
        rec.add(name, "skip", {"default": "unchanged"}, reason="not a GPU-speed question: nothing here measures it")
