"""Generative Equilibrium Transformer (Geng, Pokle, Kolter, NeurIPS 2023).

noise -> patch embedding -> injection transformer (once) -> u_1..u_3
      -> equilibrium transformer f(z) = blocks_3(blocks_2(blocks_1(z; u_1); u_2); u_3), iterated
         to a fixed point from random z0 -> decoder -> image.

Class-conditional models add a class vector c to every block's QKV pre-activation; guidance-distilled
ones (``guidance_range=(wmin, wmax)``, Meng et al. CVPR 2023) add an embedding of the guidance weight w
to that same vector.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from getkern import deq
from getkern.models.configs import GET_CONFIGS, check_model_config, parse_model_name
from getkern.models.frontend import PatchModel
from getkern.models.inputs import check_inputs
from getkern.models.layers import Block, Injection
from getkern.models.pretrained import load_official


class GET(PatchModel):
    """Generative Equilibrium Transformer. Parameter names match the reference's state dicts.

    ``GET(noise)`` maps the teacher's unit-Gaussian noise (B, C, H, W) to images (B, C, H, W) on the
    teacher's data scale, nominally [-1, 1]; outputs are not clamped (clamp before converting to pixels).
    The defaults are GET-T/2 on 32x32x3 images (:meth:`from_config` gives the named sizes).

    Args:
        input_size: image height = width in pixels, an integer >= 1 divisible by ``patch_size``
            (default 32).
        patch_size: side of the square patches that become tokens, an integer >= 1 (default 2; the named
            sizes use 2, 4 or 8). Tokens N = (input_size / patch_size) ** 2.
        in_channels: image channels, an integer >= 1 (default 3; also the output channels).
        hidden_size: token width D, an integer >= 4, a multiple of 4 (sin-cos positions) and of
            ``num_heads`` (default 256).
        depth: blocks of the injection transformer, run once per sample, an integer >= 0 (default 6).
        deq_depth: blocks of the weight-tied equilibrium transformer f, iterated to a fixed point, an
            integer >= 1 (default 3, as published).
        num_heads: attention heads of every block, an integer >= 1 dividing ``hidden_size`` (default 4).
        mlp_ratio: MLP hidden width / D in the injection blocks, a number > 0 (default 4.0).
        deq_mlp_ratio: MLP hidden width / D in the equilibrium blocks, a number > 0 (default 6.0; the
            published sizes widen these, which run once per solver iteration).
        num_classes: classes of a class-conditional model, an integer >= 1 (default 10; unused unless
            ``cond``).
        cond: class-conditional (True: ``forward`` requires labels y in [0, num_classes)) or
            unconditional (False, default).
        guidance_range: (wmin, wmax), finite, wmin <= wmax, for a guidance-distilled model that takes a
            guidance weight w in that range (needs ``cond=True``); None (default): no guidance input.
        backend: block kernels, "auto" (default: Triton where it runs, else PyTorch), "triton" or "torch"
            (the PyTorch reference path); a runtime choice, changeable with :meth:`set_backend`, not
            part of the architecture.
        solver_backend: the fixed-point solver loop, "auto" (default), "torch", "triton" or "cpp" (the
            C++ loop); a runtime choice, settable later as ``model.solver_backend``.

    Invalid values raise :class:`getkern.errors.UsageError` (a ValueError) naming the argument.
    """

    def __init__(
        self,
        *,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 3,
        hidden_size: int = 256,
        depth: int = 6,
        deq_depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        deq_mlp_ratio: float = 6.0,
        num_classes: int = 10,
        cond: bool = False,
        guidance_range: tuple[float, float] | None = None,
        backend: str = "auto",
        solver_backend: str = "auto",
    ):
        config = dict(
            input_size=input_size,
            patch_size=patch_size,
            in_channels=in_channels,
            hidden_size=hidden_size,
            depth=depth,
            deq_depth=deq_depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            deq_mlp_ratio=deq_mlp_ratio,
            num_classes=num_classes,
            cond=cond,
        )  # the architecture (config.json); backends are runtime choices
        check_model_config("GET", {**config, "backend": backend, "solver_backend": solver_backend})
        super().__init__(config, guidance_range)
        self.solver_backend = solver_backend
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, mlp_ratio, backend) for _ in range(depth)])
        self.qkv_inj = Injection(hidden_size, deq_depth, backend)
        self.deq_blocks = nn.ModuleList(
            [Block(hidden_size, num_heads, deq_mlp_ratio, backend) for _ in range(deq_depth)]
        )
        self._finish(backend)

    @classmethod
    def from_config(cls, name: str, **overrides) -> GET:
        """``GET.from_config("GET-B/2", input_size=8, in_channels=1, cond=True)``; patch 2, 4 or 8."""
        family, patch = parse_model_name(name, GET_CONFIGS, "GET")
        return cls(**{**GET_CONFIGS[family], "patch_size": patch, **overrides})

    @classmethod
    def from_official_checkpoint(cls, path, ema: bool = True, **overrides) -> GET:
        """Build and load a checkpoint written by the reference implementation's train.py."""
        return load_official(cls, path, ema=ema, **overrides)

    # ------------------------------------------------------------------ pieces

    def inject(self, noise: torch.Tensor, y: torch.Tensor | None = None, guidance=None):
        """Run the injection transformer once: returns (c, [u_1, .., u_L]); c: (B, 1, 3D) or None.
        ``guidance``: w, a number or (B,), for guidance-distilled models (required by them)."""
        x, c = self.embed(noise, y, guidance)  # (B, N, D), (B, 1, 3D) or None
        for block in self.blocks:
            x = block(x, c)
        return c, self.qkv_inj(x)  # L x (B, N, 3D)

    def equilibrium_fn(self, c: torch.Tensor | None, u: list[torch.Tensor]):
        """The map f(z) whose fixed point GET solves for. z: (B, N, D)."""
        if c is not None and u and self.deq_blocks[0].attn.residual_in_matmul(u[0]):
            u, c = [u_i + c for u_i in u], None  # the CPU inference path adds c + u once per solve

        def f(z: torch.Tensor) -> torch.Tensor:
            for block, u_i in zip(self.deq_blocks, u):
                z = block(z, c, u_i)
            return z

        return f

    def initial_state(self, noise: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Fresh standard-normal z0 (B, N, D), independent of the input noise."""
        shape = (noise.shape[0], self.x_embedder.num_patches, self.hidden_size)
        return torch.randn(shape, generator=generator, device=noise.device, dtype=noise.dtype)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        noise: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        iters: int = 6,
        solver: str = "fixed_point",
        z0: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_info: bool = False,
        return_iterates: bool = False,
        grad: str = "unrolled",
        tol: float | None = 1e-3,
        guidance: float | torch.Tensor | None = None,
        **solver_kwargs,
    ):
        """noise (B, C, H, W) [+ labels y (B,)] [+ guidance w, a number or (B,)] -> images (B, C, H, W),
        nominally in [-1, 1] (not clamped). ``z0`` (B, N, D), the solver's start, defaults to N(0, I)
        drawn with ``generator``; a caller's ``z0`` must be finite. :func:`getkern.sample` draws noise,
        labels and z0 from one generator.

        Inference (default) solves with ``solver`` ("fixed_point" | "anderson") for at most ``iters``
        f-evaluations and decodes the per-sample lowest-residual f-value; with the defaults this is
        exactly the reference's procedure (tol=1e-3 on the absolute residual, all samples).
        ``return_iterates=True`` (training) returns the list of decoded states for the
        fixed-point-correction loss, with gradients from ``grad`` ("unrolled": the reference's
        ``iters`` steps; "phantom" / "implicit": ``iters`` solver iterations without a graph, then
        phantom steps or the implicit backward). ``solver_kwargs`` go to getkern.deq (stop, m, lam, tau,
        check_every, phantom_steps, phantom_damping, adjoint_*; see docs/solvers.md); the solver
        backend is ``self.solver_backend``. ``return_info=True`` also returns the solver statistics dict.
        ``guidance`` is required by guidance-distilled models (and must lie in their ``guidance_range``)
        and refused by the others.
        """
        check_inputs(self, noise, y, iters=iters, z0=z0)
        c, u = self.inject(noise, y, guidance)
        f = self.equilibrium_fn(c, u)
        z0 = self.initial_state(noise, generator) if z0 is None else z0
        if return_iterates:
            states, info = deq.train_iterates(
                f, z0, iters=iters, grad=grad, solver=solver, tol=tol, backend=self.solver_backend, **solver_kwargs
            )
            out = [self.decode(z) for z in states]
        else:
            z, info = deq.solve(
                f, z0, solver=solver, max_iter=iters, tol=tol, backend=self.solver_backend, **solver_kwargs
            )
            out = self.decode(z)
        return (out, info) if return_info else out
