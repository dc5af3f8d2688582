"""``getkern gpu-validate``: first GPU contact in one command (docs/gpu-validate.md).

Five phases, each time-boxed against one deadline (default 420 s; a phase may use the time the phases
before it left over): 1 environment and measured ceilings, 2 op correctness against float64, 3 whole
models, 4 timings, 5 verdicts on the switches of docs/defaults.md. The C++/CUDA extension is compiled
in a background process (MAX_JOBS = the CPU count, TORCH_CUDA_ARCH_LIST = the device's architecture)
while phases 1-2 run. Every check is appended to ``DIR/results.jsonl`` as soon as it has run (one JSON
object a line, flushed, so a run killed mid-way keeps what ran); ``DIR/summary.md`` (failing checks
first, a table per phase, the verdicts) is written and printed at the end, or by a watchdog when a
case hangs past the deadline.

``--dry`` runs every phase on CPU under the Triton interpreter at tiny shapes (the process re-executes
itself with TRITON_INTERPRET=1, which must be set before getkern's kernels are imported); parts that
need a GPU (ceilings, timings, CUDA graphs, sync debug mode, register counts) are recorded as skipped,
by name. The case code lives in :mod:`getkern.tools.gpu_validate_cases`.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

PHASES = ("environment", "correctness", "models", "timings", "verdicts")
# Fraction of the deadline by which each phase must be done; time a phase leaves over rolls on.
PHASE_END = {"environment": 0.06, "correctness": 0.45, "models": 0.68, "timings": 0.90, "large": 0.99, "verdicts": 1.0}
DEFAULT_DEADLINE_S = 420.0
MAX_DEADLINE_S = 86400.0  # a day; the watchdog's timer cannot take inf (and nan would fire at once)
NEEDS_GPU = "needs a GPU"


class Skip(Exception):
    """Raised by a case that cannot run here; its message is the recorded reason."""


def _short(value):
    """JSON-safe, compact numbers (4 significant digits)."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {str(k): _short(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_short(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    try:  # tensors, numpy scalars
        return _short(float(value))
    except (TypeError, ValueError):
        return str(value)


