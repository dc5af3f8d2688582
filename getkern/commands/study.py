"""``getkern study``: the paper's claim, measured on the embedded default. Trains the demo's GET and ViTs of
about 1x, 2x and 5x its parameters on the demo's pairs, with the demo's two recipes, at equal wall time
and at equal training FLOPs (3 seeds each), and the GET's unrolled, phantom and implicit gradients at equal
wall time; writes table.md, results.json, fd_vs_time.png, fd_vs_flops.png and pareto.png (FD against
sampling time, with the teacher at 2..18 Heun steps). Killed, it resumes: every run is a training run
under <out>/runs/ with its steps fixed in <out>/plan.json. See docs/results/get-vs-vit.md.

    getkern study                                  # the full grid: about 60 min on 2 CPU cores
    getkern study --quick                          # one seed, 20 s per run: under 10 min
    getkern study --cache runs/demo/cache          # reuse the pairs `getkern demo` generated
"""

from __future__ import annotations

import time
from pathlib import Path

from getkern.apps.study_config import StudyConfig
from getkern.commands._common import add_progress, check_out_dir, command_parser
from getkern.errors import UsageError


def add_parser(sub) -> None:
    d, q = StudyConfig(), StudyConfig.quick_variant()
    p = command_parser(sub, "study", __doc__, help="GET vs larger ViTs and the gradient modes at equal budgets")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"study folder (default {d.out}, with --quick {q.out}); a rerun resumes it",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"the short variant: {len(q.seeds)} seed, "
        f"{q.wall_budget_s:g} s "
        f"per run, {q.eval_samples} evaluation samples, {q.num_pairs} pairs",
    )
    p.add_argument(
        "--cache",
        default="",
        metavar="PATH",
        help="where the teacher pairs are cached (the demo's layout; default <out>/cache)",
    )
    p.add_argument(
        "--wall-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"training seconds per run at equal wall time (default {d.wall_budget_s:g}, --quick {q.wall_budget_s:g})",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help=f"seeds per run (default {len(d.seeds)}, --quick {len(q.seeds)})",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="torch threads (default 0: torch's own choice); on "
        "cores other work shares, 1 avoids OpenMP waiting for a busy core. Fixed at calibration: a "
        "resumed study uses the same",
    )
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    t0 = time.perf_counter()
    overrides = {"progress": not args.no_progress}
    if args.out is not None:
        overrides["out"] = str(args.out)
    if args.cache:
        overrides["cache"] = args.cache
    if args.wall_budget is not None:
        if not args.wall_budget > 0:
            raise UsageError(f"--wall-budget must be > 0, got {args.wall_budget}")
        overrides["wall_budget_s"] = args.wall_budget
    if args.seeds is not None:
        if args.seeds < 1:
            raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
        overrides["seeds"] = tuple(range(args.seeds))
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    overrides["threads"] = args.threads
    cfg = StudyConfig.quick_variant(**overrides) if args.quick else StudyConfig(**overrides)
    check_out_dir(Path(cfg.out))
    if cfg.cache:
        check_out_dir(Path(cfg.cache), "--cache")
    from getkern.apps.study import run_study  # torch: not imported for --help

    s = run_study(cfg)
    print()
    print(s["table"])
    print(
        f"outputs in {cfg.out}/ (table.md, results.json, fd_vs_time.png, fd_vs_flops.png, pareto.png); "
        f"{s['reused_runs']} of {len({r['folder'] for r in s['runs']})} training runs reused; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return 0
