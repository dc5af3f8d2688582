"""Inception FID of model samples against a reference statistics file, plus KID (when the file holds
reference features) and Inception Score (when the network gives logits)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from getkern.metrics.frechet import feature_statistics, frechet_distance
from getkern.metrics.inception import InceptionFeatures
from getkern.metrics.inception_score import inception_score
from getkern.metrics.kid import kernel_inception_distance
from getkern.metrics.stats_file import load_stats
from getkern.errors import UsageError


@dataclass(frozen=True)
class InceptionQuality:
    name: str
    num_samples: int
    distance: float                   # FID
    kid: float | None                 # None: the statistics file has no reference features
    inception_score: float | None     # None: the network gives no logits

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        kid = "unavailable (no reference features)" if self.kid is None else f"{self.kid:.5f}"
        is_ = ("unavailable (the Inception file gives no logits)" if self.inception_score is None
               else f"{self.inception_score:.3f}")
        return f"FID {self.distance:.3f} (N={self.num_samples}); KID {kid}; IS {is_}"


class InceptionFID:
    """``InceptionFID(stats_path)(samples)``: samples (N, C, H, W) in [-1, 1], C = 1 or 3.

    The statistics file's dimension is checked against the network's when this is built, before any
    sample is scored.
    """

    name = "FID"

    def __init__(self, stats_path: str | Path, weights: str | Path | InceptionFeatures | None = None, *,
                 device: str | torch.device = "cpu", batch_size: int = 50, progress: bool = False):
        self.extractor = (weights if isinstance(weights, InceptionFeatures)
                          else InceptionFeatures(weights, device=device, batch_size=batch_size))
        self.reference = load_stats(stats_path, dim=self.extractor.dim)
        self.progress = progress

    def check_model(self, model: torch.nn.Module, num_samples: int) -> None:
        """Raise before any work when ``model``'s samples cannot be scored."""
        if model.in_channels not in (1, 3):
            raise UsageError(f"FID scores 1- or 3-channel images, the model makes {model.in_channels} channels")
        if num_samples < 2:
            raise UsageError(f"FID needs at least 2 samples, got {num_samples}")

    def __call__(self, samples: torch.Tensor) -> InceptionQuality:
        features, logits = self.extractor.from_samples(samples, progress=self.progress)
        fid = frechet_distance(*feature_statistics(features), self.reference.mu, self.reference.sigma)
        kid = (None if self.reference.features is None
               else kernel_inception_distance(features, self.reference.features)[0])
        is_ = None
        if logits is not None:
            is_ = inception_score(logits, splits=min(10, len(logits)))[0]
        return InceptionQuality(self.name, len(features), fid, kid, is_)
