"""Adversarial (distributional) distillation: a discriminator tells teacher images from student images,
and the student is trained to raise its score (Zheng & Yang 2024, "Diffusion Models Are Innate One-Step
Generators"; Kang et al. 2024, "Distilling Diffusion Models into Conditional GANs").

Discriminator inputs (``disc_input``):
- ``"image"``: the image alone: matches the student's output *distribution* to the teacher's;
- ``"pair"``: noise and image channels concatenated: matches the joint (noise, image) distribution, so
  the student must also keep the teacher's noise -> image mapping (Kang et al.'s conditional GAN).
With ``classes=True`` the class label enters by projection (Miyato & Koyama 2018): score =
psi(h) + <embed(y), h> for the discriminator's features h.

Design, for small images (8x8 digits to 32x32): a conv net, 3x3 conv to ``width`` channels, then 4x4
stride-2 convs doubling the width until the feature map is at most 4x4, a last 3x3 conv, flatten, linear;
LeakyReLU(0.2). Every weight is spectrally normalised (Miyato et al. 2018): a one-power-iteration
Lipschitz bound that costs one matrix-vector product per layer, needs no second backward pass (an R1
penalty does, roughly doubling the discriminator's cost on a CPU) and keeps a discriminator trained on
a few thousand digits from overpowering the student. Its optimiser is Adam with betas (0.0, 0.99):
no first-moment momentum, because the discriminator's target moves every step (as in SN-GAN, BigGAN,
StyleGAN2).

Losses (d = discriminator score):
- ``"hinge"``: D: mean relu(1 - d_real) + mean relu(1 + d_fake); G: -mean d_fake;
- ``"nonsaturating"``: D: mean softplus(-d_real) + mean softplus(d_fake); G: mean softplus(-d_fake).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

DISC_BETAS = (0.0, 0.99)


class Discriminator(nn.Module):
    """(image (B, C, H, W)[, noise (B, C, H, W)][, labels (B,)]) -> scores (B,) float32."""

    def __init__(self, in_channels: int, image_size: int, *, width: int = 64, pair: bool = False, num_classes: int = 0):
        super().__init__()
        self.pair, self.num_classes = pair, num_classes
        c_in = in_channels * (2 if pair else 1)
        layers, size, w = [spectral_norm(nn.Conv2d(c_in, width, 3, padding=1)), nn.LeakyReLU(0.2)], image_size, width
        while size > 4:
            layers += [spectral_norm(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            size, w = (size + 1) // 2, 2 * w
        layers += [spectral_norm(nn.Conv2d(w, w, 3, padding=1)), nn.LeakyReLU(0.2), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        feat = w * size * size
        self.head = spectral_norm(nn.Linear(feat, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, feat)) if num_classes else None

    def forward(
        self, image: torch.Tensor, noise: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = torch.cat([noise, image], 1) if self.pair else image
        h = self.body(x)
        score = self.head(h).squeeze(1)
        if self.embed is not None:
            score = score + (self.embed(labels) * h).sum(1)
        return score


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Scalar loss the discriminator minimises, from its scores on teacher (real) and student (fake) images."""
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Scalar loss the student minimises: lower when the discriminator scores its images as real."""
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


class AdversarialLoss:
    """The discriminator, its Adam optimiser and both losses.

    ``loss(fake, real, noise, labels, scale)`` returns the student's (generator) loss for ``fake``
    (gradients reach the student only) and, as a side effect, accumulates ``scale`` x the discriminator's
    loss gradient on the *detached* ``fake`` and ``real`` (one student forward serves both players);
    ``step()`` then averages the discriminator's gradients over ranks, updates it and advances the
    spectral norms' power iteration by one step.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        *,
        kind: str = "hinge",
        pair: bool = False,
        num_classes: int = 0,
        width: int = 64,
        lr: float = 2e-4,
        seed: int = 0,
    ):
        self.kind = kind
        with torch.random.fork_rng(devices=[]):  # its own initial weights; the global RNG is left alone
            torch.manual_seed(seed)
            self.disc = Discriminator(in_channels, image_size, width=width, pair=pair, num_classes=num_classes)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=lr, betas=DISC_BETAS)
        self.last: dict[str, float] = {}

    def loss(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        noise: torch.Tensor,
        labels: torch.Tensor | None,
        scale: float = 1.0,
    ) -> torch.Tensor:
        # Eval mode: spectral norm uses its stored power-iteration vectors; they advance once per optimiser
        # step (step()), not once per forward, so micro-batching and data parallelism do not change them.
        d = self.disc.eval()
        B = len(fake)
        both = d(
            torch.cat([real, fake.detach()]),
            torch.cat([noise, noise]) if d.pair else None,
            torch.cat([labels, labels]) if d.embed is not None else None,
        )
        d_loss = discriminator_loss(self.kind, both[:B], both[B:])
        (scale * d_loss).backward()
        d.requires_grad_(False)  # the student's loss must not leave gradients on the discriminator
        try:
            g_loss = generator_loss(
                self.kind, d(fake, noise if d.pair else None, labels if d.embed is not None else None)
            )
        finally:
            d.requires_grad_(True)
        both = both.detach()
        self.last = {
            "d_loss": float(d_loss.detach()),
            "d_real": float(both[:B].mean()),
            "d_fake": float(both[B:].mean()),
        }
        return g_loss

    def step(self) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for p in self.disc.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= dist.get_world_size()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.disc.train()
        with torch.no_grad():  # reading a parametrised weight in train mode runs one power iteration
            for m in self.disc.modules():
                if hasattr(m, "parametrizations"):
                    m.weight  # noqa: B018
        self.disc.eval()

    def to(self, device) -> AdversarialLoss:
        self.disc.to(device)  # in place: the optimiser keeps the same parameter objects
        return self

    def state_dict(self) -> dict:
        return {"discriminator": self.disc.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.disc.load_state_dict(state["discriminator"])
        self.opt.load_state_dict(state["optimizer"])
