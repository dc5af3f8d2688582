"""One rank of test_train.py's torchrun run: write the pairs of helpers.tiny_teacher() (each rank its
own shards), train on them with DDP, and on rank 0 save the losses and weights for the test to compare.

Usage: ddp_worker.py ROOT CONFIG_JSON. Run as a script, so this folder is on sys.path and ``helpers``
imports; the test passes OMP_NUM_THREADS=1, as for its own single-process run.
"""

import json
import sys
from pathlib import Path

import torch
from helpers import tiny_teacher

from getkern.data import write_pairs
from getkern.distill import TrainConfig, Trainer


def main(root: Path, config: dict) -> None:
    write_pairs(tiny_teacher(), root / "pairs", num_pairs=24, shard_size=5, num_steps=2, progress=False)
    trainer = Trainer(TrainConfig(**config))
    records = trainer.fit()
    if trainer.dist.is_main:
        torch.save({"losses": [r["loss"] for r in records], "model": trainer.model.state_dict()}, root / "ddp.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]))
