"""The embedded default's quality metric: Frechet distance (and KID) in the features of a small CNN
trained on scikit-learn's digits, reported with its floor and ceiling at the same sample count.

It is *not* FID: the features are a 98.5%-accurate digits classifier's 64-d penultimate layer, not
Inception's. Always quote it with its floor (real held-out digits vs the reference: what a perfect
generator would score at this N) and ceiling (Gaussian noise: what a useless one would score).
The reference statistics are the classifier's train split (1197 images); the floor uses the 600
held-out images, so at most 600 samples can be scored.

    metric = DigitsFrechet()
    result = metric(images)          # images (B, 1, 8, 8) in [-1, 1], 2 <= B <= 600
    print(result)                    # digits-classifier Frechet distance 12.3 (floor 4.1, ceiling 480.2) ...
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from getkern.errors import UsageError
from getkern.metrics.digits_classifier import DigitsCNN, load_digits_classifier
from getkern.metrics.frechet import feature_statistics, frechet_distance
from getkern.metrics.kid import kernel_inception_distance
from getkern.teacher.digits import HELDOUT_SIZE, digits_split

METRIC_NAME = "digits-classifier Frechet distance"
MAX_SAMPLES = HELDOUT_SIZE


@dataclass(frozen=True)
class DigitsQuality:
    """One scored sample set. ``floor``/``ceiling`` are the same metric on real held-out digits and on
    Gaussian noise with ``num_samples`` images each; ``kid*`` likewise, in the same features."""

    name: str
    num_samples: int
    distance: float
    floor: float
    ceiling: float
    kid: float
    kid_floor: float
    kid_ceiling: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.name} {self.distance:.2f} (floor {self.floor:.2f}, ceiling {self.ceiling:.2f}; "
            f"N={self.num_samples}); KID {self.kid:.4f} (floor {self.kid_floor:.4f}, "
            f"ceiling {self.kid_ceiling:.4f})"
        )


def check_digit_images(images: torch.Tensor, *, arg: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{arg} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(f"{arg} must have shape (B, 1, 8, 8) (digits scaled to [-1, 1]), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{arg} must be floating point in [-1, 1], got {images.dtype}")
    if not 2 <= images.shape[0] <= MAX_SAMPLES:
        raise ValueError(
            f"{arg}: need 2..{MAX_SAMPLES} images (the floor uses that many real held-out "
            f"digits), got {images.shape[0]}"
        )
    if not torch.isfinite(images).all():
        raise ValueError(f"{arg} contains NaN or Inf")


class DigitsFrechet:
    """Callable metric; the classifier, reference statistics and real/noise features are computed once.

    ``classifier``: a DigitsCNN or a path to its safetensors (default: the shipped one).
    ``noise_seed``: seed of the ceiling's N(0, 1) images (clipped to [-1, 1] like samples are) and of
    the held-out shuffle. ``kid_subsets``: KID averages this many subsets of the reference.
    """

    name = METRIC_NAME

    def __init__(self, classifier: DigitsCNN | str | Path | None = None, *, noise_seed: int = 0, kid_subsets: int = 10):
        self.classifier = (
            classifier if isinstance(classifier, DigitsCNN) else load_digits_classifier(classifier)
        ).eval()
        self.kid_subsets = kid_subsets
        train_x, _, heldout_x, _ = digits_split()
        self.reference_features = self.features(train_x)
        self.reference_stats = feature_statistics(self.reference_features)
        # KID's cubic kernel assumes O(1) features (as Inception's pool3 is); these ReLU outputs have no
        # fixed scale, so KID alone sees them divided by the reference's root-mean-square feature value.
        self.kid_scale = 1.0 / float(np.sqrt(np.mean(self.reference_features**2)))
        # A fixed shuffle of the held-out set, so the floor at N uses N varied digits.
        order = torch.randperm(len(heldout_x), generator=torch.Generator().manual_seed(noise_seed))
        self.heldout_features = self.features(heldout_x[order])
        noise = torch.randn(MAX_SAMPLES, 1, 8, 8, generator=torch.Generator().manual_seed(noise_seed))
        self.noise_features = self.features(noise.clamp(-1, 1))
        self._bounds: dict[int, tuple[float, float, float, float]] = {}

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
        """(B, 1, 8, 8) in [-1, 1] (clamped) -> (B, 64) float64 classifier features."""
        x = images.detach().to("cpu", torch.float32).clamp(-1, 1)
        return (
            torch.cat([self.classifier.features(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
            .double()
            .numpy()
        )

    def _distance(self, features: np.ndarray) -> float:
        return frechet_distance(*feature_statistics(features), *self.reference_stats)

    def _kid(self, features: np.ndarray) -> float:
        return kernel_inception_distance(
            features * self.kid_scale, self.reference_features * self.kid_scale, num_subsets=self.kid_subsets
        )[0]

    def bounds(self, num_samples: int) -> tuple[float, float, float, float]:
        """(floor, ceiling, kid_floor, kid_ceiling) at ``num_samples`` images (cached)."""
        if num_samples not in self._bounds:
            real, noise = self.heldout_features[:num_samples], self.noise_features[:num_samples]
            self._bounds[num_samples] = (self._distance(real), self._distance(noise), self._kid(real), self._kid(noise))
        return self._bounds[num_samples]

    def check_model(self, model: torch.nn.Module, num_samples: int) -> None:
        """Raise before any work when ``model``'s samples or ``num_samples`` cannot be scored."""
        shape = (model.in_channels, model.input_size, model.input_size)
        if shape != (1, 8, 8):
            raise UsageError(f"the {METRIC_NAME} scores (1, 8, 8) digits, but the model makes {shape} images")
        if not 2 <= num_samples <= MAX_SAMPLES:
            raise UsageError(
                f"the {METRIC_NAME} needs 2..{MAX_SAMPLES} samples (its floor uses that many "
                f"real held-out digits), got {num_samples}"
            )

    def __call__(self, images: torch.Tensor) -> DigitsQuality:
        """Score (B, 1, 8, 8) samples in [-1, 1]; values outside are clipped (as uint8 export would)."""
        check_digit_images(images)
        f = self.features(images)
        floor, ceiling, kid_floor, kid_ceiling = self.bounds(len(f))
        return DigitsQuality(self.name, len(f), self._distance(f), floor, ceiling, self._kid(f), kid_floor, kid_ceiling)


@functools.lru_cache(maxsize=1)
def default_digits_metric() -> DigitsFrechet:
    """The shipped classifier's metric, built once per process (it embeds ~2400 real/noise images)."""
    return DigitsFrechet()


def digits_frechet(images: torch.Tensor, classifier: DigitsCNN | str | Path | None = None) -> DigitsQuality:
    """Score ``images`` (B, 1, 8, 8) in [-1, 1] with the shipped (or given) classifier."""
    return (default_digits_metric() if classifier is None else DigitsFrechet(classifier))(images)
