"""Train the digits teacher shipped in getkern/assets/digits_teacher/ (used by ``getkern demo``).

    python -m getkern.assets.make_digits_teacher [--steps 6000] [--out getkern/assets/digits_teacher]

Deterministic given the seed on one machine; the shipped file is the reference (stored in float16).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from getkern.teacher.digits import save_teacher, train_digits_teacher

DEFAULT_OUT = Path(__file__).parent / "digits_teacher"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    denoiser, info = train_digits_teacher(steps=args.steps, seed=args.seed)
    save_teacher(denoiser, args.out, info, storage_dtype=torch.float16)
    print(f"wrote {args.out}: {info}")


if __name__ == "__main__":
    main()
