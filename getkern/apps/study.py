"""GET vs larger ViTs, and the GET's gradient modes, at equal budgets on the embedded default.

    pairs (the demo's) -> calibration (s/step, FLOPs/step per model) -> plan.json (max_steps per run)
    -> one Trainer run per (model, recipe, budget, seed), FD at milestones -> sampling-time sweep
    -> table.md, results.json, fd_vs_time.png, fd_vs_flops.png, pareto.png

Every run is a training run in its own folder ``<out>/runs/<name>`` resumed by the Trainer, and its
length is a step count fixed once in ``plan.json`` from a short calibration (equal wall time: the wall
budget times each model's calibrated steps per second; equal FLOPs: the GET's FLOPs in that budget over
each model's FLOPs per step, counted with FlopCounterMode on one training step, custom ops included), so
a killed study resumes where it stopped and reproduces the uninterrupted one. The FD (digits-classifier
Frechet distance, with its floor and ceiling) of each run's EMA weights is recorded at ``milestones``
points of its run (``<run>/study_eval.json``, written before the checkpoint it belongs to), for the GET
at its best iteration count, for a ViT at its one network pass.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from getkern import GET, UsageError, sample
from getkern.apps.demo import EVAL_FIRST_SEED, cache_key, train_config
from getkern.apps.demo_config import ADVERSARIAL, REGRESSION_ONLY, DemoConfig
from getkern.apps.study_config import StudyConfig
from getkern.checkpoint import atomic_write
from getkern.data import seed_inputs, write_pairs
from getkern.distill import Trainer, load_ema_model
from getkern.metrics import DigitsFrechet
from getkern.profiling import count_flops
from getkern.sampling import sample_get
from getkern.teacher import load_teacher, network_evaluations

RECIPE_OPTIONS = {"adversarial": ADVERSARIAL, "regression": REGRESSION_ONLY}
PLAN = "plan.json"
EVAL = "study_eval.json"
PLAN_FORMAT = "getkern-study-1"
CALIBRATION_WARMUP = 3


# ---------------------------------------------------------------- the grid


@dataclasses.dataclass(frozen=True)
class Arm:
    """One trained configuration (model, recipe, gradient mode); runs add a budget and a seed."""

    model: str  # "GET" or a ViT label
    recipe: str
    grad: str = "unrolled"

    @property
    def key(self) -> str:
        return f"{self.model}-{self.recipe}" + ("" if self.grad == "unrolled" else f"-{self.grad}")


def arms(cfg: StudyConfig) -> list[Arm]:
    out = [Arm("GET", r) for r in cfg.recipes]
    out += [Arm("GET", cfg.recipes[0], g) for g in cfg.grads if g != "unrolled"]
    out += [Arm(v, r) for v in cfg.vits for r in cfg.recipes]
    return out


def model_settings(arm: Arm, cfg: StudyConfig, demo: DemoConfig) -> dict:
    """TrainConfig.model for ``arm``: the demo's GET, or a ViT with its patching, MLP ratio and backend."""
    if arm.model == "GET":
        return dict(demo.model)
    g = demo.model
    return {
        "arch": "vit",
        "patch_size": g["patch_size"],
        "mlp_ratio": g.get("mlp_ratio", 4.0),
        "backend": g.get("backend", "auto"),
        **cfg.vits[arm.model],
    }


