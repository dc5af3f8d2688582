"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x.y / D + 1)^3, averaged over random subsets. Unlike FD it is unbiased in the sample
count, so values at different N are comparable (and can be slightly negative)."""

from __future__ import annotations

import numpy as np

from getkern.metrics.frechet import ArrayLike, as_float64


def _cubic(k: np.ndarray) -> np.ndarray:
    return k * k * k  # much faster than k ** 3 (a generic pow) on large arrays


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x (m, D) and y (n, D) under k(a, b) = (a.b / D + 1)^3."""
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    kxx, kyy, kxy = (_cubic(a @ b.T / d + 1.0) for a, b in ((x, x), (y, y), (x, y)))
    # Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(
    features1: ArrayLike, features2: ArrayLike, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID between (N1, D) and (N2, D) feature sets: (mean, std) of MMD^2 over ``num_subsets`` random
    subsets of ``min(subset_size, N1, N2)`` rows drawn without replacement from each (float64)."""
    x, y = as_float64(features1, "features1"), as_float64(features2, "features2")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be (N1, D) and (N2, D) with one D, got {x.shape} and {y.shape}")
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {x.shape[0]} and {y.shape[0]}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            polynomial_mmd2(
                x[rng.choice(x.shape[0], size, replace=False)], y[rng.choice(y.shape[0], size, replace=False)]
            )
            for _ in range(num_subsets)
        ]
    )
    return float(values.mean()), float(values.std())


__all__ = ["kernel_inception_distance", "polynomial_mmd2"]
