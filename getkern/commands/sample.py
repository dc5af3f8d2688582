"""``getkern sample``: PNG grids and arrays from a GET checkpoint (getkern's or the reference's).

Examples:
    getkern sample --checkpoint runs/get --out runs/samples --iters 1 2 6      # a training run folder
    getkern sample --checkpoint runs/guided/checkpoint.pt --out runs/samples --guidance 0 1 2 4
"""

from __future__ import annotations

from pathlib import Path

from getkern.commands._common import (
    add_backend,
    add_checkpoint,
    add_device,
    add_out,
    check_out_dir,
    command_parser,
    finite_float,
    int_range,
    positive_int,
    resolve_device,
    seed,
)
from getkern.errors import UsageError

SOLVERS = ("fixed_point", "anderson")  # = getkern.deq.SOLVERS (torch-free copy; tests/test_cli.py)
MAX_IMAGES = 10_000  # per grid: every image, its noise and its z0 are held at once (getkern.sample batches more)


def add_parser(sub) -> None:
    p = command_parser(sub, "sample", __doc__, help="sample image grids (PNG) and arrays (.npz) from a GET checkpoint")
    add_checkpoint(p)
    add_out(p, "folder for samples-<solver>-iters<K>[-w<W>].png and .npz")
    p.add_argument(
        "--num",
        type=int_range(1, MAX_IMAGES),
        default=100,
        help=f"images for unconditional models (at most {MAX_IMAGES:,} a grid; more: getkern.sample)",
    )
    p.add_argument(
        "--per-class", type=int_range(1, MAX_IMAGES), default=10, help="columns per class row (conditional models)"
    )
    p.add_argument("--iters", type=positive_int, nargs="+", default=[6], help="solver iteration counts (one grid each)")
    p.add_argument("--solver", choices=SOLVERS, default="fixed_point", help="the equilibrium solver")
    p.add_argument("--seed", type=seed, default=0, help="seed of the noise, labels and z0")
    add_device(p)
    add_backend(p)
    p.add_argument(
        "--guidance",
        type=finite_float,
        nargs="+",
        default=None,
        metavar="W",
        help="guidance-distilled models: guidance weights w (one grid each; within the trained range)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    # numpy and torch only when the command runs, never for --help
    import numpy as np

    from getkern.checkpoint import atomic_write
    from getkern.images import save_grid
    from getkern.loading import load
    from getkern.models import GET
    from getkern.sampling import class_rows, sample_get

    check_out_dir(args.out)
    device = resolve_device(args.device)
    model = load(args.checkpoint, backend=args.backend, device=device)
    if not isinstance(model, GET):
        raise UsageError(
            f"--checkpoint {args.checkpoint}: holds a {type(model).__name__}; getkern sample draws "
            "from a GET (sample other models with getkern.sample)"
        )
    weights = check_guidance_args(model, args.guidance)
    out = Path(args.out)
    if model.cond and model.num_classes * args.per_class > MAX_IMAGES:
        raise UsageError(
            f"--per-class {args.per_class}: {model.num_classes} classes x {args.per_class} makes "
            f"{model.num_classes * args.per_class} images, more than {MAX_IMAGES} in one grid"
        )
    labels = class_rows(model.num_classes, args.per_class) if model.cond else None
    num = len(labels) if model.cond else args.num
    ncol = args.per_class if model.cond else int(np.ceil(np.sqrt(num)))
    for iters in args.iters:
        for w in weights:
            name = f"samples-{args.solver}-iters{iters}" + (f"-w{w:g}" if w is not None else "")
            images, y = sample_get(
                model, num, seed=args.seed, iters=iters, solver=args.solver, labels=labels, guidance=w
            )
            png = save_grid(images, out / f"{name}.png", nrow=ncol, scale=max(1, 32 // images.shape[-1]))
            arrays = (
                {"images": images.numpy()}
                | ({"labels": y.numpy()} if y is not None else {})
                | ({"guidance": np.full(num, w, dtype=np.float32)} if w is not None else {})
            )
            atomic_write(out / f"{name}.npz", lambda p, a=arrays: _savez(p, a))
            print(f"iters={iters}" + (f" w={w:g}" if w is not None else "") + f": {png}")
    return 0


def _savez(path, arrays: dict) -> None:
    import numpy as np

    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to the temporary's name
        np.savez(f, **arrays)


def check_guidance_args(model, guidance: list[float] | None) -> list[float | None]:
    """The guidance weights to sample (``[None]`` for a model without guidance); UsageError naming
    --guidance when they do not fit the model."""
    rng = getattr(model, "guidance_range", None)
    if guidance is None:
        if rng is not None:
            raise UsageError(
                f"this model is guidance-distilled (w in [{rng[0]:g}, {rng[1]:g}]): pass --guidance W [W ...]"
            )
        return [None]
    if not model.cond:
        raise UsageError("--guidance needs a guidance-distilled class-conditional model; this model is unconditional")
    if rng is None:
        raise UsageError(
            "--guidance: this model was trained without guidance (its config has no guidance_range); drop --guidance"
        )
    outside = [w for w in guidance if not rng[0] <= w <= rng[1]]
    if outside:
        raise UsageError(
            f"--guidance {' '.join(f'{w:g}' for w in outside)} outside the "
            f"model's trained range [{rng[0]:g}, {rng[1]:g}]"
        )
    return list(guidance)
