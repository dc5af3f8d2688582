"""``getkern.sample``: images from a GET or ViT, with noise, z0 and labels drawn from one generator
(as diffusers pipelines take one ``generator``)."""
from __future__ import annotations

import numbers

import torch

from getkern.errors import UsageError


@torch.no_grad()
def sample(model, num_images_or_labels, *, generator: torch.Generator | int | None = None,
           iters: int | None = None, solver: str | None = None, guidance=None, z0: torch.Tensor | None = None,
           noise: torch.Tensor | None = None, tol: float | None = 1e-3, batch_size: int | None = None,
           return_labels: bool = False, **solver_kwargs):
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
    from getkern.models import GET
    param = model.pos_embed
    device, dtype = param.device, param.dtype
    is_get = isinstance(model, GET)
    if not is_get:
        given = [n for n, v in (("iters", iters), ("solver", solver), ("z0", z0)) if v is not None] + sorted(solver_kwargs)
        if given:
            raise UsageError(f"{', '.join(given)}: a {type(model).__name__} runs its blocks once; solver options "
                             "apply to a GET only")
    labels = None
    if isinstance(num_images_or_labels, numbers.Integral) and not isinstance(num_images_or_labels, bool):
        num = int(num_images_or_labels)
    else:
        if isinstance(num_images_or_labels, (str, bytes, bool, float)):
            raise UsageError(f"num_images_or_labels: expected a number of images (an int) or 1-D integer class "
                             f"labels, got {type(num_images_or_labels).__name__} {num_images_or_labels!r}")
        try:
            labels = torch.as_tensor(num_images_or_labels)
        except (TypeError, ValueError, RuntimeError) as e:
            raise UsageError(f"num_images_or_labels: expected a number of images (an int) or 1-D integer class "
                             f"labels, got {type(num_images_or_labels).__name__} ({e})") from None
        if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise UsageError(f"num_images_or_labels: expected a number of images or 1-D integer class labels, got "
                             f"{labels.dtype} of shape {tuple(labels.shape)}")
        if not model.cond:
            raise UsageError("labels were given, but this model is unconditional (cond=False): pass the number "
                             "of images")
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
            out.append(model(x, y, iters=6 if iters is None else iters, solver=solver or "fixed_point",
                             z0=z0[part].to(device=device, dtype=dtype), tol=tol, guidance=w, **solver_kwargs))
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
