"""Guidance distillation on the embedded default (docs/guidance.md): the demo's GET recipe trained on
classifier-free-guided pairs, then scored per guidance weight against the guided teacher.

    python -m getkern.apps.guided_demo --out runs/guided [--guidance-range 0 4] [--pairs DIR]

1. pairs: ``DemoConfig().num_pairs`` pairs from the ``digits-guided`` teacher (18 Heun steps on
   D_w = (1 + w) D(x, c) - w D(x, none)), w ~ U[wmin, wmax] drawn from each pair's seed;
2. distillation: :class:`~getkern.apps.demo.DemoConfig`'s GET, batch, steps, lr schedule and EMA,
   the student conditioned on w (it gets a ``guidance_range`` from the pairs);
3. for each w of ``--eval-w``: 600 samples (the demo's evaluation seeds, balanced classes) from the guided
   teacher (35 guided evaluations) and the GET (one network evaluation): digits-classifier Frechet distance
   to real digits (with floor and ceiling), the same distance between the GET's and the teacher's samples
   at that w, and against the GET at w = 0 (does the student follow w?), the digits classifier's agreement
   with the requested class, and a grid with one row per w (left teacher, right GET, same noise).
   Cached like the demo: a second run only re-evaluates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from getkern.apps import demo, figures
from getkern.checkpoint import atomic_write
from getkern.data import PairDataset, seed_inputs, write_pairs
from getkern.distill import Trainer
from getkern.images import make_grid
from getkern.metrics import DigitsFrechet, frechet_distance_features, load_digits_classifier
from getkern.sampling import sample_get
from getkern.teacher import load_teacher, network_evaluations

EVAL_W = (0.0, 1.0, 2.0, 3.0, 4.0)


def run_guided_demo(
    out, *, guidance_range=(0.0, 4.0), pairs: str | None = None, eval_w=EVAL_W, progress: bool = True
) -> dict:
    """Generate (or reuse) guided pairs, distill a GET with the demo's recipe, score it per w; returns
    the summary also written to ``<out>/summary.json``."""
    # looked up on the demo module when called, so a caller (a toy-size test) can substitute the settings
    cfg, out = demo.DemoConfig(progress=progress), Path(out)
    teacher = load_teacher("digits-guided")
    t0 = time.perf_counter()
    if pairs is None:
        key = demo.cache_key([teacher.meta, cfg.num_pairs, cfg.heun_steps, list(guidance_range)])
        pairs = out / "cache" / f"pairs-{key}"
        write_pairs(
            teacher,
            pairs,
            num_pairs=cfg.num_pairs,
            shard_size=5000,
            num_steps=cfg.heun_steps,
            guidance_range=guidance_range,
            progress=progress,
        )
    dataset = PairDataset(pairs)
    if dataset.guidance_range is None or dataset.manifest["num_pairs"] != cfg.num_pairs:
        raise ValueError(f"{pairs}: expected {cfg.num_pairs} guided pairs (written with --guidance-range)")
    pairs_s = time.perf_counter() - t0

    train_cfg = demo.train_config(cfg, pairs)
    train_cfg.out = str(out / f"get-{demo.cache_key({**train_cfg.to_dict(), 'progress': None})}")
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = Trainer(train_cfg)
    reused = (trainer.out / "checkpoint.pt").is_file()  # then the timings below cover only the rest
    trainer.fit()
    train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    get = trainer.ema.eval()

    n = cfg.eval_samples
    seeds = range(demo.EVAL_FIRST_SEED, demo.EVAL_FIRST_SEED + n)
    latents = torch.stack([seed_inputs(s, teacher.image_shape, teacher.num_classes)[0] for s in seeds])
    labels = torch.arange(n) % 10
    metric, classifier = DigitsFrechet(), load_digits_classifier().eval()
    floor, ceiling, _, _ = metric.bounds(n)
    rows, grid_rows = [], {"teacher": [], "get": []}
    g_zero, _ = sample_get(
        get, n, seed=demo.EVAL_FIRST_SEED, iters=cfg.get_iters, labels=labels, noise=latents, guidance=0.0
    )  # the reference for "does the student follow w"
    for w in eval_w:
        t = time.perf_counter()
        t_img = teacher.sample(latents, labels, num_steps=cfg.heun_steps, guidance=w).float()
        t_ms = 1e3 * (time.perf_counter() - t) / n
        t = time.perf_counter()
        g_img, _ = sample_get(
            get, n, seed=demo.EVAL_FIRST_SEED, iters=cfg.get_iters, labels=labels, noise=latents, guidance=w
        )
        g_ms = 1e3 * (time.perf_counter() - t) / n
        for name, images, ms, evals in (
            ("teacher", t_img, t_ms, network_evaluations(cfg.heun_steps)),
            ("get", g_img, g_ms, 1),
        ):
            with torch.no_grad():
                agree = float((classifier(images.clamp(-1, 1)).argmax(1) == labels).float().mean())
            q = metric(images)
            rows.append(
                {
                    "model": name,
                    "w": w,
                    "evaluations": evals,
                    "frechet": q.distance,
                    "kid": q.kid,
                    "class_agreement": agree,
                    "ms_per_image": ms,
                }
            )
        t_feat = metric.features(t_img)
        rows[-1].update(
            fd_to_teacher=frechet_distance_features(metric.features(g_img), t_feat),
            fd_w0_to_teacher=frechet_distance_features(metric.features(g_zero), t_feat),
            mse_to_teacher=float(((g_img - t_img) ** 2).mean()),
            mse_w0_to_teacher=float(((g_zero - t_img) ** 2).mean()),
        )
        grid_rows["teacher"].append(t_img[:10])  # seeds 0..9 of the evaluation set: classes 0..9
        grid_rows["get"].append(g_img[:10])

    t_grid = make_grid(torch.cat(grid_rows["teacher"]), nrow=10, scale=4)
    g_grid = make_grid(torch.cat(grid_rows["get"]), nrow=10, scale=4)
    save_guidance_grid(
        out / "guidance_grid.png",
        t_grid,
        g_grid,
        eval_w,
        network_evaluations(cfg.heun_steps),
        cfg.get_iters,
        classes=[int(c) for c in labels[:10]],
    )
    log = [json.loads(line) for line in (trainer.out / "log.jsonl").read_text().splitlines()]
    summary = {
        "metric": metric.name,
        "num_samples": n,
        "floor": floor,
        "ceiling": ceiling,
        "guidance_range": list(dataset.guidance_range),
        "pairs": str(pairs),
        "get_run": str(trainer.out),
        "get_iters": cfg.get_iters,
        "teacher_heun_steps": cfg.heun_steps,
        "rows": rows,
        "training_steps": trainer.step,
        "final_loss": log[-1]["loss"] if log else None,
        "parameters": sum(p.numel() for p in get.parameters()),
        "timings_s": {"pairs": round(pairs_s, 1), "train_wall": round(train_wall, 1), "train_cpu": round(train_cpu, 1)},
        "get_reused": reused,
        "demo_config": dataclasses.asdict(cfg),
        "threads": torch.get_num_threads(),
    }
    atomic_write(out / "summary.json", lambda p: Path(p).write_text(json.dumps(summary, indent=2) + "\n"))
    atomic_write(out / "table.md", lambda p: Path(p).write_text(format_table(summary)))
    return summary


def save_guidance_grid(
    path, teacher_grid: np.ndarray, get_grid: np.ndarray, eval_w, teacher_evaluations: int, get_iters: int, classes
) -> None:
    """guidance_grid.png: one row per w (labelled), one column per evaluation seed (labelled by its class),
    left the guided teacher, right the GET, each titled."""
    panels = [
        (f"guided teacher ({teacher_evaluations} guided evaluations)", teacher_grid),
        (f"GET (1 evaluation, {get_iters} iterations)", get_grid),
    ]
    figures.save_labelled(
        path,
        panels,
        row_labels=[f"w = {w:g}" for w in eval_w],
        col_labels=[str(c) for c in classes],
        title="columns: class (the same noise in every row); rows: guidance weight w",
    )


def format_table(summary: dict) -> str:
    """Markdown: one row per w, teacher and GET side by side."""
    n, get_iters = summary["num_samples"], summary["get_iters"]
    evals = next(r["evaluations"] for r in summary["rows"] if r["model"] == "teacher")
    lines = [
        f"Digits-classifier Frechet distance (FD; not FID), N = {n}: floor {summary['floor']:.2f} (real held-out "
        f"digits), ceiling {summary['ceiling']:.2f} (Gaussian noise). Teacher: {evals} guided evaluations "
        f"(Heun); GET: 1 evaluation ({get_iters} iterations). \"vs teacher\": FD between the GET's and the "
        "teacher's samples at that w; pixel MSE on the same noise and labels. Class agreement: the digits "
        "classifier's prediction equals the requested class.",
        "",
        "| w | teacher FD | GET FD | GET vs teacher FD | GET at w=0 vs teacher FD | GET vs teacher MSE "
        "| GET at w=0 vs teacher MSE | class agreement teacher / GET |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in sorted({r["w"] for r in summary["rows"]}):
        t = next(r for r in summary["rows"] if r["w"] == w and r["model"] == "teacher")
        g = next(r for r in summary["rows"] if r["w"] == w and r["model"] == "get")
        lines.append(
            f"| {w:g} | {t['frechet']:.2f} | {g['frechet']:.2f} | {g['fd_to_teacher']:.2f} | "
            f"{g['fd_w0_to_teacher']:.2f} | {g['mse_to_teacher']:.4f} | {g['mse_w0_to_teacher']:.4f} | "
            f"{t['class_agreement']:.3f} / {g['class_agreement']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/guided")
    p.add_argument("--guidance-range", type=float, nargs=2, default=(0.0, 4.0), metavar=("WMIN", "WMAX"))
    p.add_argument("--pairs", default=None, help="reuse a guided pair directory (default: generate into the cache)")
    p.add_argument("--eval-w", type=float, nargs="+", default=list(EVAL_W))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    summary = run_guided_demo(
        args.out,
        guidance_range=tuple(args.guidance_range),
        pairs=args.pairs,
        eval_w=tuple(args.eval_w),
        progress=not args.no_progress,
    )
    print(format_table(summary))
    print(f"training: {summary['training_steps']} steps, {summary['timings_s']}")


if __name__ == "__main__":
    main()
