"""EDM diffusion teachers: preconditioning, the deterministic Heun sampler, a digits teacher getkern
trains itself, and an adapter for EDM's published pickles."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from getkern.teacher.edm import (DEFAULT_STEPS, EDMPrecond, edm_loss, heun_sample, network_evaluations,
                                 sigma_steps)

SHIPPED_DIGITS_TEACHER = Path(__file__).resolve().parent.parent / "assets" / "digits_teacher"


@dataclass
class Teacher:
    """A denoiser D(x, sigma, labels) plus what a pair manifest records about it."""
    denoiser: torch.nn.Module
    image_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int                   # 0: unconditional
    meta: dict = field(default_factory=dict)

    def sample(self, latents: torch.Tensor, class_labels: torch.Tensor | None = None,
               num_steps: int = DEFAULT_STEPS) -> torch.Tensor:
        """Heun-sample images (float64) from unit-Gaussian latents (B, C, H, W)."""
        return heun_sample(self.denoiser, latents, class_labels if self.num_classes else None, num_steps=num_steps)


def load_teacher(spec: str | Path = "digits", *, trust_pickle: bool = False, edm_root=None,
                 device: str | torch.device = "cpu") -> Teacher:
    """``"digits"``: the shipped digits teacher; a directory: a teacher written by
    :func:`~getkern.teacher.digits.save_teacher`; a ``.pkl``: an EDM network pickle (needs EDM's code
    and ``trust_pickle=True``)."""
    from getkern.teacher.digits import load_teacher_dir
    if str(spec) == "digits":
        spec = SHIPPED_DIGITS_TEACHER
    spec = Path(spec)
    if spec.suffix == ".pkl":
        from getkern.teacher.edm_pickle import load_edm_pickle
        denoiser, meta = load_edm_pickle(spec, trust_pickle=trust_pickle, edm_root=edm_root, device=device)
        shape = (meta["img_channels"], meta["img_resolution"], meta["img_resolution"])
        return Teacher(denoiser, shape, meta["num_classes"], meta)
    denoiser, meta = load_teacher_dir(spec)
    meta = {"kind": meta["kind"], "path": str(spec), "config": meta["config"], "training": meta.get("training", {})}
    return Teacher(denoiser.to(device), (1, 8, 8), denoiser.net.config["num_classes"], meta)


__all__ = ["DEFAULT_STEPS", "EDMPrecond", "SHIPPED_DIGITS_TEACHER", "Teacher", "edm_loss", "heun_sample",
           "load_teacher", "network_evaluations", "sigma_steps"]
