"""Training objectives of the distillation Trainer, beyond GET's L1/L2 fixed-point-correction regression.

    loss = regression_weight * sum_k fpc_weight^(K-1-k) * distance(x_k, teacher image)
         + adversarial_weight * generator loss of a discriminator on the output x_{K-1}

``distance`` (TrainConfig.loss): "l1" | "l2" (the reference) | "perceptual" (a frozen network's feature
distance averaged over an augmentation ensemble, perceptual.py). The adversarial term (adversarial.py)
trains its own discriminator alongside the student. ``init`` and ``freeze`` (finetune.py) start the student
from trained weights and train only part of it.
One Trainer step calls ``Objective.loss`` for each micro-batch, then ``Objective.step`` after the student's
optimiser step; ``state_dict`` (the discriminator and its optimiser) goes into the training checkpoint.
"""

from __future__ import annotations

import torch

from getkern.checkpoint import CheckpointError
from getkern.distill.objectives.adversarial import AdversarialLoss
from getkern.distill.objectives.augment import AugmentSpec, sample_params
from getkern.distill.objectives.finetune import freeze_parameters, load_initial_weights
from getkern.distill.objectives.perceptual import PerceptualDistance
from getkern.distill.objectives.regression import fpc_loss, fpc_sum
from getkern.distill.seeding import hash_seeds

_AUGMENT_STREAM = 0x0A06  # tags the (seed, step) generator of the augmentations


class Objective:
    """The student's loss for one micro-batch, plus whatever else the objective trains (a discriminator).

    ``config``: a TrainConfig; ``image_shape`` (C, H, W) of the pairs; ``num_classes`` 0 when the pairs
    are unconditional."""

    def __init__(self, config, *, image_shape: tuple[int, int, int], num_classes: int, device="cpu"):
        config.validate()  # TrainConfig's own checks (it may have been changed after construction)
        self.config = c = config
        C, H, W = image_shape
        if c.adversarial_weight > 0 and c.disc_classes and num_classes == 0:
            raise ValueError(
                "disc_classes=True (a discriminator with class projection) needs class labels, "
                "but the pairs are unconditional; drop --disc-classes"
            )
        self.adversarial = None
        if c.adversarial_weight > 0:
            self.adversarial = AdversarialLoss(
                C,
                H,
                kind=c.disc_loss,
                pair=c.disc_input == "pair",
                num_classes=num_classes if c.disc_classes else 0,
                width=c.disc_width,
                lr=c.disc_lr,
                seed=c.seed,
            ).to(device)
        self.perceptual = None
        if c.loss == "perceptual" and c.regression_weight > 0:
            self.perceptual = PerceptualDistance(c.perceptual_net).to(device)
        self.augment, self.image_hw = AugmentSpec(), (H, W)

    def loss(
        self,
        student_images: list[torch.Tensor],
        teacher_images: torch.Tensor,
        noise: torch.Tensor,
        labels: torch.Tensor | None,
        step: int,
        rows: slice | None = None,
    ) -> torch.Tensor:
        """Scalar student loss. ``student_images``: the K decoded iterates (B, C, H, W) (the last is the
        output; a one-pass model passes one); ``teacher_images``, ``noise`` (B, C, H, W); ``labels`` (B,)
        or None; ``rows``: where this micro-batch sits in the step's global batch (augmentations are drawn
        for the global batch, so accumulation and data parallelism see the same ones)."""
        c = self.config
        with torch.autocast(teacher_images.device.type, enabled=False):
            students = [x.float() for x in student_images]
            total = torch.zeros((), device=teacher_images.device)
            if c.regression_weight > 0:
                if self.perceptual is None:
                    reg = fpc_loss(students, teacher_images, c.fpc_weight, c.loss)
                else:
                    reg = fpc_sum(
                        self.perceptual(
                            students,
                            teacher_images,
                            self._ensemble(step, rows, len(teacher_images)),
                            self.augment.background,
                        ),
                        c.fpc_weight,
                    )
                total = total + c.regression_weight * reg
            if self.adversarial is not None:
                adv = self.adversarial.loss(students[-1], teacher_images, noise, labels, scale=1.0 / c.grad_accum)
                total = total + c.adversarial_weight * adv
        return total

    def _ensemble(self, step: int, rows: slice | None, batch: int):
        """This micro-batch's rows of the (seed, step) draw for the global batch (``batch`` rows if None)."""
        c = self.config
        g = torch.Generator().manual_seed(hash_seeds(c.seed, step, _AUGMENT_STREAM))
        total = c.batch_size if rows is not None else batch
        members = [sample_params(self.augment, total, *self.image_hw, g) for _ in range(c.perceptual_ensemble)]
        return [m.select(rows if rows is not None else slice(None)) for m in members]

    def step(self) -> None:
        """After the student's optimiser step: update the discriminator."""
        if self.adversarial is not None:
            self.adversarial.step()

    def stats(self) -> dict:
        """Discriminator figures of the last micro-batch, for the training log."""
        return {k: round(v, 6) for k, v in self.adversarial.last.items()} if self.adversarial else {}

    def state_dict(self) -> dict:
        return {"adversarial": self.adversarial.state_dict()} if self.adversarial else {}

    def load_state_dict(self, state: dict) -> None:
        if self.adversarial is not None:
            if "adversarial" not in state:
                raise CheckpointError("the training checkpoint holds no discriminator state")
            self.adversarial.load_state_dict(state["adversarial"])


__all__ = ["Objective", "fpc_loss", "freeze_parameters", "load_initial_weights"]