class Recorder:
    """Runs cases against the phase clocks and appends one JSON line per check."""

    def __init__(
        self,
        out: Path,
        deadline_s: float,
        device_kind: str,
        synchronize=None,
        filename: str = "results.jsonl",
        shard: tuple[int, int] | None = None,
    ):
        self.out = out
        self.deadline_s = deadline_s
        self.t0 = time.monotonic()
        self.device_kind = device_kind
        self.synchronize = synchronize or (lambda: None)
        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.phase = PHASES[0]
        self.phase_end = self.t0 + PHASE_END[self.phase] * deadline_s
        self.current: str | None = None
        self.meta: dict = {}
        self.shard, self.cases_seen = shard, 0  # a compile warmer runs every k-th case only
        out.mkdir(parents=True, exist_ok=True)
        path = out / filename
        if path.exists():  # keep an earlier run's results rather than mixing or losing them
            path.rename(out / f"results-{int(path.stat().st_mtime)}.jsonl")
        self.path = path
        self.file = open(path, "w", encoding="utf-8")

    # ------------------------------------------------------------------ clocks
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def start_phase(self, phase: str, clock: str | None = None) -> None:
        """Record under ``phase``; cases run until the end of ``clock``'s slot (default: the phase's)."""
        self.phase = phase
        self.phase_end = self.t0 + PHASE_END[clock or phase] * self.deadline_s

    def time_left(self) -> float:
        return self.phase_end - time.monotonic()

    # ------------------------------------------------------------------ records
    def add(
        self,
        name: str,
        status: str,
        numbers: dict | None = None,
        reason: str | None = None,
        seconds: float = 0.0,
        phase: str | None = None,
    ) -> dict:
        record = {
            "phase": phase or self.phase,
            "name": name,
            "status": status,
            "seconds": round(seconds, 3),
            "numbers": _short(numbers or {}),
            "reason": reason,
            "t": round(self.elapsed(), 2),
        }
        with self.lock:
            self.records.append(record)
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}[status]
        print(
            f"[{record['t']:7.1f}s] {mark} {record['phase']}: {name}" + (f"  ({reason})" if reason else ""), flush=True
        )
        return record

    def skip_gpu(self, name: str, what: str = "") -> dict:
        return self.add(name, "skip", reason=NEEDS_GPU + (f" ({what})" if what else ""))

    def run(self, name: str, fn, *args, **kwargs) -> dict:
        """Run one case unless the phase is out of time. fn returns a dict of numbers; a non-empty
        ``numbers["failures"]`` list makes it a failure; Skip makes it a skip; any other exception a
        failure with the exception as its reason."""
        self.cases_seen += 1
        if self.shard is not None and (self.cases_seen - 1) % self.shard[1] != self.shard[0]:
            return {}
        if self.time_left() <= 0:
            return self.add(name, "skip", reason="skipped: deadline")
        self.current = name
        start = time.perf_counter()
        status, reason, numbers = "pass", None, {}
        try:
            numbers = fn(*args, **kwargs) or {}
            self.synchronize()  # asynchronous GPU errors belong to this case
            failures = numbers.pop("failures", None)
            if failures:
                status, reason = "fail", "; ".join(failures[:6]) + (" ..." if len(failures) > 6 else "")
        except Skip as why:
            status, reason = "skip", str(why)
        except Exception as error:  # the check failed to run: record why and go on
            status = "fail"
            where = traceback.extract_tb(error.__traceback__)[-1]
            reason = f"{type(error).__name__}: {str(error).strip()[:400]} [{Path(where.filename).name}:{where.lineno}]"
        finally:
            self.current = None
        record = self.add(name, status, numbers, reason, time.perf_counter() - start)
        gc.collect()
        return record

    def close(self) -> None:
        with self.lock:
            self.file.close()


# ---------------------------------------------------------------------- extension build in the background


class ExtensionBuild:
    """``python -m getkern._extension`` in a subprocess, output to DIR/build-ext.log."""

    def __init__(self, out: Path, arch: str | None, enabled: bool):
        from getkern import _extension

        self.proc = None
        self.started = time.monotonic()
        self.log = out / "build-ext.log"
        self.note = ""
        self.reported = False
        if arch and "TORCH_CUDA_ARCH_LIST" not in os.environ:
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch  # the child and this process's cache key agree
        os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 2))
        try:
            plan = _extension.plan()
            self.plan = {
                "with_cuda": plan.with_cuda,
                "archs": plan.archs,
                "why_no_cuda": plan.why_no_cuda,
                "cache": str(plan.directory),
                "max_jobs": os.environ["MAX_JOBS"],
            }
        except Exception as error:  # GETKERN_CUDA=1 without a toolkit, ...
            self.plan, self.note = {}, f"plan: {error}"
            return
        if _extension.cached():
            self.note = "already built (cache)"
        elif not enabled:
            self.note = "not started (--no-build)"
        else:
            log = open(self.log, "w")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "getkern._extension"], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
            )
            self.note = f"started, pid {self.proc.pid}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> bool:
        """Wait for the build (at most ``timeout`` s); True once a build is there to load."""
        from getkern import _extension

        if self.proc is not None:
            try:
                self.proc.wait(timeout=max(0.0, timeout))
            except subprocess.TimeoutExpired:
                return False
        return _extension.cached()

    def numbers(self) -> dict:
        rc = None if self.proc is None else self.proc.poll()
        tail = ""
        if self.log.exists():
            tail = " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])[-600:]
        return {
            **self.plan,
            "note": self.note,
            "rc": rc,
            "seconds_since_start": time.monotonic() - self.started,
            "log_tail": tail,
        }