def run_config(arm: Arm, cfg: StudyConfig, demo: DemoConfig, pairs: Path, *, max_steps: int, seed: int, out: Path):
    """The demo's training settings with this arm's model, recipe and gradient, ``max_steps`` (cosine to 0
    there, warm-up the demo's share of it), checkpoints at the milestones and no sample grids."""
    tc = train_config(dataclasses.replace(demo, train_options=dict(RECIPE_OPTIONS[arm.recipe])), pairs)
    tc.model = model_settings(arm, cfg, demo)
    tc.grad, tc.seed, tc.max_steps = arm.grad, seed, max_steps
    tc.warmup_steps = round(max_steps * demo.warmup_steps / demo.max_steps)
    tc.checkpoint_every = max(1, max_steps // cfg.milestones)
    tc.sample_every, tc.log_every, tc.progress, tc.out = 0, 10, cfg.progress, str(out)
    tc.validate()
    return tc


def milestones(max_steps: int, count: int) -> list[int]:
    every = max(1, max_steps // count)
    return sorted({every * k for k in range(1, count) if every * k < max_steps} | {max_steps})


# ---------------------------------------------------------------- evaluation


class Evaluator:
    """FD of a model on the demo's evaluation noise and balanced labels (the same for every model)."""

    def __init__(self, cfg: StudyConfig, teacher):
        self.metric = DigitsFrechet()
        n = cfg.eval_samples
        inputs = [
            seed_inputs(s, teacher.image_shape, teacher.num_classes)
            for s in range(EVAL_FIRST_SEED, EVAL_FIRST_SEED + n)
        ]
        self.noise = torch.stack([z for z, _ in inputs])
        self.labels = torch.arange(n) % 10
        self.n = n
        self.floor, self.ceiling, self.kid_floor, self.kid_ceiling = self.metric.bounds(n)

    def images(self, model, iters: int | None = None) -> torch.Tensor:
        if isinstance(model, GET):
            return sample_get(model, self.n, seed=EVAL_FIRST_SEED, iters=iters, labels=self.labels, noise=self.noise)[0]
        return sample(model, self.labels, noise=self.noise, batch_size=500).float().cpu()

    def score(self, model, iters_list) -> dict:
        """{"fd": {setting: FD}, "kid": {...}}; settings are iteration counts ("1" pass for a ViT)."""
        fd, kid = {}, {}
        for iters in iters_list if isinstance(model, GET) else [1]:
            q = self.metric(self.images(model, iters))
            fd[str(iters)], kid[str(iters)] = q.distance, q.kid
        best = min(fd, key=fd.get)
        return {"fd": fd, "kid": kid, "best_iters": int(best), "best_fd": fd[best]}


class _StudyTrainer(Trainer):
    """A Trainer that scores its EMA weights at the milestones, before writing the checkpoint there (so a
    checkpoint never exists without its score, and a run killed in between recomputes the same one)."""

    def __init__(self, config, *, evaluate, points: list[int]):
        super().__init__(config)
        self._evaluate, self._points, self.eval_s = evaluate, set(points), 0.0

    def save_checkpoint(self) -> None:
        if self.step in self._points:
            t0 = time.perf_counter()
            self._evaluate(self)
            self.eval_s += time.perf_counter() - t0
        super().save_checkpoint()


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    atomic_write(path, lambda p: Path(p).write_text(text))


# ---------------------------------------------------------------- calibration


def calibrate(cfg: StudyConfig, demo: DemoConfig, pairs: Path, out: Path, log) -> dict:
    """{arm key: {"s_per_step", "flops_per_step", "parameters"}}: the lower quartile of ``calibration_steps``
    timed training steps (after CALIBRATION_WARMUP untimed ones), taken one step per arm in turn so a change
    in the machine's load meets every arm alike; FLOPs of one step under FlopCounterMode (custom ops
    included)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5 * (os.cpu_count() or 1):
        log(
            f"  note: load average {load:.1f} on {os.cpu_count()} cores: other work slows some steps; the "
            "calibration keeps each model's fast quarter, but an idle machine calibrates best"
        )
    trainers = {}
    for arm in arms(cfg):
        tc = run_config(arm, cfg, demo, pairs, max_steps=1000, seed=0, out=out / "calibration" / arm.key)
        tc.progress = False
        trainers[arm.key] = Trainer(tc)
    times = {k: [] for k in trainers}
    rounds = max(1, cfg.calibration_steps)
    per_round = 1
    for r in range(rounds):
        for k, t in trainers.items():
            for _ in range(CALIBRATION_WARMUP if r == 0 else 0):
                t.train_step()
            for _ in range(per_round):
                t0 = time.perf_counter()
                t.train_step()
                times[k].append(time.perf_counter() - t0)
    result = {}
    for k, t in trainers.items():
        result[k] = {
            "s_per_step": _lower_quartile(times[k]),
            "step_times_s": [round(x, 5) for x in times[k]],
            "flops_per_step": count_flops(t.train_step),
            "parameters": sum(p.numel() for p in t.model.parameters()),
        }
        log(
            f"  calibrated {k}: {result[k]['parameters']:,} parameters, {1 / result[k]['s_per_step']:.1f} steps/s, "
            f"{result[k]['flops_per_step'] / 1e9:.3f} GFLOP/step"
        )
    return result


def _lower_quartile(values: list[float]) -> float:
    """The step time this machine gives when nothing else runs: on shared cores other work only adds to a
    step's time, so the fast quarter of the samples, not their median, is the model's own cost."""
    v = sorted(values)
    return v[(len(v) - 1) // 4]


def make_plan(cfg: StudyConfig, calibration: dict) -> list[dict]:
    """Every run: name, arm, budget, seed, max_steps (and the folder a shared run reuses)."""
    runs = []
    m = cfg.milestones

    def steps(x: float) -> int:
        return max(m, int(round(x)))

    for seed in cfg.seeds:
        for arm in arms(cfg):
            cal = calibration[arm.key]
            wall = steps(cfg.wall_budget_s / cal["s_per_step"])
            base = {"model": arm.model, "recipe": arm.recipe, "grad": arm.grad, "seed": seed, "arm": arm.key}
            wall_name = f"{arm.key}-wall-s{seed}"
            runs.append({**base, "name": wall_name, "budget": "wall", "max_steps": wall, "folder": wall_name})
            if arm.grad != "unrolled":
                continue
            get = calibration[Arm("GET", arm.recipe).key]
            flops_budget = get["flops_per_step"] * steps(cfg.wall_budget_s / get["s_per_step"])
            if arm.model == "GET":  # the FLOP budget is the GET's FLOPs in the wall budget: the same run
                runs.append(
                    {
                        **base,
                        "name": f"{arm.key}-flops-s{seed}",
                        "budget": "flops",
                        "max_steps": wall,
                        "folder": wall_name,
                    }
                )
            else:
                name = f"{arm.key}-flops-s{seed}"
                runs.append(
                    {
                        **base,
                        "name": name,
                        "budget": "flops",
                        "folder": name,
                        "max_steps": steps(flops_budget / cal["flops_per_step"]),
                    }
                )
    return runs


# ---------------------------------------------------------------- one run


def train_run(
    run: dict, cfg: StudyConfig, demo: DemoConfig, pairs: Path, out: Path, evaluator: Evaluator, calibration: dict
) -> dict:
    """Train (or resume, or reuse) one run; returns its record with the FD at every milestone."""
    folder = out / "runs" / run["folder"]
    arm = Arm(run["model"], run["recipe"], run["grad"])
    points = milestones(run["max_steps"], cfg.milestones)
    evals_path = folder / EVAL
    evals = _read_json(evals_path, {})
    final = str(run["max_steps"])
    if final in evals and (folder / "checkpoint.pt").is_file():
        return {**run, "evals": evals, "reused": True, "train_wall_s": evals[final].get("train_wall_s")}

    def evaluate(trainer) -> None:
        iters = cfg.final_iters if trainer.step == run["max_steps"] else cfg.curve_iters
        rec = evaluator.score(trainer.ema, iters)
        rec["step"] = trainer.step
        rec["train_time_s"] = trainer.step * calibration[arm.key]["s_per_step"]
        rec["train_flops"] = trainer.step * calibration[arm.key]["flops_per_step"]
        if trainer.step == run["max_steps"] and started_at == 0:
            rec["train_wall_s"] = round(time.perf_counter() - t0 - trainer.eval_s, 2)
        evals[str(trainer.step)] = rec
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(evals_path, evals)

    tc = run_config(arm, cfg, demo, pairs, max_steps=run["max_steps"], seed=run["seed"], out=folder)
    trainer = _StudyTrainer(tc, evaluate=evaluate, points=points)
    t0 = time.perf_counter()
    started_at = 0 if not (folder / "checkpoint.pt").is_file() else -1
    trainer.fit()
    if final not in evals:  # the checkpoint at max_steps exists, its score was lost: score it now
        started_at = -1
        evaluate(trainer)
    return {**run, "evals": evals, "reused": False, "train_wall_s": evals[final].get("train_wall_s")}


# ---------------------------------------------------------------- sampling time


def _ms_per_image(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t0) / n


def _flops_per_image(fn, n: int) -> float:
    return count_flops(fn) / n


def sampling_sweep(
    cfg: StudyConfig, teacher, evaluator: Evaluator, results: list[dict], out: Path, demo_model: dict
) -> list[dict]:
    """ms/image (best of ``timing_repeats`` interleaved passes over every setting) and FLOPs/image of the
    teacher at each Heun step count, the GET at each iteration count and each ViT, with their FD (the
    teacher: on the evaluation noise; the students: mean over seeds at the wall budget's end)."""
    n, noise, labels = evaluator.n, evaluator.noise, evaluator.labels
    settings = []  # (row, callable)
    for steps in cfg.teacher_steps:

        def fn(s=steps):
            return teacher.sample(noise, labels, num_steps=s)

        images = fn().float()
        settings.append(
            (
                {
                    "model": "EDM teacher (Heun)",
                    "recipe": "-",
                    "setting": f"{steps} steps",
                    "network_evaluations": network_evaluations(steps),
                    "fd": evaluator.metric(images).distance,
                    "fd_sd": 0.0,
                },
                fn,
                lambda s=steps: teacher.sample(noise[:20], labels[:20], num_steps=s),
            )
        )
    for recipe in cfg.recipes:
        for model_name in ["GET"] + list(cfg.vits):
            mine = [
                r
                for r in results
                if r["model"] == model_name
                and r["recipe"] == recipe
                and r["grad"] == "unrolled"
                and r["budget"] == "wall"
            ]
            if not mine:
                continue
            model = _as_trained(load_ema_model(out / "runs" / mine[0]["folder"] / "checkpoint.pt"), demo_model)
            final = [r["evals"][str(r["max_steps"])] for r in mine]
            for iters in cfg.final_iters if model_name == "GET" else [1]:
                fds = [f["fd"][str(iters)] for f in final]
                row = {
                    "model": model_name,
                    "recipe": recipe,
                    "setting": f"{iters} iterations" if model_name == "GET" else "1 pass",
                    "network_evaluations": 1,
                    "fd": float(np.mean(fds)),
                    "fd_sd": float(np.std(fds, ddof=1)) if len(fds) > 1 else 0.0,
                }
                settings.append(
                    (
                        row,
                        lambda m=model, k=iters: evaluator.images(m, k),
                        lambda m=model, k=iters: _small(evaluator, m, k),
                    )
                )
    for _, fn, _ in settings:  # warm-up: first-call costs (allocations, kernel selection) are not timed
        fn()
    best = [math.inf] * len(settings)
    for _ in range(cfg.timing_repeats):
        for i, (_, fn, _) in enumerate(settings):
            best[i] = min(best[i], _ms_per_image(fn, n))
    rows = []
    for (row, _, small), ms in zip(settings, best):
        rows.append({**row, "ms_per_image": ms, "flops_per_image": _flops_per_image(small, 20)})
    return rows


def _as_trained(model, settings: dict):
    """A loaded model on the kernels its run trained with (runtime choices a checkpoint does not keep)."""
    model.set_backend(settings.get("backend", "auto"))
    if hasattr(model, "solver_backend"):
        model.solver_backend = settings.get("solver_backend", "auto")
    return model


def _small(evaluator: Evaluator, model, iters):
    if isinstance(model, GET):
        return sample_get(
            model, 20, seed=EVAL_FIRST_SEED, iters=iters, labels=evaluator.labels[:20], noise=evaluator.noise[:20]
        )
    return sample(model, evaluator.labels[:20], noise=evaluator.noise[:20])


# ---------------------------------------------------------------- aggregation and outputs


def _stats(values: list[float]) -> dict:
    return {
        "mean": float(np.mean(values)),
        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "n": len(values),
    }


def summarize(cfg: StudyConfig, runs: list[dict], calibration: dict, pareto: list[dict]) -> list[dict]:
    """One row per (model, recipe, gradient, budget): budget, steps, FD over seeds at the setting (the
    GET's iteration count) whose mean is best, ms/image there, and the curve (milestone means)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["recipe"], r["grad"], r["budget"]), []).append(r)
    rows = []
    for (model, recipe, grad, budget), rs in groups.items():
        cal = calibration[rs[0]["arm"]]
        finals = [r["evals"][str(r["max_steps"])] for r in rs]
        settings = list(finals[0]["fd"])
        means = {s: np.mean([f["fd"][s] for f in finals]) for s in settings}
        best = min(means, key=means.get)
        steps = rs[0]["max_steps"]
        curve = []
        for point in milestones(steps, cfg.milestones):
            recs = [r["evals"][str(point)] for r in rs if str(point) in r["evals"]]
            if not recs:
                continue
            common = [s for s in recs[0]["fd"] if all(s in x["fd"] for x in recs)]
            s_best = min(common, key=lambda s: np.mean([x["fd"][s] for x in recs]))
            vals = [x["fd"][s_best] for x in recs]
            curve.append(
                {
                    "step": point,
                    "train_time_s": point * cal["s_per_step"],
                    "train_flops": point * cal["flops_per_step"],
                    "setting": s_best,
                    **_stats(vals),
                }
            )
        timing = next(
            (
                p
                for p in pareto
                if p["model"] == model and p["recipe"] == recipe and p["setting"] in (f"{best} iterations", "1 pass")
            ),
            None,
        )
        walls = [r["train_wall_s"] for r in rs if r.get("train_wall_s") is not None]
        rows.append(
            {
                "model": model,
                "recipe": recipe,
                "grad": grad,
                "budget": budget,
                "parameters": cal["parameters"],
                "s_per_step": cal["s_per_step"],
                "flops_per_step": cal["flops_per_step"],
                "max_steps": steps,
                "train_time_s": steps * cal["s_per_step"],
                "train_flops": steps * cal["flops_per_step"],
                "measured_train_s": float(np.mean(walls)) if walls else None,
                "setting": best,
                "fd": _stats([f["fd"][best] for f in finals]),
                "ms_per_image": timing["ms_per_image"] if timing and grad == "unrolled" else None,
                "shared_with": "wall" if (model == "GET" and budget == "flops") else None,
                "seeds": [r["seed"] for r in rs],
                "curve": curve,
            }
        )
    return rows


def _fd_text(s: dict) -> str:
    spread = f" ± {s['sd']:.2f} ({s['min']:.2f}–{s['max']:.2f})" if s["n"] > 1 else ""
    return f"{s['mean']:.2f}{spread}"


def _measured(row: dict) -> str:
    return "-" if row["measured_train_s"] is None else f"{row['measured_train_s']:.1f}"


def format_table(cfg: StudyConfig, rows: list[dict], pareto: list[dict], bounds: tuple) -> str:
    floor, ceiling = bounds
    n_seeds = len(cfg.seeds)
    lines = [
        f"Digits-classifier Frechet distance (not FID), N = {cfg.eval_samples}: floor {floor:.2f} (real held-out "
        f"digits), ceiling {ceiling:.2f} (Gaussian noise). FD: mean ± sd (min–max) over {n_seeds} seed(s), EMA "
        f"weights, at the setting whose mean is best (GET: iterations; ViT: its one pass). Wall budget "
        f"{cfg.wall_budget_s:g} s of training per run; FLOP budget: the GET's FLOPs in that wall budget. "
        "train s: steps x calibrated s/step (what the budget fixes); measured s: the runs' own training time "
        "(mean over runs not resumed; scoring excluded).",
        "",
    ]
    head = (
        "| model | parameters | recipe | budget | s/step | GFLOP/step | steps | train s | measured s | train TFLOP "
        "| FD | GET iters | ms/image |"
    )
    lines += ["## GET vs ViTs", "", head, "|" + "---|" * 13]
    main = [r for r in rows if r["grad"] == "unrolled"]
    order = {m: i for i, m in enumerate(["GET"] + list(cfg.vits))}
    main.sort(key=lambda r: (cfg.recipes.index(r["recipe"]), r["budget"] != "wall", order[r["model"]]))
    for r in main:
        budget = r["budget"] + (" (= wall run)" if r["shared_with"] else "")
        ms = f"{r['ms_per_image']:.3f}" if r["ms_per_image"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['recipe']} | {budget} | {r['s_per_step']:.4f} | "
            f"{r['flops_per_step'] / 1e9:.3f} | {r['max_steps']} | {r['train_time_s']:.1f} | "
            f"{_measured(r)} | {r['train_flops'] / 1e12:.3f} | {_fd_text(r['fd'])} | "
            f"{r['setting'] if r['model'] == 'GET' else '-'} | {ms} |"
        )
    grads = [r for r in rows if r["model"] == "GET" and r["recipe"] == cfg.recipes[0] and r["budget"] == "wall"]
    if len(grads) > 1:
        lines += [
            "",
            f"## GET gradient modes ({cfg.recipes[0]} recipe, equal wall time)",
            "",
            "| gradient | s/step | GFLOP/step | steps | train s | measured s | FD | GET iters |",
            "|" + "---|" * 8,
        ]
        grads.sort(key=lambda r: cfg.grads.index(r["grad"]) if r["grad"] in cfg.grads else -1)
        for r in grads:
            lines.append(
                f"| {r['grad']} | {r['s_per_step']:.4f} | {r['flops_per_step'] / 1e9:.3f} | "
                f"{r['max_steps']} | {r['train_time_s']:.1f} | {_measured(r)} | {_fd_text(r['fd'])} | "
                f"{r['setting']} |"
            )
    lines += [
        "",
        "## Quality against sampling time (wall-budget runs; teacher on the same noise)",
        "",
        "| model | recipe | setting | network evaluations | FD | ms/image | MFLOP/image |",
        "|" + "---|" * 7,
    ]
    for p in pareto:
        fd = f"{p['fd']:.2f}" + (f" ± {p['fd_sd']:.2f}" if p["fd_sd"] else "")
        lines.append(
            f"| {p['model']} | {p['recipe']} | {p['setting']} | {p['network_evaluations']} | {fd} | "
            f"{p['ms_per_image']:.3f} | {p['flops_per_image'] / 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve_plot(
    path: Path, cfg: StudyConfig, rows: list[dict], bounds: tuple, *, x: str, budget: str, with_grads: bool
) -> None:
    plt = _plt()
    recipes = list(cfg.recipes)
    grads = [r for r in rows if r["model"] == "GET" and r["recipe"] == recipes[0] and r["budget"] == "wall"]
    panels = len(recipes) + (1 if with_grads and len(grads) > 1 else 0)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    scale, label = (1.0, "training time (s, calibrated)") if x == "train_time_s" else (1e-12, "training TFLOPs")

    def line(ax, r, name, style, color=None):
        c = r["curve"]
        xs = [p[x] * scale for p in c]
        (drawn,) = ax.plot(xs, [p["mean"] for p in c], style, label=name, color=color)
        if len(cfg.seeds) > 1:
            ax.fill_between(xs, [p["min"] for p in c], [p["max"] for p in c], alpha=0.15, color=drawn.get_color())

    for ax, recipe in zip(axes[0], recipes):
        for r in rows:
            if r["recipe"] == recipe and r["budget"] == budget and r["grad"] == "unrolled":
                name = f"{r['model']} ({r['parameters'] / 1e3:.0f}k parameters)"
                line(ax, r, name, "*-" if r["model"] == "GET" else "o-", _color(cfg, r["model"]))
        ax.set_title(f"{recipe} recipe, equal {'wall time' if budget == 'wall' else 'training FLOPs'}")
    if panels > len(recipes):
        ax = axes[0][-1]
        for r in grads:
            line(ax, r, f"GET, {r['grad']} gradient", "s-")
        ax.set_title(f"GET gradient modes ({recipes[0]}, equal wall time)")
    floor, ceiling = bounds
    for ax in axes[0]:
        ax.axhline(floor, color="g", ls="--", label="floor (real held-out)")
        ax.axhline(ceiling, color="k", ls=":", label="ceiling (noise)")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("digits-classifier Frechet distance")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"getkern study{' --quick' if cfg.quick else ''}: FD (mean over {len(cfg.seeds)} seed(s), "
        f"best GET iterations) during each run, N = {cfg.eval_samples}"
    )
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def _color(cfg: StudyConfig, model: str) -> str:
    return "r" if model == "GET" else f"C{list(cfg.vits).index(model)}"


def _span(values) -> str:
    return f"{min(values)}..{max(values)}"


def _pareto_plot(path: Path, cfg: StudyConfig, pareto: list[dict], bounds: tuple) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    t = [p for p in pareto if p["model"].startswith("EDM")]
    ax.plot(
        [p["ms_per_image"] for p in t],
        [p["fd"] for p in t],
        "ko-",
        label=f"EDM teacher, Heun {_span(cfg.teacher_steps)} steps",
    )
    for p in t:
        ax.annotate(
            p["setting"].split()[0], (p["ms_per_image"], p["fd"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    for i, recipe in enumerate(cfg.recipes):
        g = [p for p in pareto if p["model"] == "GET" and p["recipe"] == recipe]
        if g:
            ax.plot(
                [p["ms_per_image"] for p in g],
                [p["fd"] for p in g],
                "-" if i == 0 else "--",
                marker="s",
                color=_color(cfg, "GET"),
                label=f"GET ({recipe}), {_span(cfg.final_iters)} iterations",
            )
            for p in g:
                ax.annotate(
                    p["setting"].split()[0],
                    (p["ms_per_image"], p["fd"]),
                    fontsize=7,
                    color="r",
                    xytext=(3, -9),
                    textcoords="offset points",
                )
        for v in cfg.vits:
            for p in pareto:
                if p["model"] == v and p["recipe"] == recipe:
                    ax.plot(
                        [p["ms_per_image"]],
                        [p["fd"]],
                        "o" if i == 0 else "^",
                        color=_color(cfg, v),
                        markersize=8,
                        label=f"{v} ({recipe}), 1 pass",
                    )
    floor, ceiling = bounds
    ax.axhline(floor, color="g", ls="--", label="floor (real held-out)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sampling time, ms/image (this machine)")
    ax.set_ylabel("digits-classifier Frechet distance")
    ax.set_title(f"quality at equal sampling time (students: equal wall budget {cfg.wall_budget_s:g} s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------- the whole study


def run_study(cfg: StudyConfig, log=None) -> dict:
    """Run (or resume, or re-report) the study; returns the results also written to ``<out>/results.json``.
    ``log``: where progress lines go (default: printed, flushed)."""
    log = log or (lambda message: print(message, flush=True))
    threads = torch.get_num_threads()
    try:
        return _run_study(cfg, log)
    finally:
        torch.set_num_threads(threads)


def _run_study(cfg: StudyConfig, log) -> dict:
    out = Path(cfg.out)
    cache = Path(cfg.cache) if cfg.cache else out / "cache"
    demo = DemoConfig(**{**cfg.demo, "num_pairs": cfg.num_pairs, "progress": cfg.progress})
    if not cfg.seeds or not cfg.recipes:
        raise UsageError("a study needs at least one seed and one recipe")
    unknown = sorted(set(cfg.recipes) - set(RECIPE_OPTIONS))
    if unknown:
        raise UsageError(f"recipes {unknown}: unknown (known: {sorted(RECIPE_OPTIONS)})")
    if not cfg.wall_budget_s > 0:
        raise UsageError(f"wall_budget_s must be > 0, got {cfg.wall_budget_s}")
    if not (isinstance(cfg.threads, int) and cfg.threads >= 0):
        raise UsageError(f"threads must be an integer >= 0 (0: torch's default), got {cfg.threads!r}")
    t_all, timings = time.perf_counter(), {}

    # 1. the demo's teacher and pairs (same cache layout: --cache runs/demo/cache reuses the demo's)
    t0 = time.perf_counter()
    teacher = load_teacher(demo.teacher)
    pairs = cache / f"pairs-{cache_key([teacher.meta, demo.num_pairs, demo.heun_steps])}"
    write_pairs(
        teacher, pairs, num_pairs=demo.num_pairs, shard_size=5000, num_steps=demo.heun_steps, progress=cfg.progress
    )
    timings["pairs_s"] = time.perf_counter() - t0

    # 2. calibration, once per study folder: plan.json fixes every run's steps
    t0 = time.perf_counter()
    plan_path = out / PLAN
    key = json.loads(
        json.dumps({"study": cfg.key_fields(), "demo": dataclasses.asdict(demo) | {"progress": None, "out": None}})
    )
    plan = _read_json(plan_path, None)
    if plan is not None:
        if plan.get("format") != PLAN_FORMAT or plan.get("key") != key:
            old = plan.get("key", {})
            diff = sorted(
                k
                for part in ("study", "demo")
                for k in set(old.get(part, {})) | set(key[part])
                if old.get(part, {}).get(k) != key[part].get(k)
            )
            raise UsageError(
                f"{out} holds a study with other settings ({', '.join(diff) or 'format'}): resume it with "
                "its settings or use another --out"
            )
        torch.set_num_threads(plan.get("threads", torch.get_num_threads()))  # as calibrated (and run)
        log(f"reusing the calibration in {plan_path} ({torch.get_num_threads()} torch threads)")
    else:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        log(
            f"calibrating steps/s and FLOPs/step of every model (short, interleaved; "
            f"{torch.get_num_threads()} torch threads)"
        )
        calibration = calibrate(cfg, demo, pairs, out, log)
        plan = {
            "format": PLAN_FORMAT,
            "key": key,
            "calibration": calibration,
            "threads": torch.get_num_threads(),
            "runs": make_plan(cfg, calibration),
            "machine": machine(),
        }
        out.mkdir(parents=True, exist_ok=True)
        _write_json(plan_path, plan)
    calibration = plan["calibration"]
    timings["calibration_s"] = time.perf_counter() - t0

    # 3. the runs, seed by seed (a partial study has every model at the first seeds)
    t0 = time.perf_counter()
    evaluator = Evaluator(cfg, teacher)
    results, done = [], {}
    for i, run in enumerate(plan["runs"]):
        if run["folder"] in done and run["folder"] != run["name"]:
            rec = {
                **run,
                "evals": done[run["folder"]]["evals"],
                "reused": done[run["folder"]]["reused"],
                "train_wall_s": done[run["folder"]]["train_wall_s"],
                "shared": True,
            }
        else:
            t1 = time.perf_counter()
            rec = train_run(run, cfg, demo, pairs, out, evaluator, calibration)
            final = rec["evals"][str(run["max_steps"])]
            log(
                f"[{i + 1}/{len(plan['runs'])}] {run['name']}: {run['max_steps']} steps, FD {final['best_fd']:.2f}"
                + (f" ({final['best_iters']} iterations)" if run["model"] == "GET" else "")
                + (" (reused)" if rec["reused"] else f", {time.perf_counter() - t1:.0f} s")
            )
        done[run["folder"]] = rec
        results.append(rec)
    timings["runs_s"] = time.perf_counter() - t0

    # 4. quality against sampling time
    t0 = time.perf_counter()
    pareto = sampling_sweep(cfg, teacher, evaluator, results, out, demo.model)
    timings["sampling_s"] = time.perf_counter() - t0

    # 5. outputs
    rows = summarize(cfg, results, calibration, pareto)
    bounds = (evaluator.floor, evaluator.ceiling)
    table = format_table(cfg, rows, pareto, bounds)
    atomic_write(out / "table.md", lambda p: Path(p).write_text(table))
    _curve_plot(out / "fd_vs_time.png", cfg, rows, bounds, x="train_time_s", budget="wall", with_grads=True)
    _curve_plot(out / "fd_vs_flops.png", cfg, rows, bounds, x="train_flops", budget="flops", with_grads=False)
    _pareto_plot(out / "pareto.png", cfg, pareto, bounds)
    timings["total_s"] = time.perf_counter() - t_all
    summary = {
        "metric": evaluator.metric.name,
        "num_samples": cfg.eval_samples,
        "floor": evaluator.floor,
        "ceiling": evaluator.ceiling,
        "rows": rows,
        "pareto": pareto,
        "calibration": calibration,
        "runs": [{k: v for k, v in r.items()} for r in results],
        "machine": machine(),
        "calibrated_on": plan.get("machine"),
        "config": dataclasses.asdict(cfg),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "reused_runs": sum(bool(r["reused"]) for r in results if not r.get("shared")),
        "table": table,
        "artifacts": {
            name: str(out / name)
            for name in ("table.md", "results.json", "fd_vs_time.png", "fd_vs_flops.png", "pareto.png", PLAN)
        },
    }
    _write_json(out / "results.json", summary)
    return summary
