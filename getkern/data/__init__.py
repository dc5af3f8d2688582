"""Noise/image pairs: the sharded writer (resumable, torchrun-sharded) and the datasets that read them."""

from getkern.data.datasets import PairDataset, ReferencePairDataset
from getkern.data.pairs import PairFileError, read_manifest, seed_inputs, write_pairs

__all__ = ["PairDataset", "PairFileError", "ReferencePairDataset", "read_manifest", "seed_inputs", "write_pairs"]