# ---------------------------------------------------------------------- compile warmers


class CompileWarmers:
    """Worker processes (``--warm i/k``) that run every k-th correctness and model case while the main
    process runs all of them: Triton compiles each kernel specialisation once per process and caches it
    on disk (~/.triton/cache, keyed by source, specialisation and target), so k workers compile in
    parallel what the main process would compile one after the other; the main process then loads
    most kernels from the cache. They only run while the GPU is not being timed, and are stopped when
    the timings start. Their own results go to DIR/warm/ (a cross-check, not the record)."""

    def __init__(self, out: Path, count: int, until_s: float, dry: bool):
        self.procs = []
        self.dir = out / "warm"
        self.dir.mkdir(parents=True, exist_ok=True)
        deadline = until_s / PHASE_END["models"]  # their models phase ends when the main one does
        for i in range(count):
            log = open(self.dir / f"worker-{i}.log", "w")
            cmd = [
                sys.executable,
                "-m",
                "getkern.tools.gpu_validate",
                "--warm",
                f"{i}/{count}",
                "--out",
                str(out),
                "--deadline",
                f"{deadline:.1f}",
            ] + (["--dry"] if dry else [])
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))

    def stop(self) -> dict:
        ran = 0
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()  # Triton writes its cache through a rename: a stopped worker leaves no torn file
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for path in self.dir.glob("results-*.jsonl"):
            ran += sum(1 for line in path.read_text().splitlines() if '"phase": "environment"' not in line)
        return {
            "workers": len(self.procs),
            "cases_run_by_workers": ran,
            "exit_codes": [p.returncode for p in self.procs],
        }


def warm_workers_count() -> int:
    """Leave cores to the main process and the extension build; none on small machines."""
    return max(0, min(6, (os.cpu_count() or 1) - 6))


def run_warm(out: Path, deadline: float, dry: bool, shard: tuple[int, int]) -> int:
    """A compile warmer: phases 2 and 3, every k-th case, recorded to DIR/warm/results-<i>.jsonl."""
    import torch

    from getkern.tools import gpu_validate_cases as cases

    gpu = not dry and torch.cuda.is_available()
    rec = Recorder(
        out / "warm",
        deadline,
        "cuda" if gpu else "cpu",
        synchronize=torch.cuda.synchronize if gpu else None,
        filename=f"results-{shard[0]}.jsonl",
        shard=shard,
    )
    if dry:
        torch.set_num_threads(1)
    ctx = cases.Context(rec=rec, device=torch.device("cuda" if gpu else "cpu"), dry=dry, out=out)
    for phase, body in (("correctness", cases.correctness), ("models", cases.models)):
        rec.start_phase(phase)
        body(ctx)
    rec.close()
    return 0


# ---------------------------------------------------------------------- summary


def _fmt_numbers(numbers: dict, limit: int = 8) -> str:
    parts = []
    for key, value in numbers.items():
        if key in ("log_tail",):
            continue
        if isinstance(value, dict) and {"err", "own", "floor"} <= set(value):
            bound = 2 * value["own"] + value["floor"] if isinstance(value["own"], (int, float)) else None
            ratio = (value["err"] / bound) if bound and isinstance(value["err"], (int, float)) else value["err"]
            parts.append(f"{key} {_num(ratio)}x")
        elif isinstance(value, (dict, list)):
            parts.append(f"{key}={json.dumps(value)[:80]}")
        else:
            parts.append(f"{key}={_num(value)}")
        if len(parts) >= limit:
            parts.append("...")
            break
    return ", ".join(parts).replace("|", "/")


