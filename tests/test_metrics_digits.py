"""The shipped digits classifier and the digits-classifier Frechet distance with floor and ceiling."""

import copy

import pytest
import torch

from getkern.metrics.digits import MAX_SAMPLES, METRIC_NAME, default_digits_metric
from getkern.metrics.digits_classifier import accuracy
from getkern.teacher.digits import digits_split


@pytest.fixture(scope="module")
def metric():
    return default_digits_metric()


def test_shipped_classifier_accuracy(metric):
    _, _, ho_x, ho_y = digits_split()
    clf, n = metric.classifier, len(ho_y)
    assert clf.metadata["heldout_size"] == n
    acc = accuracy(clf, ho_x, ho_y)
    assert acc >= 0.97
    # The stored accuracy was measured in float32 on another machine, whose logits differ from these by
    # float32 rounding; a float64 evaluation here is the machine-independent reference. Bound: six float32
    # layers (fan-in <= 576), each rounding to a few eps of the logits' size (k = 64; measured ~1.5 here).
    with torch.no_grad():
        logits64 = copy.deepcopy(clf).double()(ho_x.double())
        logits32 = clf(ho_x).double()
    tol = 64 * torch.finfo(torch.float32).eps * logits64.abs().amax(1)
    assert ((logits32 - logits64).abs().amax(1) <= tol).all()
    # Only images whose top-two float64 logits are within 2 tol can be classified differently elsewhere.
    top2 = logits64.topk(2, dim=1).values
    ambiguous = int((top2[:, 0] - top2[:, 1] <= 2 * tol).sum())
    correct64 = int((logits64.argmax(1) == ho_y).sum())
    assert abs(round(acc * n) - correct64) <= ambiguous
    # heldout_accuracy is rounded to 4 decimals: +-0.03 images at n = 600, so compare whole images
    assert abs(round(clf.metadata["heldout_accuracy"] * n) - correct64) <= ambiguous


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
    assert metric(torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(5))).distance == pytest.approx(
        real.ceiling, rel=0.1
    )


def test_bad_images(metric):
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        metric(torch.zeros(10, 3, 8, 8))
    with pytest.raises(ValueError, match=f"2..{MAX_SAMPLES}"):
        metric(torch.zeros(MAX_SAMPLES + 1, 1, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        metric(torch.full((4, 1, 8, 8), float("nan")))
