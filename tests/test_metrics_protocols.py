"""Each FID protocol against the package it imitates, on random uint8 images and random weights (the real
Inception weights cannot be downloaded here): pytorch-gan-metrics (the GET paper's), clean-fid,
torch-fidelity. Preprocessing must match bit for bit; features, logits and Inception Score of a random
network in pytorch-fid's format must match the package's; the Frechet distance must match each package's
on random statistics. Each test skips when its package is not installed (CI installs them: the `test`
extra)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import FakeNvidiaInception, random_fid_inception, save_scripted

from getkern.metrics.frechet import frechet_distance
from getkern.metrics.inception import InceptionFeatures
from getkern.metrics.inception_score import inception_score
from getkern.metrics.protocols import preprocess_clean, preprocess_fidelity, preprocess_gan_metrics

SHAPES = [(3, 32, 32), (1, 8, 8), (3, 7, 13), (3, 331, 300)]  # CIFAR, digits, odd, downsampling


def _images(shape, seed, n=2):
    return torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.fixture(scope="module")
def hub_with_random_weights(tmp_path_factory):
    """A torch.hub folder holding random weights under the published names, so that the packages load
    them instead of downloading (load_state_dict_from_url uses a cached file as is)."""
    hub = tmp_path_factory.mktemp("hub")
    (hub / "checkpoints").mkdir()
    net = random_fid_inception()
    path = hub / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    (hub / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth").symlink_to(path)
    return hub, path


def _ours(path, protocol, monkeypatch):
    from getkern.metrics import inception

    monkeypatch.setattr(inception, "_check_known_file", lambda *a: None)  # random, not the published bytes
    return InceptionFeatures(path, protocol=protocol, batch_size=8)


# -- pytorch-gan-metrics (the GET paper's evaluation) ---------------------------------------------------


def _gan_metrics_preprocessor():
    """pytorch-gan-metrics' InceptionV3 with its resize and normalisation on and one identity block, so
    its own forward returns the network input (building it normally loads weights)."""
    inception = pytest.importorskip("pytorch_gan_metrics.inception")
    model = inception.InceptionV3.__new__(inception.InceptionV3)
    nn.Module.__init__(model)
    model.resize_input = model.normalize_input = True
    model.output_blocks, model.last_needed_block = [0], 0
    model.blocks = nn.ModuleList([nn.Identity()])
    return model


@pytest.mark.parametrize("shape", SHAPES)
def test_gan_metrics_preprocessing_is_bit_exact(shape):
    model = _gan_metrics_preprocessor()
    x = _images(shape, 0)
    # GET's compute_fid_is hands pytorch-gan-metrics uint8 / 255 (3 channels; grayscale repeated)
    theirs = model(x.expand(-1, 3, -1, -1).float().div(255))[0]
    assert torch.equal(preprocess_gan_metrics(x), theirs)


def test_gan_metrics_features_and_inception_score(request, monkeypatch):
    core = pytest.importorskip("pytorch_gan_metrics.core")
    hub, path = request.getfixturevalue("hub_with_random_weights")  # built only when the package is there
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    x = _images((3, 32, 32), 1, n=3)
    feats, probs = core.get_inception_feature(
        x.float().div(255), dims=[2048, 1008], batch_size=3, device=torch.device("cpu")
    )
    f, logits = _ours(path, "gan-metrics", monkeypatch).from_uint8(x)
    np.testing.assert_allclose(f, feats, rtol=0, atol=1e-6 * np.abs(feats).max())
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), probs, rtol=1e-5, atol=1e-7)
    # Inception Score on many random logits, their split convention (no shuffle)
    many = torch.randn(53, 1008, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3
    theirs = core.calculate_inception_score(torch.softmax(many, 1).numpy(), splits=10)
    assert inception_score(many, splits=10) == pytest.approx(theirs, rel=1e-9)


# -- torch-fidelity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_fidelity_preprocessing_is_bit_exact(shape):
    compat = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    x = _images(shape, 3)
    resized = compat.interpolate_bilinear_2d_like_tensorflow1x(
        x.expand(-1, 3, -1, -1).float(), size=(299, 299), align_corners=False
    )
    assert torch.equal(preprocess_fidelity(x), (resized - 128) / 128)  # its FeatureExtractorInceptionV3's steps


def test_fidelity_features_and_inception_score(request, monkeypatch):
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    isc = pytest.importorskip("torch_fidelity.metric_isc")
    _, path = request.getfixturevalue("hub_with_random_weights")
    theirs = fe.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
    )
    x = _images((3, 32, 32), 4, n=3)
    with torch.no_grad():
        feats, logits_unbiased = theirs(x)
    f, logits = _ours(path, "fidelity", monkeypatch).from_uint8(x)
    np.testing.assert_allclose(f, feats.double().numpy(), rtol=0, atol=1e-6 * float(feats.abs().max()))
    np.testing.assert_allclose(
        logits, logits_unbiased.double().numpy(), rtol=0, atol=1e-6 * float(logits_unbiased.abs().max())
    )
    many = torch.randn(53, 1008, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 3
    ref = isc.isc_features_to_metric(many, splits=10, shuffle=True, rng_seed=2020)
    ours = inception_score(many, splits=10, shuffle_seed=2020)
    assert ours == pytest.approx((ref["inception_score_mean"], ref["inception_score_std"]), rel=1e-9)


# -- clean-fid --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_clean_preprocessing_is_bit_exact(shape):
    resize = pytest.importorskip("cleanfid.resize")
    fn = resize.build_resizer("clean")  # per-channel float32 PIL bicubic to 299, clipped
    x = _images(shape, 6)
    theirs = torch.stack(
        [
            torch.from_numpy(fn(img.permute(1, 2, 0).numpy()).transpose(2, 0, 1).copy())
            for img in x.expand(-1, 3, -1, -1)
        ]
    )
    assert torch.equal(preprocess_clean(x), (theirs - 128) / 128)  # InceptionV3W's normalisation


def test_clean_feature_plumbing_matches_clean_fid(tmp_path, monkeypatch):
    """clean-fid runs NVIDIA's TorchScript as base.layers((x - 128) / 128) on its resized images; a
    stand-in with the same shape (a ``layers`` submodule) gives the same features through both."""
    wrapper = pytest.importorskip("cleanfid.inception_torchscript")
    resize = pytest.importorskip("cleanfid.resize")
    path = tmp_path / "inception-2015-12-05.pt"
    torch.manual_seed(1)
    save_scripted(FakeNvidiaInception(), path)
    theirs = wrapper.InceptionV3W(str(tmp_path), download=False).eval()
    x = _images((3, 32, 32), 7, n=3)
    fn = resize.build_resizer("clean")
    resized = torch.stack([torch.from_numpy(fn(img.permute(1, 2, 0).numpy()).transpose(2, 0, 1).copy()) for img in x])
    with torch.no_grad():
        expected = theirs(resized).double().numpy()
    f, logits = InceptionFeatures(path, protocol="clean").from_uint8(x)
    np.testing.assert_array_equal(f, expected)
    assert logits is None


# -- the Frechet distance -------------------------------------------------------------------------------


def _random_statistics(seed, d=64, n=300):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3 + rng.standard_normal(d)
    b = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3 + rng.standard_normal(d) * 0.5
    return a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)


def _frechet_functions():
    found = {}
    try:
        from pytorch_gan_metrics.core import calculate_frechet_distance

        found["pytorch-gan-metrics"] = calculate_frechet_distance
    except ImportError:
        pass
    try:
        from cleanfid.fid import frechet_distance as clean

        found["clean-fid"] = clean
    except ImportError:
        pass
    try:
        from torch_fidelity.metric_fid import fid_statistics_to_metric

        def fidelity(m1, s1, m2, s2):
            return fid_statistics_to_metric({"mu": m1, "sigma": s1}, {"mu": m2, "sigma": s2}, False)[
                "frechet_inception_distance"
            ]

        found["torch-fidelity"] = fidelity
    except ImportError:
        pass
    return found


@pytest.mark.parametrize("package", ["pytorch-gan-metrics", "clean-fid", "torch-fidelity"])
def test_frechet_distance_matches_the_package(package):
    fn = _frechet_functions().get(package)
    if fn is None:
        pytest.skip(f"{package} not installed")
    for seed in range(3):
        stats = _random_statistics(seed)
        assert frechet_distance(*stats) == pytest.approx(float(fn(*stats)), rel=1e-9)
