"""Reference statistics files: .npz with ``mu`` (D,) and ``sigma`` (D, D), the format pytorch-fid and
pytorch-gan-metrics publish (e.g. CIFAR-10 test statistics). getkern may add ``features`` (N, D)
so that KID can be computed too, ``protocol`` (the FID protocol that made them: gan-metrics, clean or
fidelity; a 0-d string array) and ``inception_weights`` (the weights file's name and sha256 prefix);
readers that only know mu/sigma ignore them. Published files carry no protocol (``protocol`` None)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from getkern.checkpoint import CheckpointError, atomic_write
from getkern.errors import UsageError


@dataclass(frozen=True)
class FeatureStats:
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64
    features: np.ndarray | None = None  # (N, D) float64, when stored
    protocol: str | None = None  # the FID protocol that made them; None: not recorded
    weights: str | None = None  # the Inception weights that made them; None: not recorded

    @property
    def dim(self) -> int:
        return self.mu.shape[0]


def save_stats(
    path: str | Path,
    mu: np.ndarray,
    sigma: np.ndarray,
    features: np.ndarray | None = None,
    *,
    protocol: str | None = None,
    weights: str | None = None,
) -> None:
    """Write ``mu``, ``sigma`` (and optionally ``features``, ``protocol``, ``weights``) to an .npz, atomically."""
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    _check(mu, sigma, None if features is None else np.asarray(features), str(path))
    arrays = {"mu": mu, "sigma": sigma}
    if features is not None:
        arrays["features"] = np.asarray(features, np.float64)
    for key, text in (("protocol", protocol), ("inception_weights", weights)):
        if text is not None:
            arrays[key] = np.array(str(text))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
            np.savez(fh, **arrays)

    atomic_write(Path(path), write)


def load_stats(path: str | Path, dim: int | None = None) -> FeatureStats:
    """Read an .npz with ``mu``/``sigma``; ``dim``: the feature dimension the caller's extractor has."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"statistics file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"mu", "sigma"} - set(data.files)
            if missing:
                raise CheckpointError(
                    f"{path} is not a statistics file: missing {sorted(missing)} (found {sorted(data.files)})"
                )
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
            features = data["features"].astype(np.float64) if "features" in data.files else None
            text = {
                key: (
                    str(data[key])
                    if key in data.files and data[key].dtype.kind == "U" and data[key].ndim == 0
                    else None
                )
                for key in ("protocol", "inception_weights")
            }
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, BadZipFile, EOFError, ...: the file does not parse
        raise CheckpointError(f"{path} is not a readable .npz statistics file: {e}") from None
    _check(mu, sigma, features, str(path))
    if dim is not None and mu.shape[0] != dim:
        raise UsageError(
            f"{path} holds {mu.shape[0]}-d statistics but the feature extractor gives "
            f"{dim}-d features (wrong statistics file for this extractor?)"
        )
    return FeatureStats(mu, sigma, features, text["protocol"], text["inception_weights"])


def _check(mu: np.ndarray, sigma: np.ndarray, features: np.ndarray | None, where: str) -> None:
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise CheckpointError(f"{where}: mu must be (D,) and sigma (D, D), got {mu.shape} and {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise CheckpointError(f"{where}: mu or sigma contains NaN or Inf")
    if features is not None and (features.ndim != 2 or features.shape[1] != mu.shape[0]):
        raise CheckpointError(f"{where}: features must be (N, {mu.shape[0]}), got {features.shape}")
