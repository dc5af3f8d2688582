"""The shipped digits classifier and the digits-classifier Frechet distance with floor and ceiling."""
import pytest
import torch

from getkern.metrics.digits import MAX_SAMPLES, METRIC_NAME, default_digits_metric
from getkern.metrics.digits_classifier import accuracy, digits_split


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def metric():
    return default_digits_metric()


def test_shipped_classifier_accuracy(metric):
    _, _, ho_x, ho_y = digits_split()
    acc = accuracy(metric.classifier, ho_x, ho_y)
    assert acc >= 0.97 and acc == pytest.approx(metric.classifier.metadata["heldout_accuracy"], abs=1e-3)


def test_floor_ceiling_and_ordering(metric):
    tr_x, _, ho_x, _ = digits_split()
    n = 120
    real = metric(tr_x[:n])
    assert real.name == METRIC_NAME and real.num_samples == n and "FID" not in str(real)
    assert 0 < real.floor and real.distance < 2 * real.floor  # real train digits score near the floor
    assert real.ceiling > 10 * real.distance
    blank = metric(torch.full((n, 1, 8, 8), -1.0))
    assert blank.distance > real.distance and blank.kid > real.kid
    # the ceiling is the metric of N(0, 1) noise, clipped as samples are
    assert metric(torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(5))).distance == \
        pytest.approx(real.ceiling, rel=0.1)


def test_bad_images(metric):
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        metric(torch.zeros(10, 3, 8, 8))
    with pytest.raises(ValueError, match=f"2..{MAX_SAMPLES}"):
        metric(torch.zeros(MAX_SAMPLES + 1, 1, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        metric(torch.full((4, 1, 8, 8), float("nan")))
