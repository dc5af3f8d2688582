"""``getkern sample``: PNG grids and arrays from a GET checkpoint (getkern's or the reference's).

    getkern sample --checkpoint runs/get/checkpoint.pt --out runs/samples --iters 1 2 6
"""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="sample image grids (PNG) and arrays (.npz) from a GET checkpoint",
                       description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True,
                   help="training checkpoint .pt, save_pretrained directory, or reference checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=100, help="images for unconditional models")
    p.add_argument("--per-class", type=int, default=10, help="columns per class row (conditional models)")
    p.add_argument("--iters", type=int, nargs="+", default=[6], help="solver iteration counts")
    p.add_argument("--solver", default="fixed_point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="auto", choices=("auto", "triton", "torch"), help="block kernels")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from getkern.checkpoint import atomic_write
    from getkern.distill.grid import save_grid
    from getkern.distill.sampling import class_rows, load_get, sample_get
    model = load_get(args.checkpoint, backend=args.backend).to(args.device)
    out = Path(args.out)
    labels = class_rows(model.num_classes, args.per_class) if model.cond else None
    num = len(labels) if model.cond else args.num
    ncol = args.per_class if model.cond else int(np.ceil(np.sqrt(num)))
    for iters in args.iters:
        images, y = sample_get(model, num, seed=args.seed, iters=iters, solver=args.solver, labels=labels)
        png = save_grid(images, out / f"samples-{args.solver}-iters{iters}.png", nrow=ncol,
                        scale=max(1, 32 // images.shape[-1]))
        arrays = {"images": images.numpy()} | ({"labels": y.numpy()} if y is not None else {})
        atomic_write(out / f"samples-{args.solver}-iters{iters}.npz", lambda p: np.savez(open(p, "wb"), **arrays))
        print(f"iters={iters}: {png}")
    return 0
