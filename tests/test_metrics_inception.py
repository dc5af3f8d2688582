"""The Inception FID pipeline with random networks standing in for the real weights: small TorchScript
nets, a random state dict in pytorch-fid's format (getkern's FIDInceptionV3), a stand-in for NVIDIA's
TorchScript; the protocols' plumbing, statistics files that record their protocol, Inception Score,
missing-weights errors and `getkern fid-stats` (plus one real batch when weights are on this machine)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import FakeNvidiaInception, random_fid_inception, save_scripted

from getkern import cli
from getkern.checkpoint import CheckpointError
from getkern.errors import UsageError
from getkern.metrics import inception as inception_module
from getkern.metrics.fid import InceptionFID
from getkern.metrics.inception import (
    PYTORCH_FID_FILE,
    InceptionFeatures,
    default_inception_path,
    default_weight_candidates,
)
from getkern.metrics.inception_score import inception_score
from getkern.metrics.preprocess import quantize_to_uint8
from getkern.metrics.protocols import PROTOCOLS, get_protocol
from getkern.metrics.stats_file import load_stats, save_stats


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
    save_scripted(TinyFeatures(), d / "features.pt")
    save_scripted(TinyFeatures(logits=True), d / "logits.pt")
    save_scripted(FakeNvidiaInception(), d / "nvidia.pt")
    return d


@pytest.fixture(scope="module")
def state_dict_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fidnet") / "random_inception.pth"
    net = random_fid_inception()
    torch.save(net.state_dict(), path)
    return path, net


def _samples(n, seed, shift=0.0, channels=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, 6, 6, generator=g) * 2 - 1 + shift).clamp(-1, 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_extractor_runs_the_protocols_preprocessing(tiny_nets, protocol):
    ex = InceptionFeatures(tiny_nets / "features.pt", protocol=protocol, batch_size=7)
    assert ex.dim == 8 and not ex.has_logits and ex.kind == "TorchScript" and ex.protocol.name == protocol
    x = _samples(10, 0, channels=1)
    f, logits = ex.from_samples(x)
    assert f.shape == (10, 8) and f.dtype == np.float64 and logits is None
    # the same pipeline by hand: quantise, the protocol's resize and scaling, network
    by_hand = ex.net(get_protocol(protocol).preprocess(quantize_to_uint8(x)))
    np.testing.assert_allclose(f, by_hand.double().detach().numpy(), rtol=1e-6, atol=1e-6)


def test_protocols_feed_the_network_different_inputs():
    x = quantize_to_uint8(_samples(4, 5))
    x[:, :, 0, 0], x[:, :, -1, -1] = 0, 255  # corner pixels survive every resize unchanged
    a, b, c = (get_protocol(p).preprocess(x) for p in ("gan-metrics", "fidelity", "clean"))
    pixels = lambda t, half: t * half + half  # noqa: E731  back to [0, 255]
    assert (pixels(a, 127.5) - pixels(b, 128)).abs().max() > 50  # half-pixel vs TF1 sampling
    assert (pixels(a, 127.5) - pixels(c, 128)).abs().max() > 10  # bilinear vs bicubic
    assert a.min() == -1 and a.max() == 1 and b.min() == c.min() == -1 and b.max() == c.max() == 127 / 128


def test_state_dict_network_gives_features_logits_and_inception_score(state_dict_file, tmp_path):
    path, net = state_dict_file
    ex = InceptionFeatures(path, batch_size=2)
    assert ex.kind == "pytorch-fid state dict" and ex.dim == 2048 and ex.has_logits
    assert ex.weights.startswith("random_inception.pth (sha256 ")
    x = _samples(3, 1)
    f, logits = ex.from_samples(x)
    assert f.shape == (3, 2048) and logits.shape == (3, 1008) and (f >= 0).all() and f.std() > 1e-3
    with torch.no_grad():
        ref_f, ref_logits = net(get_protocol("gan-metrics").preprocess(quantize_to_uint8(x)))
        unbiased = ref_f @ net.fc.weight.t()
    np.testing.assert_array_equal(f, ref_f.double().numpy())
    # logits without the classifier's bias (what pytorch-gan-metrics and torch-fidelity score)
    np.testing.assert_allclose(logits, unbiased.double().numpy(), rtol=0, atol=1e-6 * np.abs(logits).max())
    save_stats(tmp_path / "ref.npz", f.mean(0), np.cov(f, rowvar=False), protocol="gan-metrics")
    q = InceptionFID(tmp_path / "ref.npz", ex)(x)  # 2048-d, from 3 samples: the low-rank Frechet path
    assert q.distance == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(f, rowvar=False)))
    assert q.inception_score == pytest.approx(inception_score(logits, splits=3)[0]) and 1 <= q.inception_score <= 3
    assert q.protocol == q.reference_protocol == "gan-metrics" and "IS " in str(q)


def test_nvidia_style_torchscript_uses_its_layers(tiny_nets):
    ex = InceptionFeatures(tiny_nets / "nvidia.pt", protocol="clean")
    assert ex.kind == "NVIDIA TorchScript" and ex.dim == 2048 and not ex.has_logits
    images = quantize_to_uint8(_samples(2, 2))
    f, logits = ex.from_uint8(images)
    # clean-fid: the resized image scaled by (x - 128) / 128, then base.layers
    expected = ex.net.layers(get_protocol("clean").preprocess(images))
    np.testing.assert_array_equal(f, expected.double().detach().numpy())
    assert logits is None


def test_fid_stats_command_records_the_protocol_and_fid_refuses_another(tiny_nets, tmp_path, capsys):
    real = _samples(30, 1)
    images = ((real * 127.5 + 128).clip(0, 255).to(torch.uint8)).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    np.save(tmp_path / "real.npy", images)
    assert (
        cli.main(
            [
                "fid-stats",
                str(tmp_path / "real.npy"),
                "--out",
                str(tmp_path / "ref.npz"),
                "--inception-weights",
                str(tiny_nets / "features.pt"),
                "--with-features",
                "--fid-protocol",
                "clean",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "clean protocol" in capsys.readouterr().out
    ref = load_stats(tmp_path / "ref.npz", dim=8)
    assert ref.features.shape == (30, 8) and ref.protocol == "clean" and ref.weights.startswith("features.pt")
    fid = InceptionFID(tmp_path / "ref.npz", tiny_nets / "features.pt", protocol="clean")
    same = fid(real)
    assert same.distance == pytest.approx(0.0, abs=1e-8) and same.inception_score is None
    other = fid(_samples(30, 2, shift=0.6))
    assert other.distance > 1e-3 and other.kid > same.kid
    assert "unavailable" in str(other) and fid.name == "FID (clean)"
    with pytest.raises(
        UsageError,
        match="made with --fid-protocol clean, but this FID uses --fid-protocol "
        "gan-metrics: FIDs of different protocols are not comparable",
    ):
        InceptionFID(tmp_path / "ref.npz", tiny_nets / "features.pt")
    # published statistics carry no protocol: accepted, and said so
    np.savez(tmp_path / "published.npz", mu=ref.mu.astype(np.float32), sigma=ref.sigma.astype(np.float32))
    q = InceptionFID(tmp_path / "published.npz", tiny_nets / "features.pt", protocol="fidelity")(real)
    assert q.reference_protocol is None and "not recorded" in str(q)


def test_profile_refuses_statistics_of_another_protocol(tiny_nets, tmp_path, capsys):
    save_stats(tmp_path / "s.npz", np.zeros(8), np.eye(8), protocol="fidelity")
    assert (
        cli.main(
            [
                "profile",
                "--out",
                str(tmp_path / "out"),
                "--in-channels",
                "3",
                "--ref-stats",
                str(tmp_path / "s.npz"),
                "--inception-weights",
                str(tiny_nets / "features.pt"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("getkern profile: error: ") and err.count("\n") == 1
    assert "--fid-protocol fidelity" in err and not (tmp_path / "out").exists()


def test_wrong_dimension_and_bad_files(tiny_nets, tmp_path):
    np.savez(tmp_path / "s2048.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ValueError, match="2048-d statistics but the feature extractor gives 8-d"):
        InceptionFID(tmp_path / "s2048.npz", tiny_nets / "features.pt")
    with pytest.raises(CheckpointError, match="do not exist"):
        InceptionFeatures(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="neither a TorchScript Inception nor pytorch-fid's"):
        InceptionFeatures(tmp_path / "junk.pt")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth"):
        InceptionFeatures(tmp_path / "other.pth")
    # a file named like the published download must be it (sha256 prefix 6726825d)
    (tmp_path / PYTORCH_FID_FILE).write_bytes(b"not the weights")
    with pytest.raises(CheckpointError, match="is not the published"):
        InceptionFeatures(tmp_path / PYTORCH_FID_FILE)
    with pytest.raises(UsageError, match="--fid-protocol 'tf': expected one of gan-metrics, clean, fidelity"):
        InceptionFeatures(tiny_nets / "features.pt", protocol="tf")


def test_missing_default_weights_name_the_files_and_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert default_inception_path("gan-metrics") is None
    with pytest.raises(CheckpointError) as e:
        InceptionFeatures(protocol="gan-metrics")
    message = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / PYTORCH_FID_FILE) in message
    assert "pip install pytorch-fid" in message and "nothing is downloaded" in message and "\n" not in message
    # on the command line: one line, exit 1, before any image is read into Inception
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 3), np.uint8))
    assert cli.main(["fid-stats", str(tmp_path / "x.npy"), "--out", str(tmp_path / "ref.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("getkern fid-stats: error: no Inception weights for --fid-protocol gan-metrics")
    assert err.count("\n") == 1 and not (tmp_path / "ref.npz").exists()


def test_the_command_lines_protocols_are_the_library_s():
    from getkern.commands.fid_stats import FID_PROTOCOLS
    from getkern.metrics.protocols import DEFAULT_PROTOCOL

    assert FID_PROTOCOLS == PROTOCOLS and FID_PROTOCOLS[0] == DEFAULT_PROTOCOL == "gan-metrics"


def test_default_weights_are_found_in_the_hub_folder(state_dict_file, tmp_path, monkeypatch):
    path, _ = state_dict_file
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    target = tmp_path / "hub" / "checkpoints" / PYTORCH_FID_FILE
    target.symlink_to(path)
    assert default_weight_candidates("gan-metrics")[0] == target
    assert default_weight_candidates("fidelity")[1] == target  # torch-fidelity's name first, same weights
    # the random file is not the published one: its sha256 prefix is checked
    with pytest.raises(CheckpointError, match="sha256 starts with"):
        InceptionFeatures()
    monkeypatch.setattr(inception_module, "STATE_DICT_SHA256_PREFIX", inception_module._sha256(path)[:8])
    ex = InceptionFeatures()
    assert ex.path == target and ex.protocol.name == "gan-metrics" and ex.kind == "pytorch-fid state dict"


def test_inception_score():
    assert inception_score(torch.zeros(20, 7), splits=2)[0] == pytest.approx(1.0)
    confident = torch.eye(5).repeat(4, 1) * 60.0  # balanced, certain: IS = number of classes
    assert inception_score(confident, splits=2)[0] == pytest.approx(5.0, rel=1e-6)
    # splits are rows i*N//k .. (i+1)*N//k: with 7 rows and 2 splits, rows 0-2 and 3-6
    logits = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    parts = [inception_score(logits[:3], splits=1)[0], inception_score(logits[3:], splits=1)[0]]
    assert inception_score(logits, splits=2) == pytest.approx((np.mean(parts), np.std(parts)))
    order = np.random.RandomState(2020).permutation(7)
    assert inception_score(logits, splits=2, shuffle_seed=2020) == pytest.approx(
        inception_score(logits[order], splits=2)
    )


def test_logits_network_gives_inception_score(tiny_nets, tmp_path):
    np.savez(tmp_path / "s.npz", mu=np.zeros(8), sigma=np.eye(8))
    q = InceptionFID(tmp_path / "s.npz", tiny_nets / "logits.pt")(_samples(20, 3))
    assert q.inception_score is not None and 1.0 <= q.inception_score <= 5.0 and q.kid is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_real_inception_batch(protocol):
    if default_inception_path(protocol) is None:
        pytest.skip(f"no Inception weights for the {protocol} protocol on this machine (docs/metrics.md)")
    ex = InceptionFeatures(protocol=protocol, batch_size=2)
    assert ex.dim == 2048
    f, _ = ex.from_samples(_samples(2, 4))
    assert f.shape == (2, 2048) and np.isfinite(f).all() and (f >= 0).all()  # pool3 follows a ReLU
