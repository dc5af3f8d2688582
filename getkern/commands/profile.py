"""``getkern profile``: quality, residual, time and memory of a GET per (solver, iterations) setting,
as a terminal table, profile.csv, profile.json and profile.png (see getkern/profiling/profiler.py).

    getkern profile --checkpoint runs/get --out runs/profile          # a trained GET (run folder)
    getkern profile --iters 1 2 4 --samples 200                       # a random GET-T/2 on digits
"""

from __future__ import annotations

from pathlib import Path

from getkern.commands._common import (
    add_backend,
    add_checkpoint,
    add_device,
    add_out,
    add_progress,
    check_out_dir,
    command_parser,
    int_range,
    nonnegative_float,
    positive_int,
    resolve_device,
    seed,
)
from getkern.commands.fid_stats import add_fid_options
from getkern.errors import UsageError

SOLVERS = ("fixed_point", "anderson")  # = getkern.deq.SOLVERS (torch-free copy; tests/test_cli.py)


def add_parser(sub) -> None:
    p = command_parser(sub, "profile", __doc__, help="solver iterations vs quality, time and memory for a GET")
    add_checkpoint(
        p,
        "a model: save_pretrained folder, training run folder, training .pt, or the reference's "
        ".pth; omitted: a randomly initialised GET (see --random)",
        required=False,
    )
    p.add_argument(
        "--random",
        default="GET-T/2",
        metavar="NAME",
        help="model size of the randomly initialised GET used without --checkpoint",
    )
    p.add_argument("--input-size", type=positive_int, default=8, help="random GET: image size (8: digits)")
    p.add_argument("--in-channels", type=positive_int, default=1, help="random GET: channels (1: digits)")
    p.add_argument("--iters", type=positive_int, nargs="+", default=[1, 2, 3, 4, 6, 8], help="solver iteration counts")
    p.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS), help="solvers to compare")
    p.add_argument("--samples", type=int_range(2), default=600, help="images per setting (digits metric: at most 600)")
    p.add_argument("--batch-size", type=positive_int, default=200, help="images per sampling batch")
    p.add_argument("--seed", type=seed, default=0, help="seed of the noise, labels and z0 shared by all settings")
    p.add_argument(
        "--tol",
        type=nonnegative_float,
        default=1e-3,
        help="solver early-exit tolerance on the absolute residual (the reference's); 0: none",
    )
    p.add_argument(
        "--metric",
        choices=("auto", "digits", "fid"),
        default="auto",
        help="auto: the digits-classifier Frechet distance for 1x8x8 models, else FID (needs --ref-stats)",
    )
    p.add_argument(
        "--ref-stats",
        type=Path,
        help="FID reference statistics .npz (mu, sigma[, features]), made under the same --fid-protocol",
    )
    add_fid_options(p)
    add_device(p)
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    add_backend(p)
    p.add_argument(
        "--solver-backend",
        choices=("auto", "torch", "triton", "cpp"),
        default="auto",
        help="solver loop: auto picks the fastest that runs here",
    )
    p.add_argument(
        "--quality-tolerance",
        type=nonnegative_float,
        default=0.05,
        help="a setting reaches the reference quality when its distance is within this fraction",
    )
    add_out(p, "folder for profile.csv, profile.json and profile.png", default="profile_out")
    add_progress(p)
    p.set_defaults(func=run)


def load_model(args):
    """The GET to profile and a one-line description of where it came from (any checkpoint kind
    getkern.load reads; a random GET without --checkpoint)."""
    import torch  # here and below: torch only when the command runs, never for --help

    from getkern import GET
    from getkern.loading import load_with_origin

    path = args.checkpoint
    if path is None:
        torch.manual_seed(args.seed)
        model = GET.from_config(args.random, input_size=args.input_size, in_channels=args.in_channels)
        return model, f"{args.random} randomly initialised ({args.in_channels}x{args.input_size}x{args.input_size})"
    model, origin = load_with_origin(path)
    if not isinstance(model, GET):
        raise UsageError(
            f"--checkpoint {path}: holds a {type(model).__name__}; getkern profile profiles the "
            "solver iterations of a GET"
        )
    return model, origin


def build_metric(args, model):
    is_digits = (model.in_channels, model.input_size, model.input_size) == (1, 8, 8)
    kind = args.metric if args.metric != "auto" else ("digits" if is_digits else "fid")
    if kind == "digits":
        from getkern.metrics.digits import default_digits_metric

        return default_digits_metric()
    if args.ref_stats is None:
        raise UsageError(
            "FID needs reference statistics: pass --ref-stats FILE.npz (make one with "
            "`getkern fid-stats`), or use a 1x8x8 digits model for the digits metric"
        )
    from getkern.metrics.fid import InceptionFID

    return InceptionFID(args.ref_stats, args.inception_weights, protocol=args.fid_protocol, device=args.device)


def run(args) -> int:
    import torch

    from getkern.profiling import check_settings, profile_model

    # Everything that can be wrong is checked before any sampling starts.
    check_out_dir(args.out)
    args.device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    check_settings(args.iters, args.solvers, args.samples, args.batch_size)
    model, origin = load_model(args)
    model = model.to(args.device)
    model.set_backend(args.backend)
    model.solver_backend = args.solver_backend
    metric = build_metric(args, model)
    metric.check_model(model, args.samples)
    print(
        f"profiling {origin} on {args.device} ({torch.get_num_threads()} CPU threads), {args.samples} samples "
        f"per setting, metric: {metric.name}"
    )
    report = profile_model(
        model,
        metric,
        iters=args.iters,
        solvers=args.solvers,
        num_samples=args.samples,
        batch_size=args.batch_size,
        seed=args.seed,
        tol=args.tol or None,
        quality_tolerance=args.quality_tolerance,
        progress=not args.no_progress,
        context={"model": origin, "title": f"{origin}, N={args.samples}, {args.device}"},
    )
    print(report.format_table())
    print(report.answer())
    for path in report.write(args.out).values():
        print(f"wrote {path}")
    return 0
