"""The naive unrolled baseline: a plain ViT with GET's stem, block, class-QKV conditioning, decoder."""

from __future__ import annotations

import torch
import torch.nn as nn

from getkern.models.configs import VIT_CONFIGS, check_model_config, parse_model_name
from getkern.models.frontend import PatchModel
from getkern.models.inputs import check_inputs
from getkern.models.layers import Block


class ViT(PatchModel):
    """noise (B, C, H, W) [+ labels] -> image, through ``depth`` distinct blocks run once.

    Outputs are on the teacher's data scale, nominally [-1, 1], and not clamped. The defaults are
    ViT-S/2 on 32x32x3 images (:meth:`from_config` gives the named sizes).

    Args:
        input_size: image height = width in pixels, an integer >= 1 divisible by ``patch_size``
            (default 32).
        patch_size: side of the square patches that become tokens, an integer >= 1 (default 2; the named
            sizes use 2, 4 or 8).
        in_channels: image channels, an integer >= 1 (default 3; also the output channels).
        hidden_size: token width D, an integer >= 4, a multiple of 4 (sin-cos positions) and of
            ``num_heads`` (default 384).
        depth: transformer blocks, each with its own weights, run once, an integer >= 1 (default 12).
        num_heads: attention heads of every block, an integer >= 1 dividing ``hidden_size`` (default 6).
        mlp_ratio: MLP hidden width / D, a number > 0 (default 4.0).
        num_classes: classes of a class-conditional model, an integer >= 1 (default 10; unused unless
            ``cond``).
        cond: class-conditional (True: ``forward`` requires labels y in [0, num_classes)) or
            unconditional (False, default).
        guidance_range: (wmin, wmax), finite, wmin <= wmax, for a guidance-distilled model that takes a
            guidance weight w in that range (needs ``cond=True``); None (default): no guidance input.
        backend: block kernels, "auto" (default: Triton where it runs, else PyTorch), "triton" or "torch";
            a runtime choice (:meth:`set_backend`), not part of the architecture.

    Invalid values raise :class:`getkern.errors.UsageError` (a ValueError) naming the argument.
    """

    def __init__(
        self,
        *,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 3,
        hidden_size: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        num_classes: int = 10,
        cond: bool = False,
        guidance_range: tuple[float, float] | None = None,
        backend: str = "auto",
    ):
        config = dict(
            input_size=input_size,
            patch_size=patch_size,
            in_channels=in_channels,
            hidden_size=hidden_size,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=num_classes,
            cond=cond,
        )  # the architecture (config.json); backends are runtime choices
        check_model_config("ViT", {**config, "backend": backend})
        super().__init__(config, guidance_range)
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, mlp_ratio, backend) for _ in range(depth)])
        self._finish(backend)

    @classmethod
    def from_config(cls, name: str, **overrides) -> ViT:
        """``ViT.from_config("ViT-B/2", cond=True)``; sizes S, B, L, XL; patch 2, 4 or 8."""
        family, patch = parse_model_name(name, VIT_CONFIGS, "ViT")
        return cls(**{**VIT_CONFIGS[family], "patch_size": patch, **overrides})

    def forward(
        self, noise: torch.Tensor, y: torch.Tensor | None = None, *, guidance: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """noise (B, C, H, W) [+ labels y (B,)] [+ guidance w, a number or (B,), for guidance-distilled models]
        -> images (B, C, H, W), nominally in [-1, 1] (not clamped)."""
        check_inputs(self, noise, y)
        x, c = self.embed(noise, y, guidance)  # (B, N, D), (B, 1, 3D) or None
        for block in self.blocks:
            x = block(x, c)
        return self.decode(x)
