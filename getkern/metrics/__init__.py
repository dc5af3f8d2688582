"""Sample-quality metrics: Frechet distance, KID, Inception FID/IS under a chosen FID protocol
(getkern.metrics.protocols: gan-metrics, the GET paper's, by default; clean; fidelity), and the
digits-classifier Frechet distance used by the embedded default (see docs/metrics.md)."""

from getkern.metrics.digits import METRIC_NAME as DIGITS_METRIC_NAME
from getkern.metrics.digits import DigitsFrechet, DigitsQuality, default_digits_metric, digits_frechet
from getkern.metrics.digits_classifier import load_digits_classifier
from getkern.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_features
from getkern.metrics.kid import kernel_inception_distance

__all__ = [
    "DIGITS_METRIC_NAME",
    "DigitsFrechet",
    "DigitsQuality",
    "default_digits_metric",
    "digits_frechet",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_features",
    "kernel_inception_distance",
    "load_digits_classifier",
]
