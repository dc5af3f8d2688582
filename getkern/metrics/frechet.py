"""Frechet distance between two Gaussians fitted to feature sets (the quantity FID reports).

FD = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2).

tr sqrt(S1 S2) is computed from eigenvalues, in float64: S1 S2 is similar to the symmetric
positive semi-definite matrix sqrt(S1) S2 sqrt(S1), so their eigenvalues agree and
tr sqrt(S1 S2) = sum_i sqrt(lambda_i(sqrt(S1) S2 sqrt(S1))). Two ``eigh`` calls replace
``scipy.linalg.sqrtm`` (slower, and its ``disp=False`` form is removed in SciPy 1.18).
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def as_float64(x: ArrayLike, name: str) -> np.ndarray:
    """A float64 numpy copy of an array or tensor; NaN or Inf is an error naming ``name``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mu (D,), sigma (D, D)), float64, unbiased covariance (divides by N - 1)."""
    f = as_float64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N >= 2, D), got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _clip_roundoff(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with round-off removed: those below D * eps * max|w| become 0.

    Feature covariances are often singular (fewer samples than dimensions); without this, the
    square roots of their ~1e-16-relative zero eigenvalues would add up to a visible bias."""
    cutoff = len(w) * np.finfo(np.float64).eps * np.abs(w).max(initial=0.0)
    return np.where(w > cutoff, w, 0.0)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(_clip_roundoff(w))) @ v.T


def trace_sqrt_product(sigma1: ArrayLike, sigma2: ArrayLike) -> float:
    """tr sqrt(S1 S2) for symmetric PSD S1, S2 (float64)."""
    s1, s2 = as_float64(sigma1, "sigma1"), as_float64(sigma2, "sigma2")
    root1 = _psd_sqrt((s1 + s1.T) / 2)
    m = root1 @ s2 @ root1
    return float(np.sqrt(_clip_roundoff(np.linalg.eigvalsh((m + m.T) / 2))).sum())


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2); mu (D,), sigma (D, D)."""
    mu1, mu2 = as_float64(mu1, "mu1"), as_float64(mu2, "mu2")
    s1, s2 = as_float64(sigma1, "sigma1"), as_float64(sigma2, "sigma2")
    d = mu1.shape[0] if mu1.ndim == 1 else None
    if d is None or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, "
            f"sigma2 {s2.shape}; expected (D,), (D, D) for one D"
        )
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))


def frechet_distance_to_statistics(features: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Frechet distance between the Gaussian fitted to (N, D) ``features`` and N(mu2, sigma2); the same
    value as ``frechet_distance(*feature_statistics(features), mu2, sigma2)``, faster when N <= D.

    With A = centred features^T / sqrt(N - 1) (D, N), S1 = A A^T, and the nonzero eigenvalues of
    S1 S2 = A (A^T S2) are those of the (N, N) PSD matrix A^T S2 A: one small ``eigh`` instead of two
    (D, D) ones (a 2048-d Inception covariance from 600 samples: ~30x less work)."""
    f = as_float64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N >= 2, D), got {f.shape}")
    n, d = f.shape
    if n > d:
        return frechet_distance(*feature_statistics(f), mu2, sigma2)
    mu2, s2 = as_float64(mu2, "mu2"), as_float64(sigma2, "sigma2")
    if mu2.shape != (d,) or s2.shape != (d, d):
        raise ValueError(f"shapes do not match: features {f.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}")
    mu1 = f.mean(axis=0)
    a = (f - mu1).T / np.sqrt(n - 1)  # (D, N)
    m = a.T @ ((s2 + s2.T) / 2) @ a  # (N, N), PSD
    tr_sqrt = float(np.sqrt(_clip_roundoff(np.linalg.eigvalsh((m + m.T) / 2))).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.einsum("ij,ij->", a, a) + np.trace(s2) - 2.0 * tr_sqrt)


def frechet_distance_features(features1: ArrayLike, features2: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
