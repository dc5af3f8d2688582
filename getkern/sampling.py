"""Every way to sample a GET or ViT, each on the model's own pieces (inject, equilibrium_fn, decode):

- :func:`sample` (``getkern.sample``): images from a GET or ViT, with noise, z0 and labels drawn from one
  generator (as diffusers pipelines take one ``generator``); :func:`sample_get`, its seeded form for the
  commands and demos, and :func:`class_rows`, the labels of a one-row-per-class grid.
- :class:`CompiledSampler`: a GET's injection transformer and equilibrium map compiled by inductor.
- :class:`CapturedSampler`: a GET's whole sampling step as one CUDA graph; :func:`capture_equilibrium`
  and :func:`refresh_injection`: its equilibrium map alone as a CUDA graph, for the solver loops.
"""

from __future__ import annotations

import numbers

import torch

from getkern import deq
from getkern.deq import cpp_backend, cuda_graph
from getkern.errors import UsageError
from getkern.models import GET
from getkern.models.inputs import check_inputs

Tensor = torch.Tensor


#################################################################################
#                         The plain sampler (eager model)                        #
#################################################################################


@torch.no_grad()
def sample(
    model,
    num_images_or_labels,
    *,
    generator: torch.Generator | int | None = None,
    iters: int | None = None,
    solver: str | None = None,
    guidance=None,
    z0: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    tol: float | None = 1e-3,
    batch_size: int | None = None,
    return_labels: bool = False,
    **solver_kwargs,
):
    """Images from ``model`` (a GET or ViT, e.g. from :func:`getkern.load`), without gradients.

    Args:
        model: a GET or ViT, best in eval mode (:func:`getkern.load` returns it so).
        num_images_or_labels: how many images (an int), or, for a class-conditional model, their class
            labels (a sequence or (num,) integer tensor), one image each. An int for a class-conditional
            model draws the labels uniformly from ``generator``.
        generator: a ``torch.Generator`` (numbers are drawn on its device), an int seed (a CPU generator
            seeded with it) or None (torch's global RNG). Draw order: noise (num, C, H, W), then z0
            (num, N, D) for a GET, then labels (num,), each skipped when given; so a CPU generator gives
            the same inputs on every device, and the same as ``sample_get(seed=...)``.
        iters: GET only: f-evaluations of the solver (default 6, the reference's).
        solver: GET only: "fixed_point" (default) or "anderson".
        guidance: guidance-distilled models (required there, refused elsewhere): w, a number or (num,)
            values within the model's ``guidance_range``.
        z0: GET only: the solver's start (num, N, D), finite; default drawn from ``generator``.
        noise: the teacher's noise (num, C, H, W); default N(0, I) drawn from ``generator``.
        tol: GET only: early-exit tolerance on the absolute residual (default 1e-3, the reference's;
            None: run all ``iters``).
        batch_size: images per forward pass (default: all at once).
        return_labels: also return the labels used ((num,) int64, None for unconditional models).
        solver_kwargs: further getkern.deq options for a GET (m, lam, stop, ...; docs/solvers.md).

    Returns:
        images (num, C, H, W) on the model's device in its dtype, on the teacher's data scale: nominally
        in [-1, 1], **not clamped** (clamp before converting to pixels); with ``return_labels``,
        ``(images, labels)``.
    """
    param = model.pos_embed
    device, dtype = param.device, param.dtype
    is_get = isinstance(model, GET)
    if not is_get:
        given = [n for n, v in (("iters", iters), ("solver", solver), ("z0", z0)) if v is not None] + sorted(
            solver_kwargs
        )
        if given:
            raise UsageError(
                f"{', '.join(given)}: a {type(model).__name__} runs its blocks once; solver options apply to a GET only"
            )
    labels = None
    if isinstance(num_images_or_labels, numbers.Integral) and not isinstance(num_images_or_labels, bool):
        num = int(num_images_or_labels)
    else:
        if isinstance(num_images_or_labels, (str, bytes, bool, float)):
            raise UsageError(
                f"num_images_or_labels: expected a number of images (an int) or 1-D integer class "
                f"labels, got {type(num_images_or_labels).__name__} {num_images_or_labels!r}"
            )
        try:
            labels = torch.as_tensor(num_images_or_labels)
        except (TypeError, ValueError, RuntimeError) as e:
            raise UsageError(
                f"num_images_or_labels: expected a number of images (an int) or 1-D integer class "
                f"labels, got {type(num_images_or_labels).__name__} ({e})"
            ) from None
        if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise UsageError(
                f"num_images_or_labels: expected a number of images or 1-D integer class labels, got "
                f"{labels.dtype} of shape {tuple(labels.shape)}"
            )
        if not model.cond:
            raise UsageError(
                "labels were given, but this model is unconditional (cond=False): pass the number of images"
            )
        labels, num = labels.long(), len(labels)
    if num < 1:
        raise UsageError(f"num_images_or_labels: at least one image, got {num}")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        raise UsageError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
    gen = _generator(generator)
    draw = gen.device if gen is not None else torch.device("cpu")

    shape = (num, model.in_channels, model.input_size, model.input_size)
    if noise is None:
        noise = torch.randn(shape, generator=gen, device=draw)
    elif not isinstance(noise, torch.Tensor) or tuple(noise.shape) != shape:
        raise UsageError(f"noise must have shape {shape}, got {tuple(getattr(noise, 'shape', ()))}")
    if is_get:
        z_shape = (num, model.x_embedder.num_patches, model.hidden_size)
        if z0 is None:
            z0 = torch.randn(z_shape, generator=gen, device=draw)
        elif not isinstance(z0, torch.Tensor) or tuple(z0.shape) != z_shape:
            raise UsageError(f"z0 must have shape {z_shape}, got {tuple(getattr(z0, 'shape', ()))}")
    if model.cond and labels is None:
        labels = torch.randint(model.num_classes, (num,), generator=gen, device=draw)
    if guidance is not None:
        guidance = torch.as_tensor(guidance, dtype=torch.float64)
        if guidance.dim() > 1 or (guidance.dim() == 1 and guidance.shape[0] != num):
            raise UsageError(f"guidance must be a number or a ({num},) tensor, got shape {tuple(guidance.shape)}")
        guidance = guidance.expand(num)

    step = num if batch_size is None else batch_size
    out = []
    for i in range(0, num, step):
        part = slice(i, i + step)
        x = noise[part].to(device=device, dtype=dtype)
        y = labels[part].to(device) if model.cond else None
        w = guidance[part] if guidance is not None else None
        if is_get:
            out.append(
                model(
                    x,
                    y,
                    iters=6 if iters is None else iters,
                    solver=solver or "fixed_point",
                    z0=z0[part].to(device=device, dtype=dtype),
                    tol=tol,
                    guidance=w,
                    **solver_kwargs,
                )
            )
        else:
            out.append(model(x, y, guidance=w))
    images = torch.cat(out)
    return (images, labels) if return_labels else images


