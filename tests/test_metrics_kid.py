"""KID: the unbiased polynomial-kernel MMD^2 against a hand computation and a brute-force loop."""

import itertools

import numpy as np
import pytest

from getkern.metrics.kid import kernel_inception_distance, polynomial_mmd2


def _brute_force_mmd2(x, y):
    k = lambda a, b: (a @ b / x.shape[1] + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    sxy = sum(k(a, b) for a in x for b in y) / (m * n)
    return sxx + syy - 2 * sxy


def test_hand_example():
    # D = 1, x = {0, 1}, y = {1, 2}: k(a, b) = (ab + 1)^3.
    # xx: k(0,1) = 1; yy: k(1,2) = 27; xy: (1 + 1 + 8 + 27) / 4 = 9.25  =>  1 + 27 - 18.5 = 9.5
    assert polynomial_mmd2(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])) == pytest.approx(9.5, abs=1e-12)


def test_matches_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((9, 3)) + 0.5
    assert polynomial_mmd2(x, y) == pytest.approx(_brute_force_mmd2(x, y), rel=1e-12)


def test_subsets_and_separation():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 4)), rng.standard_normal((60, 4))
    # one subset covering all of x and y is the full-sample estimate (order does not matter)
    mean, std = kernel_inception_distance(x, y[:40], num_subsets=1, subset_size=1000)
    assert mean == pytest.approx(polynomial_mmd2(x, y[:40]), rel=1e-12) and std == 0
    same = kernel_inception_distance(x, y, num_subsets=20, subset_size=30)[0]
    shifted = kernel_inception_distance(x, y + 1.0, num_subsets=20, subset_size=30)[0]
    assert abs(same) < 0.1 * shifted


def test_bad_inputs():
    with pytest.raises(ValueError, match="one D"):
        kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))
