"""Input checks shared by GET and ViT: clear errors naming the argument, before any compute.

Guidance (guidance-distilled models): the constructor's ``guidance_range`` and the weight w each call
takes, checked against that trained range.
"""

from __future__ import annotations

import math

import torch

from getkern.errors import UsageError


def value_checks_enabled(t: torch.Tensor) -> bool:
    """Checks that read tensor values (NaN noise, label range, guidance range) need the host: they run
    in eager mode only, not while torch.compile traces (a graph break) or a CUDA graph captures (an
    error). Compiled or captured models check shapes, dtypes and devices, at trace time."""
    if torch.compiler.is_compiling():
        return False
    return not (t.is_cuda and torch.cuda.is_current_stream_capturing())


def check_inputs(
    model, noise: torch.Tensor, y: torch.Tensor | None, *, iters: int | None = None, z0: torch.Tensor | None = None
) -> None:
    param = model.pos_embed
    expect = (model.in_channels, model.input_size, model.input_size)
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
    if noise.dim() != 4 or tuple(noise.shape[1:]) != expect:
        raise UsageError(f"noise must have shape (B, {expect[0]}, {expect[1]}, {expect[2]}), got {tuple(noise.shape)}")
    if noise.shape[0] == 0:
        raise UsageError("noise has an empty batch")
    if noise.dtype != param.dtype:
        raise TypeError(f"noise dtype {noise.dtype} does not match the model's {param.dtype}")
    if noise.device != param.device:
        raise UsageError(f"noise is on {noise.device} but the model is on {param.device}")
    values = value_checks_enabled(noise)
    if values and not torch.isfinite(noise).all():
        raise UsageError("noise contains NaN or Inf")
    if iters is not None and (not isinstance(iters, int) or isinstance(iters, bool) or iters < 1):
        raise UsageError(f"iters must be an integer >= 1, got {iters!r}")
    if z0 is not None:
        if not isinstance(z0, torch.Tensor):
            raise TypeError(f"z0 must be a torch.Tensor, got {type(z0).__name__}")
        shape = (noise.shape[0], model.x_embedder.num_patches, model.hidden_size)
        if tuple(z0.shape) != shape:
            raise UsageError(f"z0 must have shape {shape}, got {tuple(z0.shape)}")
        if z0.dtype != param.dtype or z0.device != param.device:
            raise UsageError(f"z0 must be {param.dtype} on {param.device}, got {z0.dtype} on {z0.device}")
        if values and not torch.isfinite(z0).all():
            raise UsageError("z0 contains NaN or Inf (the solver would return NaN images)")
    if not model.cond:
        if y is not None:
            raise UsageError("labels y were given to an unconditional model (built with cond=False)")
        return
    if y is None:
        raise UsageError("this model is class-conditional (cond=True): labels y are required")
    if y.dtype not in (torch.int64, torch.int32) or y.shape != (noise.shape[0],):
        raise UsageError(f"y must be integer labels of shape ({noise.shape[0]},), got {y.dtype} {tuple(y.shape)}")
    if y.device != param.device:
        raise UsageError(f"y is on {y.device} but the model is on {param.device}")
    if values and (int(y.min()) < 0 or int(y.max()) >= model.num_classes):
        raise UsageError(f"labels y must lie in [0, {model.num_classes}), got min {int(y.min())}, max {int(y.max())}")


def check_guidance_range(guidance_range, name: str = "guidance_range") -> tuple[float, float]:
    """(wmin, wmax) as floats, finite, wmin <= wmax; a ValueError naming ``name`` otherwise."""
    try:
        wmin, wmax = (float(w) for w in guidance_range)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be two numbers (wmin, wmax), got {guidance_range!r}") from None
    if not (math.isfinite(wmin) and math.isfinite(wmax) and wmin <= wmax):
        raise UsageError(f"{name} must be finite with wmin <= wmax, got ({wmin}, {wmax})")
    return wmin, wmax


def model_guidance_range(guidance_range, cond: bool) -> tuple[float, float] | None:
    """A model's ``guidance_range`` argument as (wmin, wmax) floats, or None; guidance distillation
    needs a class-conditional model."""
    if guidance_range is None:
        return None
    if not cond:
        raise UsageError(
            "guidance_range needs a class-conditional model (cond=True): classifier-free "
            "guidance is defined by the class condition"
        )
    return check_guidance_range(guidance_range)


def check_guidance(model, guidance, batch: int) -> torch.Tensor | None:
    """The guidance weights as a (batch,) tensor in the model's dtype and device (None for a model
    without guidance); a ValueError naming ``guidance`` for a missing, unexpected, misshaped,
    non-finite or out-of-range w."""
    rng = model.guidance_range
    if rng is None:
        if guidance is not None:
            raise UsageError(
                "guidance was given, but this model was built without guidance "
                "(guidance_range=None; only guidance-distilled models take w)"
            )
        return None
    if guidance is None:
        raise UsageError(
            f"this model is guidance-distilled (guidance_range={list(rng)}): the guidance "
            "weight w is required (w = 0: the class-conditional sample)"
        )
    param = model.pos_embed
    w = torch.as_tensor(guidance, dtype=param.dtype, device=param.device)
    if w.dim() > 1 or (w.dim() == 1 and w.shape[0] != batch):
        raise UsageError(f"guidance must be a number or a ({batch},) tensor, got shape {tuple(w.shape)}")
    w = w.expand(batch)
    if not value_checks_enabled(w):
        return w
    wd = w.double()
    slack = 1e-6 * (1 + max(abs(rng[0]), abs(rng[1])))  # float32-rounded weights of the range's ends
    if not bool(torch.isfinite(wd).all()) or float(wd.min()) < rng[0] - slack or float(wd.max()) > rng[1] + slack:
        raise UsageError(
            f"guidance must lie in the trained range [{rng[0]}, {rng[1]}], got values in "
            f"[{float(wd.min())}, {float(wd.max())}]"
        )
    return w
