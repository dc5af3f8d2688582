"""Loading a GET from any checkpoint kind and drawing seeded samples from it."""
from __future__ import annotations

from pathlib import Path

import torch

from getkern.checkpoint import CheckpointError
from getkern.models import GET


def load_get(path, backend: str = "auto") -> GET:
    """A GET in eval mode from a ``save_pretrained`` directory, a getkern training checkpoint (its EMA
    weights) or a reference checkpoint (``{'args', 'model', 'ema', ...}``, EMA weights)."""
    from getkern.distill.trainer import load_ema_model
    path = Path(path)
    if path.is_dir():
        model = GET.from_pretrained(path)
    elif not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    else:
        try:
            model = load_ema_model(path)
        except CheckpointError as ours:
            try:
                model = GET.from_official_checkpoint(path)
            except CheckpointError as theirs:
                raise CheckpointError(f"{path} is neither a getkern training checkpoint ({ours}) nor a "
                                      f"reference checkpoint ({theirs})") from None
    return model.set_backend(backend).eval()


@torch.no_grad()
def sample_get(model: GET, num: int, *, seed: int = 0, iters: int = 6, solver: str = "fixed_point",
               labels: torch.Tensor | None = None, noise: torch.Tensor | None = None, batch_size: int = 500,
               guidance: float | torch.Tensor | None = None,
               **solver_kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``num`` images (num, C, H, W) float32 on CPU. ``noise`` (num, C, H, W) defaults to N(0, I) seeded
    by ``seed``; z0 always comes from ``seed``. Class-conditional models take ``labels`` (num,) int64,
    default 0, 1, ..., K-1, 0, 1, ... . Guidance-distilled models take ``guidance`` w (a number or (num,))."""
    device = model.pos_embed.device
    g = torch.Generator().manual_seed(seed)
    shape = (num, model.in_channels, model.input_size, model.input_size)
    noise = torch.randn(shape, generator=g) if noise is None else noise
    if tuple(noise.shape) != shape:
        raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
    z0 = torch.randn((num, model.x_embedder.num_patches, model.hidden_size), generator=g)
    if model.cond and labels is None:
        labels = torch.arange(num) % model.num_classes
    if guidance is not None:
        guidance = torch.as_tensor(guidance, dtype=torch.float64)
        if guidance.dim() > 1 or (guidance.dim() == 1 and guidance.shape[0] != num):
            raise ValueError(f"guidance must be a number or a ({num},) tensor, got shape {tuple(guidance.shape)}")
        guidance = guidance.expand(num)
    out = []
    for i in range(0, num, batch_size):
        y = labels[i:i + batch_size].to(device) if model.cond else None
        w = guidance[i:i + batch_size] if guidance is not None else None
        out.append(model(noise[i:i + batch_size].to(device), y, iters=iters, solver=solver,
                         z0=z0[i:i + batch_size].to(device), guidance=w, **solver_kwargs).float().cpu())
    return torch.cat(out), labels


def class_rows(num_classes: int, per_class: int) -> torch.Tensor:
    """Labels for a grid with one row per class: (num_classes * per_class,) = [0]*per_class + [1]*per_class ..."""
    return torch.arange(num_classes).repeat_interleave(per_class)
