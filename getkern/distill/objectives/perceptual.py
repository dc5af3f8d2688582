"""Perceptual regression distance: how far a student image is from its teacher image in the features
of a frozen network, averaged over an ensemble of random augmentations applied identically to both
(E-LatentLPIPS's recipe, Kang et al. 2024, with a pixel-space network).

Per layer l with features f_l (B, C_l, H_l, W_l): unit-normalise each spatial position's channel vector
(as LPIPS does), then d_l = mean over positions of sum over channels of (f_l(student) - f_l(teacher))^2;
the distance is the mean of d_l over layers (uniform layer weights: LPIPS's learned ones do not exist
for these networks). Networks:

- ``"digits"``: getkern's digits classifier (``getkern.metrics.digits_classifier``), layers conv1..conv4
  (after ReLU, before pooling) and the 64-d penultimate layer. 8x8 grayscale only. It is the same
  network the embedded default's quality metric uses: a model trained with this loss is optimised in
  the metric's own feature space, which flatters it (see docs/objectives.md).
- ``"lpips"``: the standard LPIPS (VGG) from the optional ``lpips`` package, weights on local disk.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from getkern.distill.config import PERCEPTUAL_NETS  # listed with the training settings, torch-free
from getkern.distill.objectives.augment import AugmentParams, apply_params
from getkern.metrics.digits_classifier import load_digits_classifier


class DigitsFeatureLayers(nn.Module):
    """The frozen digits classifier as a list of feature maps: (B, 1, 8, 8) in [-1, 1] ->
    [(B, 32, 8, 8), (B, 32, 8, 8), (B, 64, 4, 4), (B, 64, 4, 4), (B, 64, 1, 1)]."""

    def __init__(self, classifier=None):
        super().__init__()
        self.net = (classifier if classifier is not None else load_digits_classifier()).eval().requires_grad_(False)

    def train(self, mode: bool = True) -> DigitsFeatureLayers:
        return super().train(False)  # frozen: always in eval mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(
                f"perceptual_net='digits' takes (B, 1, 8, 8) digits, got {tuple(x.shape)}; "
                f"use perceptual_net='lpips' for other images"
            )
        n = self.net
        a1 = F.relu(n.conv1(x))
        a2 = F.relu(n.conv2(a1))
        a3 = F.relu(n.conv3(F.max_pool2d(a2, 2)))
        a4 = F.relu(n.conv4(a3))
        fc = F.relu(n.fc(F.max_pool2d(a4, 2).flatten(1)))
        return [a1, a2, a3, a4, fc[:, :, None, None]]


def layer_distance(fa: list[torch.Tensor], fb: list[torch.Tensor], eps: float = 1e-10) -> torch.Tensor:
    """(B,) mean over layers of the spatially averaged squared distance of channel-normalised features."""
    total = 0
    for a, b in zip(fa, fb):
        a = a / (a.pow(2).sum(1, keepdim=True) + eps).sqrt()
        b = b / (b.pow(2).sum(1, keepdim=True) + eps).sqrt()
        total = total + (a - b).pow(2).sum(1).mean((1, 2))
    return total / len(fa)


class LPIPSDistance(nn.Module):
    """Standard LPIPS (VGG) from the ``lpips`` package, with its weights already on disk."""

    def __init__(self):
        super().__init__()
        try:
            import lpips
        except ImportError:
            raise ImportError(
                "perceptual_net='lpips' needs the optional `lpips` package and its VGG weights "
                "on local disk (pip install lpips; the first use downloads torchvision's VGG16); "
                "perceptual_net='digits' needs neither"
            ) from None
        self.net = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPSDistance:
        return super().train(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[1] == 1:  # grayscale -> RGB
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        return self.net(a, b).flatten()


class PerceptualDistance(nn.Module):
    """``distance(students, teacher, ensemble)`` -> list of scalar distances, one per student batch.

    students: list of R tensors (B, C, H, W) (e.g. the K decoded iterates); teacher (B, C, H, W) (no
    gradient flows into it); ``ensemble``: one :class:`AugmentParams` per member (B transforms each),
    applied to all R student batches and the teacher batch alike. Distances are averaged over members
    and over the batch."""

    def __init__(self, net: str = "digits"):
        super().__init__()
        if net not in PERCEPTUAL_NETS:
            raise ValueError(f"perceptual_net must be one of {PERCEPTUAL_NETS}, got {net!r}")
        self.kind = net
        self.features = DigitsFeatureLayers() if net == "digits" else None
        self.lpips = LPIPSDistance() if net == "lpips" else None

    def pair_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B,) distances of two unaugmented image batches (B, C, H, W)."""
        if self.lpips is not None:
            return self.lpips(a, b)
        return layer_distance(self.features(a), self.features(b))

    def forward(
        self,
        students: list[torch.Tensor],
        teacher: torch.Tensor,
        ensemble: list[AugmentParams],
        background: float = -1.0,
    ) -> list[torch.Tensor]:
        R = len(students)
        B, C, H, W = teacher.shape
        totals = [0.0] * R
        for params in ensemble:
            x = apply_params(torch.stack([*students, teacher.detach()]), params, background)
            if self.lpips is not None:
                d = [self.lpips(x[r], x[R]) for r in range(R)]
            else:
                feats = self.features(x.reshape(-1, C, H, W))  # one pass for all R + 1 batches
                per = [f.reshape(R + 1, B, *f.shape[1:]) for f in feats]
                d = [layer_distance([f[r] for f in per], [f[R] for f in per]) for r in range(R)]
            totals = [t + dr.mean() for t, dr in zip(totals, d)]
        return [t / len(ensemble) for t in totals]