def _generator(generator) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise UsageError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


@torch.no_grad()
def sample_get(
    model,
    num: int,
    *,
    seed: int = 0,
    iters: int = 6,
    solver: str = "fixed_point",
    labels: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    batch_size: int = 500,
    guidance: float | torch.Tensor | None = None,
    **solver_kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``num`` images (num, C, H, W) float32 on CPU from a GET, and the labels. ``noise`` (num, C, H, W)
    defaults to N(0, I) seeded by ``seed``; z0 always comes from ``seed`` (drawn after the noise, as
    ``sample(generator=torch.Generator().manual_seed(seed))`` draws them). Class-conditional models take
    ``labels`` (num,) int64, default 0, 1, ..., K-1, 0, 1, ... . Guidance-distilled models take
    ``guidance`` w (a number or (num,))."""
    g = torch.Generator().manual_seed(seed)
    if model.cond and labels is None:
        labels = torch.arange(num) % model.num_classes
    if model.cond and len(labels) != num:
        raise ValueError(f"labels must have shape ({num},), got {tuple(labels.shape)}")
    images, used = sample(
        model,
        labels if model.cond else num,
        generator=g,
        iters=iters,
        solver=solver,
        noise=noise,
        guidance=guidance,
        batch_size=batch_size,
        return_labels=True,
        **solver_kwargs,
    )
    return images.float().cpu(), (used if model.cond else labels)


def class_rows(num_classes: int, per_class: int) -> torch.Tensor:
    """Labels for a grid with one row per class: (num_classes * per_class,) = [0]*per_class + [1]*per_class ..."""
    return torch.arange(num_classes).repeat_interleave(per_class)


#################################################################################
#                        Compiled sampler (torch.compile)                        #
#################################################################################


class CompiledSampler:
    """``sample = CompiledSampler(model); images = sample(noise, y, iters=6)`` (no gradients).

    GET sampling with the injection transformer and the equilibrium map compiled by inductor with frozen
    weights (oneDNN weight prepacking, fused bias/GELU/residual epilogues), solved by getkern.deq (the
    C++ loop when built). The default eager path already fuses the same epilogues on CPU
    (getkern/ops/cpu_epilogues.py) and needs no compilation; this is the option for shapes sampled so
    often that minutes of compilation pay off (measure with benchmarks/test_cpu_speed_bench.py
    --compiled).

    Same procedure as ``model(noise, y, ...)`` in eval mode; outputs agree to float rounding (about 1e-6
    relative at GET-T, docs/cpp.md). Compilation happens on the first call for each input shape and
    takes tens of seconds to minutes on a small CPU.
    """

    def __init__(self, model, *, solver_backend: str | None = None):
        self.model = model.eval()
        self.solver_backend = solver_backend or model.solver_backend
        options = {"freezing": True}  # weights as constants: prepacked matmuls, fused epilogues

        def equilibrium(z, c, *u):
            return model.equilibrium_fn(c, list(u))(z)

        self._inject = torch.compile(model.inject, options=options)
        self._equilibrium = torch.compile(equilibrium, options=options)

    @torch.no_grad()
    def __call__(
        self,
        noise: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        iters: int = 6,
        solver: str = "fixed_point",
        z0: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        tol: float | None = 1e-3,
        return_info: bool = False,
        **solver_kwargs,
    ):
        model = self.model
        check_inputs(model, noise, y, iters=iters, z0=z0)
        c, u = self._inject(noise, y)
        z0 = model.initial_state(noise, generator) if z0 is None else z0
        z, info = deq.solve(
            lambda z: self._equilibrium(z, c, *u),
            z0,
            solver=solver,
            max_iter=iters,
            tol=tol,
            backend=self.solver_backend,
            **solver_kwargs,
        )
        out = model.decode(z)
        return (out, info) if return_info else out


#################################################################################
#                      CUDA-graph captured samplers (docs/cpp.md)                #
#################################################################################
# CUDA tensors only: nothing here runs on this project's GPU-less machines; the logic is checked on
# CPU with torch.cuda's graph API emulated (tests/test_cpp_cuda_graph.py).


def capture_equilibrium(model, noise: Tensor, y: Tensor | None = None):
    """A GET's equilibrium map for this batch shape, captured (getkern.deq.cuda_graph.CapturedMap).
    Returns (f, buffers): ``buffers`` holds the static injection tensors ("c", "u") the graph reads;
    for new noise of the same shape refresh them with :func:`refresh_injection` before solving with
    f (``getkern.deq.solve(f, z0, backend="cpp")``)."""
    cuda_graph.require_cuda(noise, "noise")
    with torch.no_grad():
        c, u = model.inject(noise, y)
    buffers = {"c": None if c is None else c.clone(), "u": [t.clone() for t in u]}
    z_example = model.initial_state(noise)
    f = cuda_graph.CapturedMap(model.equilibrium_fn(buffers["c"], buffers["u"]), z_example)
    return f, buffers


def refresh_injection(model, buffers: dict, noise: Tensor, y: Tensor | None = None) -> None:
    """Recompute the injection for new noise (same shape) into the captured map's static buffers."""
    with torch.no_grad():
        c, u = model.inject(noise, y)
        if buffers["c"] is not None:
            buffers["c"].copy_(c)
        for dst, src in zip(buffers["u"], u):
            dst.copy_(src)


class CapturedSampler:
    """One CUDA graph for GET sampling at a fixed batch shape: noise (and z0) -> images.

    Captures injection, ``iters`` solver iterations in the C++ loop with ``tol=None`` (no host
    synchronisation anywhere, so the loop, mixing included, is capturable) and decoding. Every call
    copies its inputs into the static buffers and replays. ``solver_kwargs`` (solver, stop, m, lam,
    tau) are fixed at capture time. The model's input checks (which read device memory) run once,
    at construction.
    """

    def __init__(
        self, model, noise: Tensor, y: Tensor | None = None, *, iters: int = 6, warmup: int = 2, **solver_kwargs
    ):
        cuda_graph.require_cuda(noise, "noise")
        if not cpp_backend.cpp_available(noise.device, build=True):
            raise RuntimeError("CapturedSampler needs the C++ extension with its CUDA part (docs/cpp.md)")
        check_inputs(model, noise, y, iters=iters)
        self.model = model
        self.noise = noise.detach().clone()
        self.y = None if y is None else y.detach().clone()
        self.z0 = model.initial_state(noise)

        def sample() -> Tensor:
            c, u = model.inject(self.noise, self.y)
            z, _ = deq.solve(
                model.equilibrium_fn(c, u), self.z0, max_iter=iters, tol=None, backend="cpp", **solver_kwargs
            )
            return model.decode(z)

        with torch.no_grad():
            cuda_graph.warm_up(sample, warmup)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.images = sample()

    def __call__(
        self, noise: Tensor, y: Tensor | None = None, z0: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Images (B, C, H, W) for this noise (the captured shape); z0 defaults to fresh standard-normal
        noise. Returns the static output buffer: clone it to keep it past the next call."""
        if noise.shape != self.noise.shape:
            raise ValueError(f"noise must have the captured shape {tuple(self.noise.shape)}, got {tuple(noise.shape)}")
        self.noise.copy_(noise)
        if self.y is not None:
            self.y.copy_(y)
        self.z0.copy_(self.model.initial_state(noise, generator) if z0 is None else z0)
        self.graph.replay()
        return self.images
