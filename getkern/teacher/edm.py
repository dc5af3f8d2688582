"""EDM (Karras, Aittala, Aila, Laine 2022): preconditioning, training loss and the deterministic Heun
sampler. Every line maps to an equation of the paper (Table 1 and Algorithm 1):

    sigma schedule  t_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho,  t_N = 0
    precondition    D(x, s) = c_skip(s) x + c_out(s) F(c_in(s) x, c_noise(s))
                    c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2),
                    c_noise = ln(s)/4
    training        ln s ~ N(P_mean, P_std^2), weight lambda(s) = (s^2+sd^2)/(s sd)^2
    Heun step       d = (x - D(x, t_i))/t_i;  x' = x + (t_{i+1}-t_i) d;  if t_{i+1} > 0:
                    d' = (x' - D(x', t_{i+1}))/t_{i+1};  x' = x + (t_{i+1}-t_i)(d + d')/2

A *denoiser* here is any callable ``D(x, sigma, class_labels) -> denoised`` with x (B, C, H, W),
sigma (B,) and class_labels (B,) int64 or None. The sampler keeps the ODE state in float64; the
denoiser computes in its own dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

Tensor = torch.Tensor
Denoiser = Callable[[Tensor, Tensor, Tensor | None], Tensor]

SIGMA_MIN, SIGMA_MAX, RHO, SIGMA_DATA = 0.002, 80.0, 7.0, 0.5
DEFAULT_STEPS = 18  # 2N - 1 = 35 network evaluations, as EDM used for CIFAR-10


class EDMPrecond(nn.Module):
    """Wrap a raw network ``F(x_in, c_noise, class_labels)`` into the EDM denoiser D(x, sigma, labels)."""

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data

    def forward(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) any float dtype, sigma (B,) or scalar -> D(x, sigma) in x's dtype."""
        dtype = next(self.net.parameters()).dtype
        sd = self.sigma_data
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        c_noise = s.log() / 4
        F_x = self.net((c_in * x).to(dtype), c_noise.flatten().expand(x.shape[0]).to(dtype), class_labels)
        return c_skip * x + c_out * F_x.to(x.dtype)


def edm_loss(
    denoiser: Denoiser,
    images: Tensor,
    class_labels: Tensor | None = None,
    *,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    sigma_data: float = SIGMA_DATA,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EDM training loss, mean over the batch: lambda(s) |D(y + n, s) - y|^2, ln s ~ N(P_mean, P_std^2)."""
    B = images.shape[0]
    rnd = torch.randn(B, generator=generator, device=images.device, dtype=images.dtype)
    sigma = (rnd * P_std + P_mean).exp()
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    n = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    D_yn = denoiser(images + n * sigma.view(-1, 1, 1, 1), sigma, class_labels)
    return (weight.view(-1, 1, 1, 1) * (D_yn - images) ** 2).mean()


def sigma_steps(
    num_steps: int = DEFAULT_STEPS,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    device: torch.device | str | None = None,
) -> Tensor:
    """The N noise levels t_0 = sigma_max > ... > t_{N-1} = sigma_min, then t_N = 0: float64 (N+1,)."""
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2 (the schedule needs sigma_max and sigma_min), got {num_steps}")
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    t = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros_like(t[:1])])


@torch.no_grad()
def heun_sample(
    denoiser: Denoiser,
    latents: Tensor,
    class_labels: Tensor | None = None,
    *,
    num_steps: int = DEFAULT_STEPS,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
) -> Tensor:
    """EDM's deterministic 2nd-order sampler (Algorithm 1, no churn).

    latents: unit-Gaussian z (B, C, H, W); the ODE starts at x_0 = z * t_0. Returns float64 images
    (unclipped). Uses 2 * num_steps - 1 evaluations of ``denoiser``.
    """
    t_steps = sigma_steps(num_steps, sigma_min, sigma_max, rho, device=latents.device)
    ones = torch.ones(latents.shape[0], dtype=torch.float64, device=latents.device)
    x_next = latents.to(torch.float64) * t_steps[0]
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_cur = x_next
        d_cur = (x_cur - denoiser(x_cur, t_cur * ones, class_labels).to(torch.float64)) / t_cur  # Euler slope
        x_next = x_cur + (t_next - t_cur) * d_cur
        if i < num_steps - 1:  # 2nd-order correction, except on the final step to t_N = 0
            d_prime = (x_next - denoiser(x_next, t_next * ones, class_labels).to(torch.float64)) / t_next
            x_next = x_cur + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def network_evaluations(num_steps: int) -> int:
    """Denoiser calls made by :func:`heun_sample` with ``num_steps`` steps."""
    return 2 * num_steps - 1


def fourier_embedding(c_noise: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of the scalar noise condition: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=c_noise.device) / half)
    angles = c_noise.float()[:, None] * 250.0 * freqs[None]  # c_noise = ln(s)/4 spans ~[-1.6, 1.1]
    return torch.cat([angles.cos(), angles.sin()], dim=1).to(c_noise.dtype)
