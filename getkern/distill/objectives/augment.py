"""Random geometric augmentations applied *identically* to a student and a teacher image batch.

The "E" of E-LatentLPIPS (Kang et al. 2024): a perceptual distance averaged over an ensemble of random
augmentations, the same transform on both sides, is harder to satisfy with artefacts the frozen network
happens to be blind to. Parameters are drawn once per (ensemble member, sample) from a generator the
caller seeds (the trainer: (seed, step)), so a step's augmentations are reproducible and a resumed run
sees the same ones.

Transforms (per sample): an affine map (rotation, isotropic scale, translation, optional horizontal
flip) resampled bilinearly, then an optional cutout square. Digits are not flipped (a mirrored 2 is not
a 2), so ``flip`` is off by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSpec:
    """Ranges of the random transforms; pixel quantities are in pixels of the input image."""

    max_shift: float = 1.0  # translation, uniform in [-max_shift, max_shift] per axis
    max_rotation_deg: float = 10.0
    max_log_scale: float = 0.1  # scale = exp(uniform(-s, s))
    flip: bool = False  # horizontal flips with probability 1/2 (off for digits)
    cutout: int = 3  # side of a square set to ``background``; 0 = none
    cutout_prob: float = 0.5
    background: float = -1.0  # value that fills pixels moved in from outside (digits: -1)


@dataclass(frozen=True)
class AugmentParams:
    """One ensemble member's transforms for a batch of B images: ``theta`` (B, 2, 3) affine matrices
    in ``affine_grid`` coordinates, ``cutout`` (B, H, W) bool mask of the pixels to blank."""

    theta: torch.Tensor
    cutout: torch.Tensor

    def select(self, rows) -> AugmentParams:
        """The transforms of a slice (or index tensor) of the batch."""
        return AugmentParams(self.theta[rows], self.cutout[rows])


def sample_params(spec: AugmentSpec, batch: int, height: int, width: int, generator: torch.Generator) -> AugmentParams:
    """Draw transforms for ``batch`` images of ``height`` x ``width`` from ``generator`` (CPU, float32)."""
    u = torch.rand((6, batch), generator=generator, dtype=torch.float64) * 2 - 1  # uniform(-1, 1)
    angle = u[0] * math.radians(spec.max_rotation_deg)
    scale = torch.exp(u[1] * spec.max_log_scale)
    flip = torch.where(u[2] < 0, -1.0, 1.0) if spec.flip else torch.ones(batch, dtype=torch.float64)
    # affine_grid works in [-1, 1] coordinates: one pixel is 2/width (x) or 2/height (y).
    tx, ty = u[3] * spec.max_shift * 2 / width, u[4] * spec.max_shift * 2 / height
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # the grid maps output -> input
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], -1), torch.stack([sin * flip, cos, ty], -1)], 1)
    mask = torch.zeros((batch, height, width), dtype=torch.bool)
    if spec.cutout > 0:
        k = min(spec.cutout, height, width)
        top = torch.randint(0, height - k + 1, (batch,), generator=generator)
        left = torch.randint(0, width - k + 1, (batch,), generator=generator)
        on = (u[5] + 1) / 2 < spec.cutout_prob
        rows = torch.arange(height)[None, :, None]
        cols = torch.arange(width)[None, None, :]
        mask = (
            on[:, None, None]
            & (rows >= top[:, None, None])
            & (rows < top[:, None, None] + k)
            & (cols >= left[:, None, None])
            & (cols < left[:, None, None] + k)
        )
    return AugmentParams(theta.float(), mask)


def apply_params(images: torch.Tensor, params: AugmentParams, background: float = -1.0) -> torch.Tensor:
    """Transform ``images`` (B, C, H, W) or (R, B, C, H, W) (R batches sharing the same B transforms, e.g.
    several student iterates and the teacher image) with ``params``; differentiable in ``images``."""
    lead = images.shape[:-4]
    x = images.reshape(-1, *images.shape[-4:])  # (R, B, C, H, W)
    R, B, C, H, W = x.shape
    if params.theta.shape[0] != B:
        raise ValueError(f"augmentation parameters are for {params.theta.shape[0]} images, got a batch of {B}")
    theta = params.theta.to(x.device, x.dtype).repeat(R, 1, 1)
    grid = F.affine_grid(theta, (R * B, C, H, W), align_corners=False)
    # Shift so the background is 0, which grid_sample's zero padding then extends outside the image.
    out = (
        F.grid_sample(
            x.reshape(R * B, C, H, W) - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        + background
    )
    out = out.masked_fill(params.cutout.to(x.device).repeat(R, 1, 1)[:, None], background)
    return out.reshape(*lead, B, C, H, W)