def _num(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def summarize(records: list[dict], meta: dict) -> str:
    counts = {s: sum(r["status"] == s for r in records) for s in ("pass", "fail", "skip")}
    lines = [
        f"# getkern gpu-validate: {meta.get('device', '?')}, {meta.get('date', '?')}"
        + (" (--dry: CPU, Triton interpreter, tiny shapes)" if meta.get("dry") else ""),
        "",
        f"{meta.get('versions', '')}",
        "",
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped; "
        f"{meta.get('elapsed', 0):.0f} s of a {meta.get('deadline', 0):.0f} s deadline"
        + (f". {meta['note']}" if meta.get("note") else ""),
        "",
        "Correctness cells read `name ratio x`: the error against float64 as a multiple of the allowed "
        "bound (2x the PyTorch path's own error + a rounding floor); <= 1 passes.",
        "",
    ]
    failing = [r for r in records if r["status"] == "fail"]
    lines += ["## Failing checks", ""]
    if failing:
        lines += ["| phase | check | reason |", "|---|---|---|"]
        lines += [f"| {r['phase']} | {r['name']} | {(r['reason'] or '').replace('|', '/')[:300]} |" for r in failing]
    else:
        lines.append("None.")
    for phase in PHASES:
        rows = [r for r in records if r["phase"] == phase]
        if not rows:
            continue
        lines += ["", f"## {PHASES.index(phase) + 1}. {phase}", ""]
        if phase == "verdicts":
            lines += ["| switch | default | the data supports | status | evidence |", "|---|---|---|---|---|"]
            for r in rows:
                n = r["numbers"]
                lines.append(
                    f"| {r['name']} | {n.get('default', '')} | {n.get('supports', '-')} | {r['status']} | "
                    f"{(r['reason'] or n.get('evidence', '')).replace('|', '/')} |"
                )
            continue
        lines += ["| check | status | s | numbers / reason |", "|---|---|---|---|"]
        for r in rows:
            detail = _fmt_numbers(r["numbers"])
            if r["reason"] and r["status"] != "pass":
                detail = r["reason"].replace("|", "/")[:200] + ("; " + detail if detail else "")
            lines.append(f"| {r['name']} | {r['status']} | {r['seconds']:.1f} | {detail} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- the run


def _write_summary(rec: Recorder, meta: dict) -> str:
    meta = {**meta, "elapsed": rec.elapsed(), "deadline": rec.deadline_s}
    with rec.lock:
        text = summarize(list(rec.records), meta)
    (rec.out / "summary.md").write_text(text)
    return text


def _watchdog(rec: Recorder, meta: dict, grace: float) -> threading.Timer:
    """At deadline + grace, a case is hanging: record it, write the summary, exit (what ran is kept)."""

    def fire():
        name = rec.current or "(between cases)"
        try:
            rec.add(name, "fail", reason=f"hard deadline: still running {rec.deadline_s + grace:.0f} s after the start")
            meta["note"] = f"stopped by the watchdog while running {name!r}"
            print(_write_summary(rec, meta), flush=True)
        finally:
            os._exit(124)

    timer = threading.Timer(rec.deadline_s + grace, fire)
    timer.daemon = True
    timer.start()
    return timer


def run_all(out: Path, deadline: float, dry: bool, build: bool, warm: bool = True) -> int:
    import torch

    from getkern.tools import gpu_validate_cases as cases

    if dry:
        torch.set_num_threads(1)  # tiny interpreted ops on shared cores run fastest on one thread
    gpu = not dry and torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    rec = Recorder(out, deadline, device.type, synchronize=torch.cuda.synchronize if gpu else None)
    meta = {"dry": dry, "date": datetime.date.today().isoformat(), "device": "cpu (dry)" if dry else "no GPU"}
    grace = 30.0  # 420 s + 30 s + install stays under 8 minutes
    timer = _watchdog(rec, meta, grace)
    ctx = cases.Context(rec=rec, device=device, dry=dry, out=out)
    warmers = None
    try:
        rec.start_phase("environment")
        env = cases.environment(ctx)
        meta.update(device=env.get("device", meta["device"]), versions=env.get("versions", ""))
        if not dry and not gpu:
            rec.add(
                "CUDA device", "fail", reason="torch.cuda.is_available() is False: run on the GPU machine, or use --dry"
            )
            return _finish(rec, meta, timer, 2)
        ctx.build = ExtensionBuild(out, env.get("arch"), enabled=build)
        rec.add("extension build", "pass", ctx.build.numbers())
        count = warm_workers_count() if gpu and warm else 0
        warmers = CompileWarmers(out, count, PHASE_END["models"] * deadline - rec.elapsed(), dry) if count else None
        cases.ceilings(ctx)
        for phase, body in (("correctness", cases.correctness), ("models", cases.models), ("timings", cases.timings)):
            if phase == "timings" and warmers is not None:  # nothing else may use the GPU while it is timed
                rec.add("compile warmers stopped", "pass", warmers.stop(), phase="environment")
                warmers = None
            rec.start_phase(phase)
            body(ctx)
        rec.start_phase("correctness", clock="large")  # cases that could poison the CUDA context run last
        cases.large_and_compiled(ctx)
        cases.report_build(ctx, wait=0.0)
        rec.start_phase("verdicts")
        cases.verdicts(ctx)
    except BaseException as error:  # KeyboardInterrupt, a bug in the runner: keep what ran
        if warmers is not None:
            warmers.stop()
        rec.add("runner", "fail", reason=f"{type(error).__name__}: {error}")
        meta["note"] = "the runner stopped early"
        return _finish(rec, meta, timer, 1)
    return _finish(rec, meta, timer, 1 if any(r["status"] == "fail" for r in rec.records) else 0)


def _finish(rec: Recorder, meta: dict, timer: threading.Timer, rc: int) -> int:
    timer.cancel()
    text = _write_summary(rec, meta)
    rec.close()
    print("\n" + text, flush=True)
    device = str(meta.get("device", "device")).lower().replace("nvidia ", "").replace(" ", "-")
    print(
        f"results: {rec.path}, {rec.out / 'summary.md'}"
        + ("" if meta.get("dry") else f"; commit them as docs/gpu-results/{meta['date']}-{device}.jsonl/.md"),
        flush=True,
    )
    return rc


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="getkern gpu-validate", description=__doc__.splitlines()[0])
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="folder for results.jsonl, summary.md, build-ext.log")
    from getkern.commands._common import float_range

    p.add_argument(
        "--deadline",
        type=float_range(above=0, high=MAX_DEADLINE_S),
        default=DEFAULT_DEADLINE_S,
        help=f"seconds for all phases (default {DEFAULT_DEADLINE_S:.0f}); cases past it are skipped",
    )
    p.add_argument(
        "--dry",
        action="store_true",
        help="CPU, Triton interpreter, tiny shapes: GPU-only parts are recorded as skipped",
    )
    p.add_argument(
        "--no-build",
        action="store_true",
        help="do not start the extension build (C++ cases then use a cached build or are skipped)",
    )
    p.add_argument(
        "--no-warm",
        action="store_true",
        help="no parallel compile-warming workers (GPU runs start min(6, cores - 6) of them)",
    )
    p.add_argument("--warm", metavar="I/K", default=None, help=argparse.SUPPRESS)  # a worker (internal)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.dry and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        # The interpreter must be chosen before any @triton.jit kernel is imported: start afresh.
        env = dict(os.environ, TRITON_INTERPRET="1")
        return subprocess.call([sys.executable, "-m", "getkern.tools.gpu_validate", *argv], env=env)
    if args.warm:
        i, k = (int(v) for v in args.warm.split("/"))
        return run_warm(args.out, args.deadline, args.dry, (i, k))
    return run_all(args.out, args.deadline, args.dry, build=not args.no_build, warm=not args.no_warm)


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: the cases raise getkern's Skip, not ours.
    from getkern.tools import gpu_validate

    sys.exit(gpu_validate.main())
