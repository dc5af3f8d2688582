"""The naive unrolled baseline: a plain ViT with GET's stem, block, class-QKV conditioning, decoder."""
from __future__ import annotations

import torch
import torch.nn as nn

from getkern.models.configs import VIT_CONFIGS, parse_model_name
from getkern.models.get import _guidance_range
from getkern.models.inputs import check_inputs
from getkern.models.layers import (Block, ClassEmbedding, FinalLayer, GuidanceEmbedding, PatchEmbed,
                                   check_guidance, init_weights, unpatchify)
from getkern.models.pretrained import PretrainedMixin
from getkern.nn import set_backend


class ViT(PretrainedMixin, nn.Module):
    """noise (B, C, H, W) [+ labels] -> image, through ``depth`` distinct blocks run once."""

    def __init__(self, *, input_size: int = 32, patch_size: int = 2, in_channels: int = 3,
                 hidden_size: int = 384, depth: int = 12, num_heads: int = 6, mlp_ratio: float = 4.0,
                 num_classes: int = 10, cond: bool = False, guidance_range: tuple[float, float] | None = None,
                 backend: str = "auto"):
        super().__init__()
        self.config = dict(input_size=input_size, patch_size=patch_size, in_channels=in_channels,
                           hidden_size=hidden_size, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                           num_classes=num_classes, cond=cond)
        self.guidance_range = _guidance_range(guidance_range, cond)
        if self.guidance_range is not None:
            self.config["guidance_range"] = list(self.guidance_range)
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.hidden_size, self.num_classes, self.cond = hidden_size, num_classes, cond
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.y_embedder = ClassEmbedding(num_classes, 3 * hidden_size) if cond else None
        self.w_embedder = (GuidanceEmbedding(3 * hidden_size, hidden_size, self.guidance_range)
                           if self.guidance_range is not None else None)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.x_embedder.num_patches, hidden_size),
                                      requires_grad=False)
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, mlp_ratio, backend) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, in_channels)
        init_weights(self)

    @classmethod
    def from_config(cls, name: str, **overrides) -> "ViT":
        """``ViT.from_config("ViT-B/2", cond=True)``; sizes S, B, L, XL; patch 2, 4 or 8."""
        family, patch = parse_model_name(name, VIT_CONFIGS, "ViT")
        return cls(**{**VIT_CONFIGS[family], "patch_size": patch, **overrides})

    def set_backend(self, backend: str) -> "ViT":
        return set_backend(self, backend)

    def forward(self, noise: torch.Tensor, y: torch.Tensor | None = None, *,
                guidance: float | torch.Tensor | None = None) -> torch.Tensor:
        """noise (B, C, H, W) [+ labels y (B,)] [+ guidance w, a number or (B,), for guidance-distilled models]."""
        check_inputs(self, noise, y)
        w = check_guidance(self, guidance, noise.shape[0])
        x = self.x_embedder(noise) + self.pos_embed  # (B, N, D)
        c = self.y_embedder(y) if self.cond else None
        if w is not None:
            c = c + self.w_embedder(w)
        for block in self.blocks:
            x = block(x, c)
        return unpatchify(self.final_layer(x), self.patch_size, self.in_channels)
