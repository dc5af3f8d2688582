"""Frechet distance against exact closed forms on Gaussians with known covariances."""

import numpy as np
import pytest

from getkern.metrics.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_to_statistics,
    trace_sqrt_product,
)


def _random_spd(rng, d, cond=50.0):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.geomspace(1.0, cond, d)) @ q.T


def test_2x2_closed_form():
    # For 2x2 PSD S1, S2: tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)).
    rng = np.random.default_rng(0)
    s1, s2 = _random_spd(rng, 2, 7.0), _random_spd(rng, 2, 3.0) * 2.5
    mu1, mu2 = rng.standard_normal(2), rng.standard_normal(2)
    root = np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    exact = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * root
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-12, abs=1e-12)


def test_non_commuting_high_dim_closed_form():
    # S1 = A^2, S2 = A^-1 M^2 A^-1  =>  sqrt(S1) S2 sqrt(S1) = M^2, so tr sqrt(S1 S2) = tr M exactly.
    rng = np.random.default_rng(1)
    d = 48
    a, m = _random_spd(rng, d), _random_spd(rng, d, 10.0)
    a_inv = np.linalg.inv(a)
    s1, s2 = a @ a, a_inv @ m @ m @ a_inv
    s2 = (s2 + s2.T) / 2
    assert np.abs(s1 @ s2 - s2 @ s1).max() > 1.0  # really non-commuting
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    exact = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(m)
    assert trace_sqrt_product(s1, s2) == pytest.approx(np.trace(m), rel=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-8)


def test_diagonal_and_identical_and_singular():
    a, b = np.array([1.0, 4.0, 9.0, 0.0]), np.array([4.0, 1.0, 0.25, 2.0])
    exact = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # commuting covariances
    assert frechet_distance(np.zeros(4), np.diag(a), np.zeros(4), np.diag(b)) == pytest.approx(exact, rel=1e-12)
    rng = np.random.default_rng(2)
    s = _random_spd(rng, 16)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-9)
    low_rank = rng.standard_normal((16, 3))
    assert frechet_distance(mu1, low_rank @ low_rank.T, mu1, low_rank @ low_rank.T) == pytest.approx(0, abs=1e-9)


def test_feature_statistics_unbiased():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 5))
    mu, sigma = feature_statistics(x)
    centred = x - x.mean(0)
    np.testing.assert_allclose(mu, x.sum(0) / 37, rtol=1e-12)
    np.testing.assert_allclose(sigma, centred.T @ centred / 36, rtol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 4)))


def test_low_rank_path_equals_the_full_one():
    # N <= D: the (N, N) eigenproblem of A^T S2 A gives the same distance as the (D, D) route
    rng = np.random.default_rng(4)
    for n, d in [(2, 9), (5, 16), (16, 16), (40, 64), (200, 64)]:
        f = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
        mu2, s2 = feature_statistics(rng.standard_normal((3 * d, d)))
        full = frechet_distance(*feature_statistics(f), mu2, s2)
        assert frechet_distance_to_statistics(f, mu2, s2) == pytest.approx(full, rel=1e-10)
    assert frechet_distance_to_statistics(f, *feature_statistics(f)) == pytest.approx(0, abs=1e-8 * full)
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance_to_statistics(np.zeros((3, 4)), np.zeros(5), np.eye(5))
