"""Inception FID of model samples against a reference statistics file, with the Inception Score beside
it (when the network gives logits) and KID (when the file holds reference features), all under one FID
protocol (:mod:`getkern.metrics.protocols`; default gan-metrics, the GET paper's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from getkern.errors import UsageError
from getkern.metrics.frechet import frechet_distance_to_statistics
from getkern.metrics.inception import InceptionFeatures
from getkern.metrics.inception_score import inception_score
from getkern.metrics.kid import kernel_inception_distance
from getkern.metrics.protocols import FIDProtocol, get_protocol
from getkern.metrics.stats_file import load_stats


@dataclass(frozen=True)
class InceptionQuality:
    name: str
    num_samples: int
    distance: float  # FID
    kid: float | None  # None: the statistics file has no reference features
    inception_score: float | None  # None: the network gives no logits
    inception_score_std: float | None = None
    protocol: str | None = None  # the FID protocol used
    reference_protocol: str | None = None  # the statistics file's (None: not recorded, e.g. published files)

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        kid = "unavailable (no reference features)" if self.kid is None else f"{self.kid:.5f}"
        is_ = (
            "unavailable (the Inception file gives no logits)"
            if self.inception_score is None
            else f"{self.inception_score:.3f} +- {self.inception_score_std:.3f}"
        )
        ref = self.reference_protocol or "not recorded"
        return (
            f"FID {self.distance:.3f} ({self.protocol} protocol, N={self.num_samples}; reference statistics' "
            f"protocol: {ref}); IS {is_}; KID {kid}"
        )


class InceptionFID:
    """``InceptionFID(stats_path)(samples)``: samples (N, C, H, W) in [-1, 1], C = 1 or 3.

    ``weights``: an Inception weights file or an :class:`InceptionFeatures` (default: the protocol's
    local file). ``protocol``: gan-metrics (default), clean or fidelity. Statistics recorded under another
    protocol are refused; the dimension is checked against the network's. Both happen when this is
    built, before any sample is scored.
    """

    def __init__(
        self,
        stats_path: str | Path,
        weights: str | Path | InceptionFeatures | None = None,
        *,
        protocol: str | FIDProtocol | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 50,
        progress: bool = False,
    ):
        if isinstance(weights, InceptionFeatures):
            if protocol is not None and get_protocol(protocol).name != weights.protocol.name:
                raise UsageError(
                    f"protocol {get_protocol(protocol).name!r} differs from the extractor's {weights.protocol.name!r}"
                )
            self.extractor = weights
        else:
            self.extractor = InceptionFeatures(weights, protocol=protocol, device=device, batch_size=batch_size)
        self.protocol = self.extractor.protocol
        self.reference = load_stats(stats_path, dim=self.extractor.dim)
        ref = self.reference.protocol
        if ref is not None and ref != self.protocol.name:
            raise UsageError(
                f"{stats_path} holds statistics made with --fid-protocol {ref}, but this FID uses "
                f"--fid-protocol {self.protocol.name}: FIDs of different protocols are not comparable. "
                f"Use --fid-protocol {ref}, or remake the statistics with `getkern fid-stats ... "
                f"--fid-protocol {self.protocol.name}`"
            )
        self.name = f"FID ({self.protocol.name})"
        self.progress = progress

    def check_model(self, model: torch.nn.Module, num_samples: int) -> None:
        """Raise before any work when ``model``'s samples cannot be scored."""
        if model.in_channels not in (1, 3):
            raise UsageError(f"FID scores 1- or 3-channel images, the model makes {model.in_channels} channels")
        if num_samples < 2:
            raise UsageError(f"FID needs at least 2 samples, got {num_samples}")

    def __call__(self, samples: torch.Tensor) -> InceptionQuality:
        features, logits = self.extractor.from_samples(samples, progress=self.progress)
        fid = frechet_distance_to_statistics(features, self.reference.mu, self.reference.sigma)
        kid = (
            None if self.reference.features is None else kernel_inception_distance(features, self.reference.features)[0]
        )
        is_mean = is_std = None
        if logits is not None:
            is_mean, is_std = inception_score(
                logits, splits=min(10, len(logits)), shuffle_seed=self.protocol.inception_score_shuffle_seed
            )
        return InceptionQuality(
            self.name, len(features), fid, kid, is_mean, is_std, self.protocol.name, self.reference.protocol
        )
