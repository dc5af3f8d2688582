"""Reference statistics .npz files: round trip, published-format compatibility, clear errors."""

import numpy as np
import pytest

from getkern.checkpoint import CheckpointError
from getkern.metrics.stats_file import load_stats, save_stats


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    f = rng.standard_normal((11, 6))
    mu, sigma = f.mean(0), np.cov(f, rowvar=False)
    save_stats(tmp_path / "a.npz", mu, sigma)
    s = load_stats(tmp_path / "a.npz", dim=6)
    assert s.features is None and s.dim == 6
    np.testing.assert_array_equal(s.mu, mu)
    np.testing.assert_array_equal(s.sigma, sigma)
    save_stats(tmp_path / "b.npz", mu, sigma, features=f)
    np.testing.assert_array_equal(load_stats(tmp_path / "b.npz").features, f)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]  # no temporary files left


def test_reads_published_format(tmp_path):
    # pytorch-fid / pytorch-gan-metrics write float32 mu/sigma with np.savez: read as float64
    np.savez(tmp_path / "pub.npz", mu=np.ones(4, np.float32), sigma=np.eye(4, dtype=np.float32))
    s = load_stats(tmp_path / "pub.npz")
    assert s.mu.dtype == np.float64 and s.sigma.shape == (4, 4)


def test_errors(tmp_path):
    save_stats(tmp_path / "s.npz", np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="4-d statistics but the feature extractor gives 2048-d"):
        load_stats(tmp_path / "s.npz", dim=2048)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_stats(tmp_path / "missing.npz")
    np.savez(tmp_path / "nokeys.npz", m=np.zeros(3))
    with pytest.raises(CheckpointError, match="missing"):
        load_stats(tmp_path / "nokeys.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_stats(tmp_path / "junk.npz")
    np.savez(tmp_path / "nan.npz", mu=np.array([np.nan, 0]), sigma=np.eye(2))
    with pytest.raises(CheckpointError, match="NaN"):
        load_stats(tmp_path / "nan.npz")
    with pytest.raises(CheckpointError, match="sigma"):
        save_stats(tmp_path / "bad.npz", np.zeros(3), np.eye(4))
