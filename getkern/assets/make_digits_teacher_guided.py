"""Make the guidance-capable digits teacher shipped in getkern/assets/digits_teacher_guided/.

    python -m getkern.assets.make_digits_teacher_guided [--steps 4000] [--out getkern/assets/digits_teacher_guided]

Classifier-free guidance needs D(x, sigma, none), which the shipped teacher (no null class) cannot give.
Rather than train from scratch (25 CPU-minutes), this starts from the shipped teacher, adds a null-class
embedding row initialised to the mean of the ten class rows, and fine-tunes everything with label
dropout: each label becomes the null class with probability ``--label-dropout``. Deterministic given
the seed on one machine; the shipped file is the reference (stored in float16).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from getkern.teacher import SHIPPED_DIGITS_TEACHER
from getkern.teacher.digits import DigitsMLP, load_teacher_dir, save_teacher, train_digits_teacher
from getkern.teacher.edm import EDMPrecond

DEFAULT_OUT = Path(__file__).parent / "digits_teacher_guided"


def with_null_class(denoiser: EDMPrecond) -> EDMPrecond:
    """A copy of a class-conditional digits denoiser with an extra null-class row (mean of the class rows)."""
    net = denoiser.net
    if net.null_class or not net.num_classes:
        raise ValueError("expected a class-conditional digits teacher without a null class")
    config = {k: v for k, v in net.config.items()}
    new = DigitsMLP(**config, null_class=True)
    state = net.state_dict()
    table = state["class_emb.weight"]
    state["class_emb.weight"] = torch.cat([table, table.mean(0, keepdim=True)])
    new.load_state_dict(state)
    return EDMPrecond(new, sigma_data=denoiser.sigma_data)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--label-dropout", type=float, default=0.15)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--base", type=Path, default=SHIPPED_DIGITS_TEACHER, help="teacher to start from")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    base, _ = load_teacher_dir(args.base)
    denoiser, info = train_digits_teacher(
        steps=args.steps,
        lr=args.lr,
        ema_decay=args.ema_decay,
        seed=args.seed,
        label_dropout=args.label_dropout,
        init=with_null_class(base),
    )
    info["init"] = f"{args.base.name} + null-class row (mean of the class rows)"
    save_teacher(denoiser, args.out, info, storage_dtype=torch.float16)
    print(f"wrote {args.out}: {info}")


if __name__ == "__main__":
    main()
