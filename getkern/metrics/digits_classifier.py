"""A small CNN classifier on scikit-learn's 8x8 digits, whose penultimate layer is the feature space
of the "digits-classifier Frechet distance" (the embedded default's quality metric; see digits.py).

The weights ship as getkern/assets/digits_classifier.safetensors; this module also trains them,
deterministically for a given seed on a given machine and thread count:

    python -m getkern.metrics.digits_classifier --out getkern/assets/digits_classifier.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from getkern.checkpoint import CheckpointError, atomic_write, load_state_dict_checked

# The data set and its split belong to the teacher's module (the teacher trains on the same split).
from getkern.teacher.digits import HELDOUT_SIZE, SPLIT_SEED, digits_split

ASSET_PATH = Path(__file__).resolve().parent.parent / "assets" / "digits_classifier.safetensors"
FEATURE_DIM = 64


class DigitsCNN(nn.Module):
    """(B, 1, 8, 8) in [-1, 1] -> logits (B, 10); ``features`` gives the (B, 64) penultimate layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 2 * 2, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)  # (B, 32, 4, 4)
        x = F.max_pool2d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2)  # (B, 64, 2, 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def accuracy(model: DigitsCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return float((model(images).argmax(1) == labels).float().mean())


def train_digits_classifier(
    *, seed: int = 0, epochs: int = 30, batch_size: int = 64, lr: float = 2e-3, progress: bool = False
) -> tuple[DigitsCNN, float]:
    """Train on the train split (Adam, cosine schedule, one-pixel random shifts); returns
    (model in eval mode, held-out accuracy)."""
    tr_x, tr_y, ho_x, ho_y = digits_split()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(tr_x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(tr_x), generator=gen)
        for i in range(0, len(tr_x), batch_size):
            idx = order[i : i + batch_size]
            x = _random_shift(tr_x[idx], gen)
            loss = F.cross_entropy(model(x), tr_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if progress:
            print(
                f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, "
                f"held-out accuracy {accuracy(model, ho_x, ho_y):.4f}"
            )
    return model.eval(), accuracy(model, ho_x, ho_y)


def _random_shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to one pixel (background -1 fills in): cheap augmentation."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2, x.shape[0]), generator=gen)
    rows = (dy[:, None] + torch.arange(8))[:, None, :, None].expand(-1, 1, 8, 10)
    cols = (dx[:, None] + torch.arange(8))[:, None, None, :].expand(-1, 1, 8, 8)
    return padded.gather(2, rows).gather(3, cols)


def save_digits_classifier(model: DigitsCNN, path: Path, metadata: dict) -> None:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    atomic_write(Path(path), lambda p: save_file(state, p, metadata=meta))


def load_digits_classifier(path: str | Path | None = None) -> DigitsCNN:
    """Load the shipped classifier (or ``path``) in eval mode; its metadata is on ``model.metadata``."""
    path = Path(path) if path is not None else ASSET_PATH
    if not path.is_file():
        raise CheckpointError(
            f"digits classifier weights {path} do not exist; train them with "
            f"`python -m getkern.metrics.digits_classifier --out {path}`"
        )
    try:
        state = load_file(path)
        with safe_open(path, framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from None
    model = DigitsCNN()
    load_state_dict_checked(model, state, str(path))
    model.metadata = {k: json.loads(v) for k, v in raw.items() if k != "format"}
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="train the digits classifier behind the digits-classifier Frechet distance")
    p.add_argument("--out", type=Path, default=ASSET_PATH)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    model, acc = train_digits_classifier(seed=args.seed, epochs=args.epochs, progress=True)
    seconds = time.perf_counter() - t0
    save_digits_classifier(
        model,
        args.out,
        {
            "heldout_accuracy": round(acc, 4),
            "heldout_size": HELDOUT_SIZE,
            "split_seed": SPLIT_SEED,
            "seed": args.seed,
            "epochs": args.epochs,
            "train_seconds": round(seconds, 1),
            "torch_threads": torch.get_num_threads(),
            "feature_dim": FEATURE_DIM,
        },
    )
    print(f"held-out accuracy {acc:.4f} ({HELDOUT_SIZE} images), trained in {seconds:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
