"""Phase 3 of ``getkern gpu-validate``: whole models (GET-B/2 unconditional and conditional, ViT-L/2; tiny
models under ``--dry``) on the Triton path vs the PyTorch path and float64, per dtype and block path,
after 1 and 6 iterations; a training step per gradient mode; the C++ vs the Python solver loop; no host
synchronisation with tol=None; CUDA-graph capture equal to eager. Accuracy rule and poisoning as in
getkern.tools.gpu_validate_cases.
"""

from __future__ import annotations

import copy

import torch

from getkern.tools.gpu_validate import Skip
from getkern.tools.gpu_validate_cases import (
    BF16,
    DTYPE_NAMES,
    F16,
    F32,
    TINY_GET,
    TINY_VIT,
    Checks,
    Context,
    _eps_for,
    block_path,
    poisoned,
    precision,
)


def base_model(ctx: Context, arch: str, kind: str):
    """The float32 model on the device (torch backend), its zero-initialised outputs randomised; cached."""
    key = (arch, kind)
    if key not in ctx._models:
        from getkern import GET, ViT

        torch.manual_seed(17)
        cond = kind == "cond"
        if arch == "GET":
            model = (
                GET(**TINY_GET, cond=cond, backend="torch", solver_backend="torch")
                if ctx.dry
                else GET.from_config("GET-B/2", cond=cond, backend="torch", solver_backend="torch")
            )
        else:
            model = (
                ViT(**TINY_VIT, cond=cond, backend="torch")
                if ctx.dry
                else ViT.from_config("ViT-L/2", cond=cond, backend="torch")
            )
        std = 2.0 / model.hidden_size**0.5
        torch.nn.init.normal_(model.final_layer.linear.weight, std=std)
        torch.nn.init.normal_(model.final_layer.linear.bias, std=0.1)
        ctx._models[key] = model.to(ctx.device).eval()
    return ctx._models[key]


def model_label(ctx, arch: str) -> str:
    return ("GET-tiny" if arch == "GET" else "ViT-tiny") if ctx.dry else ("GET-B/2" if arch == "GET" else "ViT-L/2")


