"""EDM diffusion teachers: preconditioning, the deterministic Heun sampler, a digits teacher getkern
trains itself (and a variant with a null class for classifier-free guidance), and an adapter for EDM's
published pickles."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from getkern.teacher.digits import load_teacher_dir, save_teacher, train_digits_teacher
from getkern.teacher.edm import DEFAULT_STEPS, EDMPrecond, edm_loss, heun_sample, network_evaluations, sigma_steps
from getkern.teacher.edm_pickle import load_edm_pickle
from getkern.teacher.guidance import guided_denoiser

SHIPPED_DIGITS_TEACHER = Path(__file__).resolve().parent.parent / "assets" / "digits_teacher"
SHIPPED_DIGITS_TEACHER_GUIDED = Path(__file__).resolve().parent.parent / "assets" / "digits_teacher_guided"
SHIPPED_TEACHERS = {"digits": SHIPPED_DIGITS_TEACHER, "digits-guided": SHIPPED_DIGITS_TEACHER_GUIDED}


@dataclass
class Teacher:
    """A denoiser D(x, sigma, labels) plus what a pair manifest records about it."""

    denoiser: torch.nn.Module
    image_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int  # 0: unconditional
    meta: dict = field(default_factory=dict)
    null_label: int | None = None  # label of the "no class" condition (trained with label dropout)

    def sample(
        self,
        latents: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        num_steps: int = DEFAULT_STEPS,
        guidance: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Heun-sample images (float64) from unit-Gaussian latents (B, C, H, W).

        ``guidance``: classifier-free guidance weight w (a float or one per sample, (B,)); the sampler
        then runs on D_w = (1 + w) D(x, c) - w D(x, none), two network evaluations per step evaluation.
        """
        if guidance is None:
            return heun_sample(self.denoiser, latents, class_labels if self.num_classes else None, num_steps=num_steps)
        return heun_sample(self.guided(guidance), latents, class_labels, num_steps=num_steps)

    def guided(self, guidance: float | torch.Tensor):
        """The guided denoiser D_w (see :func:`getkern.teacher.guidance.guided_denoiser`)."""
        if not self.num_classes:
            raise ValueError("guidance needs a class-conditional teacher; this one is unconditional")
        if self.null_label is None:
            raise ValueError(
                "this teacher has no null class (it was trained without label dropout), so it "
                "cannot give D(x, sigma, none) for classifier-free guidance; use 'digits-guided'"
            )
        return guided_denoiser(self.denoiser, guidance, self.null_label)


def load_teacher(
    spec: str | Path = "digits", *, trust_pickle: bool = False, edm_root=None, device: str | torch.device = "cpu"
) -> Teacher:
    """``"digits"``: the shipped digits teacher; ``"digits-guided"``: the shipped digits teacher with a
    null class (for classifier-free guidance); a directory: a teacher written by
    :func:`~getkern.teacher.digits.save_teacher`; a ``.pkl``: an EDM network pickle (needs EDM's code
    and ``trust_pickle=True``)."""
    spec = Path(SHIPPED_TEACHERS.get(str(spec), spec))
    if spec.suffix == ".pkl":
        denoiser, meta = load_edm_pickle(spec, trust_pickle=trust_pickle, edm_root=edm_root, device=device)
        shape = (meta["img_channels"], meta["img_resolution"], meta["img_resolution"])
        return Teacher(denoiser, shape, meta["num_classes"], meta)
    denoiser, meta = load_teacher_dir(spec)
    meta = {"kind": meta["kind"], "path": str(spec), "config": meta["config"], "training": meta.get("training", {})}
    net = denoiser.net
    return Teacher(
        denoiser.to(device), (1, 8, 8), net.num_classes, meta, null_label=net.num_classes if net.null_class else None
    )


__all__ = [
    "DEFAULT_STEPS",
    "EDMPrecond",
    "SHIPPED_DIGITS_TEACHER",
    "SHIPPED_DIGITS_TEACHER_GUIDED",
    "Teacher",
    "edm_loss",
    "guided_denoiser",
    "heun_sample",
    "load_teacher",
    "network_evaluations",
    "save_teacher",
    "sigma_steps",
    "train_digits_teacher",
]
