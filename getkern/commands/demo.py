"""``getkern demo``: the main job. Placeholder until the distillation pipeline lands (issue #8):
samples a randomly initialised GET-T at several solver iteration counts and times it on CPU."""
from __future__ import annotations

import time

import torch


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded default")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, nargs="+", default=[1, 2, 4, 6])
    p.set_defaults(func=run)


def run(args) -> int:
    import getkern
    torch.manual_seed(0)
    model = getkern.GET.from_config("GET-T/2").eval()
    noise = torch.randn(args.batch, 3, 32, 32)
    print(f"GET-T/2 (random init), batch {args.batch}, CPU threads {torch.get_num_threads()}")
    with torch.inference_mode():
        for iters in args.iters:
            model(noise, iters=iters)  # warm-up
            t0 = time.perf_counter()
            _, info = model(noise, iters=iters, return_info=True)
            dt = time.perf_counter() - t0
            print(f"iters={iters}: {1e3 * dt / args.batch:7.2f} ms/image, "
                  f"lowest residual {info['abs_lowest'].mean():.3f}")
    return 0