def model_inputs(ctx, model, B: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(B, model.in_channels, model.input_size, model.input_size, generator=g, dtype=torch.float64)
    y = torch.randint(0, model.num_classes, (B,), generator=g) if model.cond else None
    z0 = torch.randn(B, model.x_embedder.num_patches, model.hidden_size, generator=g, dtype=torch.float64)
    return noise.to(ctx.device), (None if y is None else y.to(ctx.device)), z0.to(ctx.device)


def _iters(ctx) -> int:
    return 3 if ctx.dry else 6


def _forward(model, noise, y, z0, iters):
    dtype = next(model.parameters()).dtype
    if hasattr(model, "deq_blocks"):
        return model(noise.to(dtype), y, z0=z0.to(dtype), tol=None, iters=iters, return_iterates=True)
    return [model(noise.to(dtype), y)]


def model_case(ctx, arch, kind, dtype, mode, path):
    base = base_model(ctx, arch, kind)
    noise, y, z0 = model_inputs(ctx, base, 2 if ctx.dry else 4, seed=31)
    key = ("exact", arch, kind)
    with torch.no_grad():
        if key not in ctx.data:
            ctx.data[key] = _forward(copy.deepcopy(base).double(), noise, y, z0, _iters(ctx))
        exact = ctx.data[key]
        with block_path(path), precision(mode):
            fused = copy.deepcopy(base).to(dtype).set_backend("triton")
            with poisoned():
                got = _forward(fused, noise, y, z0, _iters(ctx))
            del fused
            ref = _forward(copy.deepcopy(base).to(dtype), noise, y, z0, _iters(ctx))
    chk = Checks()
    eps = _eps_for(dtype, mode)
    if len(got) == 1:
        chk.rule("forward", got[0], ref[0], exact[0], eps=eps)
    else:
        chk.rule("iterate 1", got[0], ref[0], exact[0], eps=eps)
        chk.rule(f"iterate {len(got)}", got[-1], ref[-1], exact[-1], eps=eps)
    if chk.failures:
        ctx.data.setdefault("failed_paths", set()).add(path)
    return chk.result(
        model=model_label(ctx, arch),
        dtype=DTYPE_NAMES[dtype],
        block_path=path,
        **({"fp32_precision": mode} if mode else {}),
    )


def fpc_loss(outs, target):
    return sum(0.8 ** (len(outs) - 1 - k) * ((o - target) ** 2).mean() for k, o in enumerate(outs))


def train_case(ctx, grad, dtype, path):
    """One fixed-point-correction loss and its parameter gradients: Triton vs PyTorch vs float64."""
    base = base_model(ctx, "GET", "uncond")
    noise, y, z0 = model_inputs(ctx, base, 2, seed=41)
    target = torch.randn(noise.shape, generator=ctx.gen(42), device=ctx.device, dtype=torch.float64)
    extra = dict(adjoint_max_iter=8, adjoint_tol=None) if grad == "implicit" else {}
    results = []
    with block_path(path), precision("ieee" if dtype == F32 and ctx.gpu else None):
        for variant in ("triton", "torch", "exact"):
            model = copy.deepcopy(base)
            model = (model.double() if variant == "exact" else model.to(dtype).set_backend(variant)).train()
            dt = next(model.parameters()).dtype
            outs = model(
                noise.to(dt), z0=z0.to(dt), iters=_iters(ctx), return_iterates=True, grad=grad, tol=None, **extra
            )
            loss = fpc_loss(outs, target.to(dt))
            loss.backward()
            results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
            del model, outs
    chk = Checks()
    chk.rule("loss", results[0][0], results[1][0], results[2][0], ulps=64)
    for name, g64 in results[2][1].items():
        got = results[0][1].get(name)
        if got is None:
            chk.check(f"d{name}", False, "no gradient on the Triton path")
            continue
        chk.rule(f"d{name}", got, results[1][1][name], g64, ulps=64, keep=False)
    return chk.result(
        model=model_label(ctx, "GET"),
        grad=grad,
        dtype=DTYPE_NAMES[dtype],
        block_path=path,
        params=len(results[2][1]),
        loss=float(results[0][0]),
        loss_float64=float(results[2][0]),
    )


def cpp_ready(ctx, need_cuda: bool) -> None:
    """Wait (within the phase's time) for the background build, then load it; Skip/raise if it is not there."""
    from getkern import _extension
    from getkern.deq import cpp_backend

    build = ctx.build
    if not _extension.cached():
        if build is None or build.proc is None:
            raise Skip("the C++ extension is not built (--no-build given, or no build plan; getkern build-ext)")
        if not build.wait(ctx.rec.time_left() - 5):
            if build.running():
                raise Skip(f"the extension build is still running (see {build.log})")
            raise RuntimeError(f"the extension build failed: {build.numbers().get('log_tail')}")
    if not cpp_backend.cpp_available(ctx.device, build=False):
        raise RuntimeError(
            f"C++ loop unavailable on {ctx.device.type}: {cpp_backend._failure or 'not loaded'}"
            + (" (is the CUDA part built?)" if need_cuda else "")
        )


def cpp_case(ctx, solver):
    """GET inference in the C++ loop vs the Python loop (tol=None, same z0), both against float64."""
    cpp_ready(ctx, ctx.gpu)
    base = base_model(ctx, "GET", "cond")
    noise, y, z0 = model_inputs(ctx, base, 2 if ctx.dry else 4, seed=51)
    python_loop = "torch" if solver == "fixed_point" else "triton"
    outs = {}
    with torch.no_grad(), precision("ieee" if ctx.gpu else None):
        for name, loop, dtype in (("cpp", "cpp", F32), ("python", python_loop, F32), ("exact", "torch", torch.float64)):
            model = copy.deepcopy(base).to(dtype).set_backend("torch" if name == "exact" else "triton")
            model.solver_backend = loop
            outs[name] = model(noise.to(dtype), y, z0=z0.to(dtype), tol=None, iters=6, solver=solver, return_info=True)
    # A random-init GET need not contract (its lowest residual may be the first), so the residual trace
    # of every iteration is compared as well as the returned image.
    trace = {k: torch.as_tensor(v[1]["abs_trace"]).double() for k, v in outs.items()}
    chk = Checks()
    chk.rule("image (cpp vs float64, bound from the Python loop)", outs["cpp"][0], outs["python"][0], outs["exact"][0])
    chk.rule("residual trace, 6 iterations", trace["cpp"].float(), trace["python"], trace["exact"])
    return chk.result(
        solver=solver,
        bitwise_equal=bool(torch.equal(outs["cpp"][0], outs["python"][0])),
        trace_bitwise_equal=bool(torch.equal(trace["cpp"], trace["python"])),
        max_abs_diff=float((outs["cpp"][0] - outs["python"][0]).abs().max()),
    )


def nosync_case(ctx, solver, loop):
    """The solve with tol=None and the decode under torch.cuda.set_sync_debug_mode("error")."""
    from getkern.deq import solve

    if loop == "cpp":
        cpp_ready(ctx, True)
    base = base_model(ctx, "GET", "cond")
    model = copy.deepcopy(base).to(BF16).set_backend("triton")
    noise, y, z0 = model_inputs(ctx, base, 8, seed=61)
    with torch.no_grad():
        c, u = model.inject(noise.to(BF16), y)
        f = model.equilibrium_fn(c, u)
        solve(f, z0.to(BF16), solver=solver, max_iter=6, tol=None, backend=loop)  # compile, load, warm
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            z, _ = solve(f, z0.to(BF16), solver=solver, max_iter=6, tol=None, backend=loop)
            model.decode(z)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return {"solver": solver, "loop": loop}


def graph_case(ctx, level):
    """CapturedSampler / CapturedMap replayed on new inputs vs the same procedure run eagerly."""
    from getkern.deq import solve
    from getkern.sampling import CapturedSampler, capture_equilibrium, refresh_injection

    cpp_ready(ctx, True)
    base = base_model(ctx, "GET", "cond")
    model = copy.deepcopy(base).to(BF16).set_backend("triton")
    B = 16
    noise1, y1, _ = model_inputs(ctx, base, B, seed=71)
    noise2, y2, z0 = model_inputs(ctx, base, B, seed=72)
    noise1, noise2, z0 = noise1.to(BF16), noise2.to(BF16), z0.to(BF16)
    with torch.no_grad():
        if level == "sampler":
            graphed = CapturedSampler(model, noise1, y1, iters=6)(noise2, y2, z0=z0).clone()
        else:
            f, buffers = capture_equilibrium(model, noise1, y1)
            refresh_injection(model, buffers, noise2, y2)
            graphed = model.decode(solve(f, z0, max_iter=6, tol=None, backend="cpp")[0])
        c, u = model.inject(noise2, y2)
        eager = model.decode(solve(model.equilibrium_fn(c, u), z0, max_iter=6, tol=None, backend="cpp")[0])
    diff = float((graphed.float() - eager.float()).abs().max())
    floor = 8 * torch.finfo(BF16).eps * float(eager.abs().max())
    chk = Checks()
    chk.check("equal to eager (within 8 bf16 ulps)", diff <= floor, f"max diff {diff:.3g} > {floor:.3g}")
    return chk.result(level=level, bitwise_equal=bool(torch.equal(graphed, eager)), max_abs_diff=diff)


def models(ctx: Context) -> None:
    rec = ctx.rec
    modes = [(F32, "ieee"), (BF16, None)] if ctx.dry else [(F32, "ieee"), (F32, "tf32"), (BF16, None), (F16, None)]
    for arch, kind in (("GET", "uncond"), ("GET", "cond"), ("ViT", "cond")):
        for dtype, mode in modes:
            for path in ("per_op", "prologue"):
                if mode == "ieee" and path == "prologue" and ctx.gpu:
                    continue  # at IEEE fp32 on CUDA the block takes the per-op path whatever BLOCK_PATH says
                label = f"{DTYPE_NAMES[dtype]}{'-' + mode if mode else ''}"
                what = "forward" if arch == "ViT" else f"iterates 1 and {_iters(ctx)}"
                rec.run(
                    f"{model_label(ctx, arch)} {kind} {label} {path} vs torch: {what}",
                    model_case,
                    ctx,
                    arch,
                    kind,
                    dtype,
                    mode,
                    path,
                )
    train = (
        [("unrolled", F32, "per_op"), ("phantom", F32, "per_op"), ("implicit", F32, "prologue")]
        if ctx.dry
        else [
            ("unrolled", F32, "per_op"),
            ("phantom", F32, "per_op"),
            ("implicit", F32, "per_op"),
            ("implicit", BF16, "prologue"),
            ("unrolled", BF16, "per_op"),
        ]
    )
    for grad, dtype, path in train:
        rec.run(
            f"{model_label(ctx, 'GET')} training step grad={grad} {DTYPE_NAMES[dtype]} {path}",
            train_case,
            ctx,
            grad,
            dtype,
            path,
        )
    for solver in ("fixed_point", "anderson"):
        rec.run(f"C++ loop vs Python loop: {solver}", cpp_case, ctx, solver)
    for solver, loop in (("fixed_point", "torch"), ("anderson", "triton"), ("fixed_point", "cpp"), ("anderson", "cpp")):
        name = f"no host sync with tol=None: {solver}, {'C++' if loop == 'cpp' else 'Python'} loop"
        if ctx.gpu:
            rec.run(name, nosync_case, ctx, solver, loop)
        else:
            rec.skip_gpu(name, "torch.cuda.set_sync_debug_mode")
    for level in ("sampler", "map"):
        name = f"CUDA graph: Captured{level.capitalize()} equal to eager on new inputs"
        if ctx.gpu:
            rec.run(name, graph_case, ctx, level)
        else:
            rec.skip_gpu(name, "CUDA graphs")
