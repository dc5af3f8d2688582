"""The front and back end GET and ViT share (:class:`PatchModel`): noise -> patch tokens with sin-cos
positions, labels and guidance weight -> the conditioning vector c added to every block's QKV, and
tokens -> image (final LayerNorm + linear, unpatchify). Only the transformer between them differs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from getkern.models.inputs import check_guidance, model_guidance_range
from getkern.models.pretrained import PretrainedMixin
from getkern.nn import set_backend

#################################################################################
#                             Positional embedding                              #
#################################################################################


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """(M,) positions -> (M, dim): sin of the first dim/2 frequencies, then cos (float64)."""
    freqs = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2))
    angles = np.outer(positions.reshape(-1).astype(np.float64), freqs)  # (M, dim/2)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim: int, grid_size: int) -> np.ndarray:
    """Fixed MAE-style 2-D embedding, (grid_size**2, dim); the first half encodes the column index."""
    if dim % 4:
        raise ValueError(f"hidden size {dim} must be divisible by 4 for the 2-D sin-cos embedding")
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    return np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)


#################################################################################
#                               Embedding layers                                #
#################################################################################


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, N, D) with a stride-p convolution; N = (H/p) * (W/p)."""

    def __init__(self, input_size: int, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size={input_size} must be divisible by patch_size={patch_size}")
        self.grid_size = input_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Token-major and dense: a transposed view would make every later elementwise op keep its
        # strides, and the residual stream would be copied again at each fused kernel.
        return self.proj(x).flatten(2).transpose(1, 2).contiguous()  # (B, N, D)


class ClassEmbedding(nn.Module):
    """Class label -> one (3D,) vector added to every block's QKV pre-activation."""

    def __init__(self, num_classes: int, qkv_dim: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes, qkv_dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y).unsqueeze(1)  # (B, 1, 3D)


class GuidanceEmbedding(nn.Module):
    """Guidance weight w (guidance distillation) -> one (3D,) vector added to every block's QKV
    pre-activation, next to the class vector.

    e(w) = (w / scale) MLP(fourier(w)): exactly zero at w = 0 (a product with 0, no cancellation to trust),
    so a guided model at w = 0 is the class-conditional model its other weights make, whatever this
    module has learnt. Fourier features:
    cos/sin of w * pi * 2^(5 j / (F - 1)) / scale, j < F, with scale the largest |w| of the trained range
    (from half a period to 32 half-periods over the range).
    """

    def __init__(self, qkv_dim: int, hidden: int, guidance_range: tuple[float, float], num_freqs: int = 16):
        super().__init__()
        self.num_freqs = num_freqs
        self.scale = max(abs(guidance_range[0]), abs(guidance_range[1]), 1e-3)
        self.mlp = nn.Sequential(nn.Linear(2 * num_freqs, hidden), nn.SiLU(), nn.Linear(hidden, qkv_dim))

    def fourier(self, w: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, 2F) in w's dtype."""
        j = torch.arange(self.num_freqs, dtype=torch.float64, device=w.device)
        freqs = (np.pi / self.scale * 2.0 ** (5.0 * j / max(1, self.num_freqs - 1))).to(w.dtype)
        angles = w[:, None] * freqs[None]
        return torch.cat([angles.cos(), angles.sin()], dim=1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w: (B,) -> (B, 1, 3D)."""
        return ((w / self.scale)[:, None] * self.mlp(self.fourier(w))).unsqueeze(1)


#################################################################################
#                                  The decoder                                  #
#################################################################################


class FinalLayer(nn.Module):
    """LN -> Linear to patch pixels (zero-initialised)."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm_final(x))  # (B, N, p*p*C)


def unpatchify(x: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """(B, N, p*p*C) -> (B, C, H, W), patch pixels in (p, q, c) order as the reference stores them."""
    B, N, _ = x.shape
    g = int(round(N**0.5))
    x = x.reshape(B, g, g, patch_size, patch_size, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, channels, g * patch_size, g * patch_size)


def init_weights(model: nn.Module) -> None:
    """Every init in one place: xavier Linear, zero bias, unit LN, xavier patch conv,
    N(0, 0.02) class table, zero guidance-embedding output, zero decoder projection, fixed sin-cos positions."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    w = model.x_embedder.proj.weight.data
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(model.x_embedder.proj.bias)
    if getattr(model, "y_embedder", None) is not None:
        nn.init.normal_(model.y_embedder.embedding_table.weight, std=0.02)
    if getattr(model, "w_embedder", None) is not None:  # w starts with no effect (as the zero decoder)
        nn.init.zeros_(model.w_embedder.mlp[-1].weight)
        nn.init.zeros_(model.w_embedder.mlp[-1].bias)
    nn.init.zeros_(model.final_layer.linear.weight)
    nn.init.zeros_(model.final_layer.linear.bias)
    pos = sincos_2d(model.pos_embed.shape[-1], model.x_embedder.grid_size)
    model.pos_embed.data.copy_(torch.from_numpy(pos).float().unsqueeze(0))


#################################################################################
#                          The shared model skeleton                            #
#################################################################################


class PatchModel(PretrainedMixin, nn.Module):
    """Base of GET and ViT: :meth:`embed` (noise, labels, guidance -> tokens x (B, N, D) and the QKV
    conditioning c (B, 1, 3D) or None) and :meth:`decode` (tokens -> images (B, C, H, W)).

    A subclass calls ``super().__init__(config, guidance_range)`` (config: its constructor's checked
    arguments, with input_size, patch_size, in_channels, hidden_size, num_classes, cond), builds its
    transformer, then ``self._finish(backend)``: the decoder comes last so that print(model) and the
    state dict read embedders, transformer, decoder, as the reference's.
    """

    def __init__(self, config: dict, guidance_range: tuple[float, float] | None):
        super().__init__()
        self.config = config
        self.guidance_range = model_guidance_range(guidance_range, config["cond"])
        if self.guidance_range is not None:  # only then, so unguided configs stay as they were
            self.config["guidance_range"] = list(self.guidance_range)
        self.input_size, self.patch_size, self.in_channels = (
            config["input_size"],
            config["patch_size"],
            config["in_channels"],
        )
        self.hidden_size, self.num_classes, self.cond = config["hidden_size"], config["num_classes"], config["cond"]
        D = self.hidden_size
        self.x_embedder = PatchEmbed(self.input_size, self.patch_size, self.in_channels, D)
        self.y_embedder = ClassEmbedding(self.num_classes, 3 * D) if self.cond else None
        self.w_embedder = GuidanceEmbedding(3 * D, D, self.guidance_range) if self.guidance_range is not None else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.x_embedder.num_patches, D), requires_grad=False)

    def _finish(self, backend: str) -> None:
        self.final_layer = FinalLayer(self.hidden_size, self.patch_size, self.in_channels)
        init_weights(self)
        set_backend(self, backend)  # "auto"/"triton": the fused blocks, so the default runs fast

    def set_backend(self, backend: str):
        """Fused kernels ("auto"/"triton") or the PyTorch reference ("torch") for every block."""
        return set_backend(self, backend)

    def embed(self, noise: torch.Tensor, y: torch.Tensor | None = None, guidance=None):
        """(x, c): tokens x (B, N, D) with positions; c (B, 1, 3D), class plus guidance vector, or None.
        ``guidance``: w, a number or (B,), for guidance-distilled models (required by them)."""
        w = check_guidance(self, guidance, noise.shape[0])
        x = self.x_embedder(noise) + self.pos_embed  # (B, N, D)
        c = self.y_embedder(y) if self.cond else None
        if w is not None:
            c = c + self.w_embedder(w)
        return x, c

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, C, H, W)."""
        return unpatchify(self.final_layer(z), self.patch_size, self.in_channels)
