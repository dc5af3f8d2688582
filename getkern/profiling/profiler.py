"""Profile a GET over solver settings: quality, residual, time and memory per (solver, iterations).

Answers "how many solver iterations, and which solver, buy how much quality for how much time?":
every setting samples the same noise, labels and initial state z0, so differences come from the
solver alone. The reference setting is the reference implementation's: 6 plain fixed-point iterations.

    from getkern.metrics import DigitsFrechet
    report = profile_model(model, DigitsFrechet(), iters=[1, 2, 3, 4, 6, 8], solvers=["fixed_point", "anderson"])
    print(report.format_table()); print(report.answer()); report.write("profile_out")

Warnings (``ProfileReport.warnings``, printed before the answer, in profile.json and on the plot): settings
whose quality is at or beyond the metric's noise ceiling (the samples are unusable, so their times
answer nothing), and solvers whose residual does not fall with iterations (CONVERGENCE_FACTOR).

Time: each batch is timed on its own (CUDA synchronised) after one untimed warm-up batch; seconds per
image is the median over batches of batch time / batch size.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over one batch (minus what was allocated
before); on CPU the peak total size of tensor storages created during one batch's forward and alive
at the same time (:class:`LiveTensorPeak`), which excludes weights and inputs and does not see
allocator caching or scratch memory that never becomes a tensor.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from getkern import deq
from getkern._backend import resolve_backend
from getkern.checkpoint import atomic_write
from getkern.errors import UsageError
from getkern.profiling.memory import peak_step_memory

__all__ = ["CONVERGENCE_FACTOR", "REFERENCE_SETTING", "ProfileReport", "check_settings", "profile_model"]

REFERENCE_SETTING = ("fixed_point", 6)
# A solver "does not converge" when its residual at the most iterations profiled is above this fraction of
# the residual at the fewest (falls by less than 10%) and above the early-exit tolerance: the report warns.
# (A random GET's map: 8.15 -> 8.10 from 1 to 6 iterations; a slow contraction of 0.95 per iteration: x0.70.)
CONVERGENCE_FACTOR = 0.9


@dataclass
class ProfileReport:
    """Rows, one dict per setting: solver, iters, distance, kid, residual (mean per-sample lowest absolute
    residual), nfev (mean f-evaluations), sec_per_image, images_per_sec, peak_memory_mb, kernels,
    solver_backend, plus floor, ceiling and inception_score when the metric gives them; and the run's
    context. :meth:`warnings` says when the numbers cannot answer the question (worse than noise, no
    convergence); :meth:`answer` and the plot repeat them."""

    rows: list[dict]
    metric_name: str
    context: dict = field(default_factory=dict)
    quality_tolerance: float = 0.05

    def reference_row(self) -> dict:
        return next(r for r in self.rows if (r["solver"], r["iters"]) == REFERENCE_SETTING)

    def fewest_iterations(self) -> dict[str, dict | None]:
        """Per solver: the row with the fewest iterations whose distance is at most the reference's
        times (1 + quality_tolerance), or None when no setting of that solver reaches it."""
        target = self.reference_row()["distance"] * (1 + self.quality_tolerance)
        best: dict[str, dict | None] = {}
        for row in sorted(self.rows, key=lambda r: r["iters"]):
            best.setdefault(row["solver"], None)
            if best[row["solver"]] is None and row["distance"] <= target:
                best[row["solver"]] = row
        return best

    def beyond_ceiling(self) -> list[dict]:
        """Rows whose distance is at or above the metric's noise ceiling (only metrics that give one)."""
        return [r for r in self.rows if r.get("ceiling") is not None and r["distance"] >= r["ceiling"]]

    def not_converging(self) -> dict[str, tuple[dict, dict]]:
        """Solvers whose residual does not fall with iterations: {solver: (row at the fewest, row at the
        most iterations)} when the latter's residual is above CONVERGENCE_FACTOR times the former's (and
        above the early-exit tolerance). Solvers profiled at one iteration count are not judged."""
        tol = self.context.get("tol")
        found = {}
        for solver in dict.fromkeys(r["solver"] for r in self.rows):
            rows = sorted((r for r in self.rows if r["solver"] == solver), key=lambda r: r["iters"])
            first, last = rows[0], rows[-1]
            if first["iters"] == last["iters"] or first.get("residual") is None or last.get("residual") is None:
                continue
            if tol and last["residual"] <= tol:
                continue
            if not last["residual"] <= CONVERGENCE_FACTOR * first["residual"]:  # also catches inf and NaN
                found[solver] = (first, last)
        return found

    def warnings(self) -> list[str]:
        """Why the answer may mean nothing: settings worse than noise, solvers that do not converge."""
        out = []
        beyond = self.beyond_ceiling()
        if beyond:
            ceiling = max(r["ceiling"] for r in beyond)
            best = min(r["distance"] for r in beyond)
            which = (
                "every setting"
                if len(beyond) == len(self.rows)
                else f"{len(beyond)} of {len(self.rows)} settings ("
                + ", ".join(f"{r['solver']} {r['iters']}" for r in beyond)
                + ")"
            )
            out.append(
                f"{which} scores worse than noise ({self.metric_name} {best:.1f} or more, noise ceiling "
                f"{ceiling:.1f}): the samples are unusable (an untrained or broken model?), so comparing "
                f"the times of these settings says nothing"
            )
        for solver, (first, last) in self.not_converging().items():
            out.append(
                f"{solver} does not converge: its residual does not fall with iterations ({first['residual']:.3g} "
                f"at {_iterations(first['iters'])}, {last['residual']:.3g} at {_iterations(last['iters'])}), "
                f"so more iterations cannot improve its samples"
                + (" and the 6-iteration reference is no equilibrium" if solver == REFERENCE_SETTING[0] else "")
            )
        return out

    def answer(self) -> str:
        """The user's question answered in words, after the warnings (if any)."""
        ref = self.reference_row()
        lines = [f"WARNING: {w}." for w in self.warnings()]
        lines.append(
            f"Reference: {REFERENCE_SETTING[1]} fixed-point iterations, {self.metric_name} "
            f"{ref['distance']:.3f}, {1e3 * ref['sec_per_image']:.3f} ms/image. Reaching it means a "
            f"{self.metric_name} within {100 * self.quality_tolerance:g}% of that."
        )
        beyond = {(r["solver"], r["iters"]) for r in self.beyond_ceiling()}
        stuck = self.not_converging()
        for solver, row in self.fewest_iterations().items():
            if row is None:
                tried = max(r["iters"] for r in self.rows if r["solver"] == solver)
                lines.append(f"- {solver}: does not reach the reference quality within {_iterations(tried)}.")
                continue
            saved = 1 - row["sec_per_image"] / ref["sec_per_image"]
            caveats = [
                why
                for why, hit in (
                    ("worse than noise", (solver, row["iters"]) in beyond),
                    ("the solver does not converge", solver in stuck),
                    (
                        "the reference does not converge",
                        REFERENCE_SETTING[0] in stuck and solver != REFERENCE_SETTING[0],
                    ),
                )
                if hit
            ]
            lines.append(
                f"- {solver}: {_iterations(row['iters'])} ({self.metric_name} {row['distance']:.3f}, "
                f"{1e3 * row['sec_per_image']:.3f} ms/image): "
                + (
                    f"saves {100 * saved:.0f}% of the reference's time"
                    if saved >= 0
                    else f"costs {-100 * saved:.0f}% more time than the reference"
                )
                + (f" (not meaningful: {', '.join(caveats)})." if caveats else ".")
            )
        return "\n".join(lines)

    def format_table(self) -> str:
        with_is = any(r.get("inception_score") is not None for r in self.rows)
        headers = [
            "solver",
            "iters",
            self.metric_name,
            "KID",
            *(["IS"] if with_is else []),
            "residual",
            "nfev",
            "ms/image",
            "images/s",
            "peak MB",
            "kernels",
            "solver backend",
        ]
        cells = [
            [
                r["solver"],
                str(r["iters"]),
                f"{r['distance']:.3f}",
                _fmt(r["kid"], ".4f"),
                *([_fmt(r.get("inception_score"), ".3f")] if with_is else []),
                f"{r['residual']:.3g}",
                f"{r['nfev']:.1f}",
                f"{1e3 * r['sec_per_image']:.3f}",
                f"{r['images_per_sec']:.1f}",
                f"{r['peak_memory_mb']:.1f}",
                r["kernels"],
                r["solver_backend"],
            ]
            for r in self.rows
        ]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        line = lambda cols: "  ".join(c.rjust(w) for c, w in zip(cols, widths))  # noqa: E731
        out = [line(headers), line(["-" * w for w in widths])] + [line(c) for c in cells]
        first = self.rows[0]
        if "floor" in first:
            out.append(
                f"{self.metric_name} floor (real held-out digits) {first['floor']:.3f}, ceiling "
                f"(noise) {first['ceiling']:.3f}, both at N={self.context.get('num_samples')}"
            )
        return "\n".join(out)

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write profile.csv, profile.json (rows, context, warnings, answer) and profile.png; returns the paths."""
        directory = Path(directory)
        paths = {"csv": directory / "profile.csv", "json": directory / "profile.json", "png": directory / "profile.png"}
        keys = list(dict.fromkeys(k for r in self.rows for k in r))

        def write_csv(tmp: str) -> None:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                w.writerows(self.rows)

        atomic_write(paths["csv"], write_csv)
        payload = {
            "metric": self.metric_name,
            "context": self.context,
            "rows": self.rows,
            "reference_setting": list(REFERENCE_SETTING),
            "quality_tolerance": self.quality_tolerance,
            "fewest_iterations": {s: (r["iters"] if r else None) for s, r in self.fewest_iterations().items()},
            "warnings": self.warnings(),
            "answer": self.answer(),
        }
        atomic_write(paths["json"], lambda p: Path(p).write_text(json.dumps(payload, indent=2) + "\n"))
        atomic_write(paths["png"], lambda p: self.plot(p))
        return paths

    @classmethod
    def from_json(cls, path: str | Path) -> ProfileReport:
        """A report read back from the profile.json that :meth:`write` made (e.g. to redraw its plot)."""
        data = json.loads(Path(path).read_text())
        return cls(data["rows"], data["metric"], data.get("context", {}), data.get("quality_tolerance", 0.05))

    def plot(self, path: str | Path) -> None:
        """Write :meth:`figure` as a PNG."""
        import matplotlib.pyplot as plt

        fig = self.figure()
        fig.savefig(path, format="png", dpi=120)
        plt.close(fig)

    def figure(self):
        """Distance vs iterations (solid, one line per solver; log scale) with the reference, the floor and
        the ceiling as horizontal lines, time per image on a second axis (dashed), warnings in the title."""
        import matplotlib  # optional (getkern[demo])

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        warnings = self.warnings()
        fig, ax = plt.subplots(figsize=(7, 5.5 + 0.3 * len(warnings)))
        time_ax = ax.twinx()
        for i, solver in enumerate(dict.fromkeys(r["solver"] for r in self.rows)):
            rows = sorted((r for r in self.rows if r["solver"] == solver), key=lambda r: r["iters"])
            its = [r["iters"] for r in rows]
            color = f"C{i}"
            ax.plot(its, [r["distance"] for r in rows], "o-", color=color, label=f"{solver}: {self.metric_name}")
            time_ax.plot(
                its,
                [1e3 * r["sec_per_image"] for r in rows],
                "s--",
                color=color,
                alpha=0.6,
                label=f"{solver}: ms/image",
            )
        ref = self.reference_row()
        levels = [r["distance"] for r in self.rows]
        ax.axhline(ref["distance"], color="gray", lw=0.8, ls=":", label="reference (6 fixed-point)")
        for key, color, style, label in (
            ("floor", "green", "-.", "floor (real held-out images)"),
            ("ceiling", "black", "--", "ceiling (Gaussian noise)"),
        ):
            if ref.get(key) is not None:
                ax.axhline(ref[key], color=color, lw=1.0, ls=style, label=label)
                ax.annotate(
                    f"{key} {ref[key]:.3g}",
                    xy=(0.01, ref[key]),
                    xycoords=("axes fraction", "data"),
                    fontsize=7,
                    color=color,
                    va="bottom",
                )
                levels.append(ref[key])
        if all(math.isfinite(v) and v > 0 for v in levels):
            ax.set_yscale("log")
        ax.set_xlabel("solver iterations")
        ax.set_ylabel(self.metric_name + " (lower is better)")
        time_ax.set_ylabel("ms per image")
        handles = ax.get_legend_handles_labels()[0] + time_ax.get_legend_handles_labels()[0]
        ax.legend(
            handles,
            [h.get_label() for h in handles],
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.14),
            ncol=2,
        )
        title = self.context.get("title", "solver iterations vs quality and time")
        if warnings:
            title += "\n" + "\n".join(textwrap.fill("WARNING: " + w, 95) for w in warnings)
        ax.set_title(title, fontsize=8 if warnings else 9, color="darkred" if warnings else "black", loc="left")
        fig.tight_layout()
        return fig


def _iterations(k: int) -> str:
    return f"{k} iteration" + ("" if k == 1 else "s")


def _fmt(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def check_settings(iters: Sequence[int], solvers: Sequence[str], num_samples: int, batch_size: int) -> None:
    """Clear errors for bad settings, before any work starts."""
    if not iters:
        raise UsageError("iters must list at least one iteration count")
    for k in iters:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise UsageError(f"iteration counts must be integers >= 1, got {k!r}")
    if not solvers:
        raise UsageError("solvers must list at least one solver")
    for s in solvers:
        if s not in deq.SOLVERS:
            raise UsageError(f"unknown solver {s!r}; expected one of {deq.SOLVERS}")
    if not isinstance(num_samples, int) or num_samples < 2:
        raise UsageError(f"num_samples must be an integer >= 2, got {num_samples!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def kernel_path(model: torch.nn.Module, device: torch.device) -> str:
    """Which implementation the model's fused-op modules run on ``device`` ("triton", "torch", ...)."""
    names = {m.backend for m in model.modules() if m is not model and isinstance(getattr(m, "backend", None), str)}
    return "+".join(sorted({resolve_backend(b, device, op="GET") for b in names})) or "torch"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_model(
    model: torch.nn.Module,
    metric: Callable[[torch.Tensor], object],
    *,
    iters: Sequence[int],
    solvers: Sequence[str] = ("fixed_point", "anderson"),
    num_samples: int = 600,
    batch_size: int = 200,
    seed: int = 0,
    tol: float | None = 1e-3,
    quality_tolerance: float = 0.05,
    progress: bool = True,
    context: dict | None = None,
    **solver_kwargs,
) -> ProfileReport:
    """Sample ``num_samples`` images per (solver, iterations) setting and measure each.

    ``model``: a GET (in-memory; any device and dtype). ``metric``: called on the (N, C, H, W) samples,
    returns an object with ``as_dict()`` holding ``distance`` and ``kid`` (and optionally ``floor``,
    ``ceiling``), e.g. :class:`~getkern.metrics.DigitsFrechet` or :class:`~getkern.metrics.fid.InceptionFID`;
    its ``name`` labels the column. The reference setting (6 fixed-point iterations) is added when
    absent. ``tol``: the solver's early-exit tolerance (the reference uses 1e-3; None runs every
    iteration). Extra keyword arguments go to the solver (e.g. ``m=5`` for Anderson).
    """
    check_settings(iters, solvers, num_samples, batch_size)
    iters = sorted(set(iters) | ({REFERENCE_SETTING[1]} if REFERENCE_SETTING[0] in solvers else set()))
    settings = [(s, k) for s in solvers for k in iters]
    if REFERENCE_SETTING not in settings:
        settings.insert(0, REFERENCE_SETTING)
    checker = getattr(metric, "check_model", None)
    if checker is not None:
        checker(model, num_samples)

    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    gen = torch.Generator().manual_seed(seed)  # CPU generator: the same inputs on every device
    noise = torch.randn(num_samples, model.in_channels, model.input_size, model.input_size, generator=gen)
    z0 = torch.randn(num_samples, model.x_embedder.num_patches, model.hidden_size, generator=gen)
    y = torch.arange(num_samples) % model.num_classes if model.cond else None
    noise, z0 = noise.to(device, dtype), z0.to(device, dtype)
    y = y.to(device) if y is not None else None
    batches = [slice(i, i + batch_size) for i in range(0, num_samples, batch_size)]
    kernels = kernel_path(model, device)
    was_training = model.training

    def sample(solver: str, k: int, part: slice):
        return model(
            noise[part],
            None if y is None else y[part],
            iters=k,
            solver=solver,
            z0=z0[part],
            tol=tol,
            return_info=True,
            **solver_kwargs,
        )

    rows = []
    try:
        model.eval()
        # Preflight: every solver runs on one sample before the real work (clear errors early).
        with torch.inference_mode():
            for solver in solvers:
                sample(solver, 1, slice(0, 1))
        for solver, k in tqdm(settings, desc="profile", disable=not progress):
            with torch.inference_mode():
                sample(solver, k, batches[0])  # warm-up (lazy init, kernel compilation), not timed
                _sync(device)
                images, residuals, nfevs, backends, per_image = [], [], [], set(), []
                for part in batches:
                    start = time.perf_counter()
                    out, info = sample(solver, k, part)
                    _sync(device)
                    per_image.append((time.perf_counter() - start) / out.shape[0])
                    images.append(out)
                    residuals.append(info["abs_lowest"].float())
                    nfevs.append(float(info.get("nfev", k)) * out.shape[0])
                    backends.add(str(info.get("backend", "torch")))
                seconds = statistics.median(per_image)  # per image; the median resists load spikes
                peak_mb = peak_step_memory(lambda: sample(solver, k, batches[0]), device) / 2**20
            quality = metric(torch.cat(images).float().cpu()).as_dict()
            residual = torch.cat(residuals)
            finite = residual[torch.isfinite(residual)]
            rows.append(
                {
                    "solver": solver,
                    "iters": k,
                    "distance": quality["distance"],
                    "kid": quality.get("kid"),
                    "residual": float(finite.mean()) if len(finite) else math.inf,
                    "nfev": sum(nfevs) / num_samples,
                    "sec_per_image": seconds,
                    "images_per_sec": 1.0 / seconds,
                    "peak_memory_mb": peak_mb,
                    "kernels": kernels,
                    "solver_backend": "+".join(sorted(backends)),
                    **{
                        key: quality[key]
                        for key in ("floor", "ceiling", "inception_score")
                        if quality.get(key) is not None
                    },
                }
            )
    finally:
        model.train(was_training)
    ctx = {
        "num_samples": num_samples,
        "batch_size": batch_size,
        "seed": seed,
        "tol": tol,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "memory_measure": "cuda.max_memory_allocated" if device.type == "cuda" else "live tensor storages (CPU)",
        **(context or {}),
    }
    return ProfileReport(rows, getattr(metric, "name", type(metric).__name__), ctx, quality_tolerance)
