"""``getkern demo``: the main job. Distills the shipped digits teacher into a small GET on CPU, offline,
and writes sample grids (teacher vs GET), a metrics table and plot, a profile and summary.json.
A second run reuses the cached pairs and GET (under <out>/cache). See docs/pipeline.md.

    getkern demo                                  # minutes on a laptop CPU; a rerun reuses the cache
    getkern demo --out runs/demo-l1 --regression-only
"""

from __future__ import annotations

import time

from getkern.apps.demo_config import ADVERSARIAL, REGRESSION_ONLY, DemoConfig
from getkern.commands._common import add_out, add_progress, check_out_dir, command_parser, positive_int


def add_parser(sub) -> None:
    d = DemoConfig()
    p = command_parser(sub, "demo", __doc__, help="run the main job on the embedded default (digits)")
    add_out(p, "output folder (the cache of pairs and models is <out>/cache)", default=d.out)
    p.add_argument(
        "--train-teacher",
        action="store_true",
        help="train the digits teacher instead of loading the shipped one (cached)",
    )
    p.add_argument("--num-pairs", type=positive_int, default=d.num_pairs, help="teacher pairs to distill")
    p.add_argument("--max-steps", type=positive_int, default=d.max_steps, help="GET training steps")
    p.add_argument(
        "--regression-only",
        action="store_true",
        help="GET's L1 recipe alone, without the default's small adversarial term (docs/objectives.md)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the hand-over to `getkern profile`")
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from getkern.apps.demo import run_demo  # torch: not imported for --help

    t0 = time.perf_counter()
    check_out_dir(args.out)
    cfg = DemoConfig(
        out=str(args.out),
        teacher="train" if args.train_teacher else "digits",
        num_pairs=args.num_pairs,
        max_steps=args.max_steps,
        profile=not args.no_profile,
        progress=not args.no_progress,
        train_options=dict(REGRESSION_ONLY if args.regression_only else ADVERSARIAL),
    )
    s = run_demo(cfg)
    print(f"\n{s['metric']} at N={s['num_samples']} (floor {s['floor']:.2f}, ceiling {s['ceiling']:.2f}):")
    t, g = s["teacher"], s["get"]
    print(
        f"  EDM teacher, {t['network_evaluations']} evaluations ({t['ms_per_image']:.2f} ms/image):  {t['frechet']:.2f}"
    )
    print(
        f"  GET, 1 evaluation = {g['iterations']} iterations ({g['ms_per_image']:.2f} ms/image):  {g['frechet']:.2f}"
        f"  ({'within' if s['get_within_2x_of_teacher'] else 'NOT within'} 2x of the teacher)"
    )
    print(
        "  (ms/image: sampling time on this machine; one GET evaluation is several solver iterations, "
        "see `getkern study`)"
    )
    print(
        f"outputs in {args.out}/ (summary.json, metrics.md, metrics.png, samples_teacher_vs_get.png); "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return 0
