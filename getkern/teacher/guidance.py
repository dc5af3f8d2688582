"""Classifier-free guidance (Ho and Salimans 2022) in the form guidance distillation uses (Meng et al.
CVPR 2023):

    D_w(x, sigma, c) = (1 + w) D(x, sigma, c) - w D(x, sigma, none)

w = 0 is the conditional denoiser; w > 0 pushes samples towards what makes them look like class c.
``none`` is the null class a teacher trained with label dropout has (label index ``null_label``).
"""

from __future__ import annotations

import torch

from getkern.teacher.edm import Denoiser

Tensor = torch.Tensor


def guided_denoiser(denoiser: Denoiser, guidance: float | Tensor, null_label: int) -> Denoiser:
    """The guided denoiser D_w as a callable ``(x, sigma, class_labels) -> denoised``.

    ``guidance``: w, a float or a (B,) tensor (one w per sample). Both terms come from one call of
    ``denoiser`` on the doubled batch [x, x] with labels [c, null], so each D_w evaluation costs two
    network evaluations per image but one call. Computes in x's dtype (float64 under Heun).
    """

    def D_w(x: Tensor, sigma: Tensor, class_labels: Tensor | None) -> Tensor:
        if class_labels is None:
            raise ValueError("classifier-free guidance needs class_labels (the conditional term)")
        B = x.shape[0]
        w = torch.as_tensor(guidance, dtype=x.dtype, device=x.device)
        if w.dim() not in (0, 1) or (w.dim() == 1 and w.shape[0] != B):
            raise ValueError(f"guidance must be a float or a ({B},) tensor, got shape {tuple(w.shape)}")
        w = w.reshape(-1, *([1] * (x.dim() - 1)))
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(B)
        null = torch.full_like(class_labels, null_label)
        both = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([class_labels, null]))
        cond, uncond = both[:B].to(x.dtype), both[B:].to(x.dtype)
        return (1 + w) * cond - w * uncond

    return D_w


__all__ = ["guided_denoiser"]
