"""Adversarial probes of getkern's command line and API: user mistakes, corrupt files,
concurrent and killed runs, malicious pickles, solver edge cases, each classified by what getkern did.

    python -m getkern.tools.probes --out probe-results            # every probe (minutes on 2 cores)
    python -m getkern.tools.probes --out /tmp/p --quick           # a ~40-probe subset (under a minute)
    python -m getkern.tools.probes --out /tmp/p --only resume     # probes whose id or class contains "resume"

Each probe runs in a fresh temporary folder with tiny fixtures (a pair set of 8 digits pairs from the
shipped teacher, a 2-step training run of a 16-wide GET, save_pretrained folders, a reference-format
.pth, a TorchScript stand-in for Inception), built once per harness run. CLI probes call
``getkern.cli.main(argv)`` in-process with stdout/stderr captured (a few run in a child process: those
that need a real second process, a dropped file-permission override, or that could end the harness);
API probes call the function. Outcomes (:data:`OUTCOMES`):

- ``clear error``: exit 2 or 1 and exactly one stderr line ``getkern <cmd>: error: ...`` naming the
  offending flag, field or file (argparse's usage lines before it are allowed); for the API, a
  GetkernError/ValueError/TypeError/OSError whose message names it;
- ``accepted``: exit 0 (the API returned) where that is right, and the probe's check of the result passed;
- ``traceback``: an exception escaped ``cli.main`` or a traceback was printed; for the API, an exception
  of another type (RuntimeError, KeyError, IndexError, MemoryError, ...);
- ``unclear error``: an error, but not one line with the prefix, or not naming what is wrong;
- ``silent wrong``: accepted what should be refused, or accepted with a wrong result;
- ``blocked``: refused what should work (a resume after a crash, the same data spelled otherwise);
- ``data loss``: a file that existed before the probe changed or vanished;
- ``code executed``: a pickle payload ran (its marker file appeared);
- ``timeout`` / ``crash``: ran past the probe's time limit / a child process died.

Results: ``<out>/probes.jsonl`` (one record per probe) and ``<out>/summary.md`` (counts per class and
outcome, and every non-clean probe with its stderr's first line). Deterministic: the probe list, fixtures
and seeds are fixed; only durations vary.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTCOMES = (
    "clear error",
    "accepted",
    "traceback",
    "unclear error",
    "silent wrong",
    "blocked",
    "data loss",
    "code executed",
    "timeout",
    "crash",
    "harness error",
)
CLEAN = ("clear error", "accepted")
LOCK_FILE = ".getkern.lock"
MARKER = "CODE_EXECUTED"
CHILD_TIMEOUT_EXTRA = 40.0  # a child process imports torch and rebuilds the probe list first


class ProbeTimeout(BaseException):
    """Raised by the alarm in a probe that ran past its limit (a BaseException: getkern catches OSError,
    and TimeoutError is one)."""


@dataclass
class Probe:
    """One adversarial input and what is right for it.

    ``argv`` (CLI probes) may hold ``{d}`` (the probe's folder) and ``{fx}`` (the fixtures' folder);
    ``call(ctx)`` is an API probe (or a CLI probe that builds its own argv and calls ``ctx.cli``).
    ``want``: "refuse" (a clear error is right), "accept" (success is right; a refusal is ``blocked``) or
    "either". ``check(ctx, result)`` judges an acceptance: None when the result is right, else what is
    wrong. ``preserve``: paths (folders: every file under them) that must be byte-identical afterwards.
    ``untouched``: paths a refusal must not have written (noted as a late refusal when it did).
    ``isolate``: None (in-process), "process" (a child process), "nocaps" (a child without root's
    permission override, for unwritable folders) or "memory" (in-process under an address-space limit).
    """

    id: str
    cls: str
    command: str
    argv: list[str] | None = None
    call: Callable[[Ctx], Any] | None = None
    setup: Callable[[Ctx], None] | None = None
    names: tuple[str, ...] = ()
    want: str = "refuse"
    check: Callable[[Ctx, Result], str | None] | None = None
    preserve: tuple[str, ...] = ()
    untouched: tuple[str, ...] = ()
    quick: bool = False
    isolate: str | None = None
    timeout: float = 60.0
    umask: int | None = None
    what: str = ""


@dataclass
class Result:
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    warnings: list[str] = field(default_factory=list)
    exception: BaseException | None = None
    exc_text: str = ""
    value: Any = None
    timed_out: bool = False
    seconds: float = 0.0


class Ctx:
    """A probe's folder ``d``, the fixtures ``fx``, and a dict ``state`` from setup to check."""

    def __init__(self, d: Path, fx: Path, shared: dict):
        self.d, self.fx, self.state, self.shared = d, fx, {}, shared
        self.timeout = 60.0  # the probe's limit, for CLI runs a call() makes

    @property
    def marker(self) -> Path:
        return self.d / MARKER

    def path(self, text: str) -> str:
        return text.replace("{d}", str(self.d)).replace("{fx}", str(self.fx))

    def copy(self, name: str, dest: str | None = None) -> Path:
        src, dst = self.fx / name, self.d / (dest or name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst)
        return dst

    def cli(self, argv: list[str]) -> Result:
        return run_cli([self.path(a) for a in argv], self.timeout)


# ---------------------------------------------------------------- running one probe


@contextlib.contextmanager
def alarm(seconds: float):
    def fire(signum, frame):
        raise ProbeTimeout(f"ran past {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def address_space_limit(extra_bytes: int = 4 << 30):
    """Cap this process's address space at its current size plus ``extra_bytes`` (allocations past it fail
    with MemoryError / "can't allocate memory" instead of exhausting the machine)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = vm + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, vm + extra_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def umask(mask: int | None):
    if mask is None:
        yield
        return
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _captured(fn: Callable[[], Any], timeout: float) -> Result:
    r = Result()
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                with alarm(timeout):
                    r.value = fn()
            except ProbeTimeout:
                r.timed_out = True
            except SystemExit as e:  # argparse
                r.value = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
            except BaseException as e:  # noqa: BLE001 - what escapes is what we classify
                r.exception = e
                r.exc_text = traceback.format_exc()
    r.seconds = time.perf_counter() - t0
    r.stdout, r.stderr = out.getvalue(), err.getvalue()
    r.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    return r


def run_cli(argv: list[str], timeout: float = 60.0) -> Result:
    from getkern.cli import main

    r = _captured(lambda: main(list(argv)), timeout)
    if r.exception is None and not r.timed_out:
        r.rc = r.value if isinstance(r.value, int) else 0
    return r


def _fingerprint(paths: list[Path]) -> dict[str, str]:
    """relative-ish path -> sha256 (or "<missing>") of every file under ``paths`` except lock files."""
    out = {}
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.name != LOCK_FILE:
                    out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p)] = "<missing>"
    return out


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def _error_lines(stderr: str) -> list[str]:
    """stderr without argparse's usage block (``usage: ...`` and its indented continuation lines)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage:"):
        lines = lines[1:]
        while lines and lines[0].startswith(" "):
            lines = lines[1:]
    return lines


def _names(text: str, names: tuple[str, ...]) -> bool:
    return not names or any(n.lower() in text.lower() for n in names)


def classify(probe: Probe, ctx: Ctx, r: Result) -> tuple[str, str]:
    """(outcome, detail) of a finished probe, before the data-loss and code-execution checks."""
    if r.timed_out:
        return "timeout", f"ran past {probe.timeout:g} s"
    is_cli = probe.command != "api"
    if r.exception is not None:
        e = r.exception
        line = f"{type(e).__name__}: {_first_line(str(e))}"
        if is_cli:
            return "traceback", line
        from getkern.errors import GetkernError

        if not isinstance(e, (GetkernError, ValueError, TypeError, OSError)):
            return "traceback", line
        if probe.want == "accept":
            return "blocked", line
        return (
            ("clear error", line)
            if _names(str(e), probe.names)
            else ("unclear error", f"does not name {probe.names}: {line}")
        )
    if is_cli and "Traceback (most recent call last)" in r.stderr + r.stdout:
        return "traceback", _first_line(r.stderr)
    if is_cli and r.rc not in (0, 1, 2):
        return "crash", f"exit code {r.rc}: {_first_line(r.stderr)}"
    if is_cli and r.rc != 0:
        lines = _error_lines(r.stderr)
        cmd = probe.command
        prefix = f"getkern {cmd}: error: " if cmd else "getkern: error: "
        first = lines[0] if lines else "(no stderr)"
        if len(lines) != 1 or not lines[0].startswith(prefix):
            return "unclear error", f"exit {r.rc}, {len(lines)} stderr lines: {first[:300]}"
        if probe.want == "accept":
            return "blocked", first
        if not _names(lines[0], probe.names):
            return "unclear error", f"does not name {' or '.join(probe.names)}: {first}"
        return "clear error", first
    # accepted
    if probe.want == "refuse":
        return "silent wrong", "accepted" + (f" (stdout: {_first_line(r.stdout)[:160]})" if r.stdout else "")
    if probe.check is not None:
        try:
            problem = probe.check(ctx, r)
        except Exception as e:  # noqa: BLE001 - a check that cannot read the result: the result is wrong
            problem = f"check failed: {type(e).__name__}: {_first_line(str(e))}"
        if problem:
            return "silent wrong", problem
    return "accepted", "; ".join(r.warnings)[:300]


def execute(probe: Probe, ctx: Ctx) -> dict:
    """Set up, run and classify ``probe`` in this process; returns its record."""
    rec = {"id": probe.id, "class": probe.cls, "command": probe.command or "(none)", "want": probe.want}
    t0 = time.perf_counter()
    ctx.timeout = probe.timeout
    try:
        if probe.setup is not None:
            probe.setup(ctx)
        preserved = _fingerprint([Path(ctx.path(p)) for p in probe.preserve])
        untouched = _fingerprint([Path(ctx.path(p)) for p in probe.untouched])
    except Exception as e:  # noqa: BLE001
        rec.update(
            outcome="harness error",
            detail=f"setup: {type(e).__name__}: {_first_line(str(e))}",
            seconds=round(time.perf_counter() - t0, 3),
            traceback=traceback.format_exc()[-2000:],
        )
        return rec
    limit = address_space_limit() if probe.isolate == "memory" else contextlib.nullcontext()
    with umask(probe.umask), limit:
        if probe.call is not None:
            r = _captured(lambda: probe.call(ctx), probe.timeout)
            if probe.command != "api" and isinstance(r.value, Result):  # a CLI probe run by call()
                inner = r.value
                inner.exception = inner.exception or r.exception
                inner.timed_out = inner.timed_out or r.timed_out
                r = inner
            elif probe.command != "api" and r.exception is None and not r.timed_out:
                r.rc = 0
        else:
            r = run_cli([ctx.path(a) for a in probe.argv], probe.timeout)
    _restore_process_state()
    outcome, detail = classify(probe, ctx, r)
    if ctx.marker.exists():
        outcome, detail = "code executed", f"the payload's marker {MARKER} appeared; " + detail
    else:
        after = _fingerprint([Path(ctx.path(p)) for p in probe.preserve])
        lost = [p for p, h in preserved.items() if h != "<missing>" and after.get(p) != h]
        if lost:
            changed = [
                f"{Path(p).name} ({'missing' if after.get(p) in (None, '<missing>') else 'changed'})" for p in lost
            ]
            outcome, detail = "data loss", f"{', '.join(changed[:6])}; " + detail
    if outcome == "clear error" and probe.untouched:
        after = _fingerprint([Path(ctx.path(p)) for p in probe.untouched])
        written = sorted(set(after) - set(untouched)) + [
            p for p in untouched if after.get(p) != untouched[p] and p in after and untouched[p] != "<missing>"
        ]
        written = [p for p in written if after.get(p) != "<missing>"]
        if written:
            rec["late"] = "wrote before refusing: " + ", ".join(os.path.relpath(p, ctx.d) for p in written[:4])
    rec.update(
        outcome=outcome,
        detail=detail[:600],
        rc=r.rc,
        seconds=round(time.perf_counter() - t0, 3),
        stderr_first=_first_line("\n".join(_error_lines(r.stderr)) or r.stderr)[:400],
        stderr_lines=len(_error_lines(r.stderr)),
    )
    if r.warnings:
        rec["warnings"] = [w[:300] for w in r.warnings[:5]]
    if r.exc_text and outcome not in CLEAN:
        rec["traceback"] = r.exc_text[-2500:]
    elif outcome == "traceback" and "Traceback" in r.stderr:
        rec["traceback"] = r.stderr[-2500:]
    if probe.what:
        rec["what"] = probe.what
    return rec


def _restore_process_state() -> None:
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    os.environ.pop("GETKERN_VERIFY_PAIRS", None)


# ---------------------------------------------------------------- child processes


def _drop_dac_override() -> None:
    """Without CAP_DAC_OVERRIDE / DAC_READ_SEARCH / FOWNER, root obeys permission bits (0555 folders)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def execute_in_child(probe: Probe, d: Path, fx: Path) -> dict:
    result_file = d.parent / f"{d.name}.result.json"
    cmd = [
        sys.executable,
        "-m",
        "getkern.tools.probes",
        "--child",
        probe.id,
        "--fixtures",
        str(fx),
        "--workdir",
        str(d),
        "--result",
        str(result_file),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    rec = {"id": probe.id, "class": probe.cls, "command": probe.command or "(none)", "want": probe.want}
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=probe.timeout + CHILD_TIMEOUT_EXTRA,
            preexec_fn=_drop_dac_override if probe.isolate == "nocaps" else None,
        )
    except subprocess.TimeoutExpired as e:
        rec.update(
            outcome="timeout",
            detail=f"child ran past {probe.timeout + CHILD_TIMEOUT_EXTRA:g} s",
            seconds=round(time.perf_counter() - t0, 3),
            stderr_first=_first_line(str(e.stderr or "")),
        )
        return rec
    if result_file.is_file():
        rec = json.loads(result_file.read_text())
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        return rec
    tail = (proc.stderr or "")[-2500:]
    outcome = "traceback" if "Traceback (most recent call last)" in tail else "crash"
    rec.update(
        outcome=outcome,
        detail=f"child exited {proc.returncode} without a result: "
        f"{_first_line(tail.splitlines()[-1] if tail.strip() else '')}",
        seconds=round(time.perf_counter() - t0, 3),
        traceback=tail,
        stderr_first=_first_line(tail),
    )
    return rec


def _child_main(args) -> int:
    import torch

    torch.set_num_threads(1)
    from getkern.tools.probe_cases import catalogue

    probe = {p.id: p for p in catalogue()}[args.child]
    probe = dataclasses.replace(probe, isolate=None)
    d = Path(args.workdir)
    rec = execute(probe, Ctx(d, Path(args.fixtures), {}))
    Path(args.result).write_text(json.dumps(rec))
    return 0


# ---------------------------------------------------------------- the whole run


def select(probes: list[Probe], quick: bool, only: str | None) -> list[Probe]:
    if quick:
        probes = [p for p in probes if p.quick]
    if only:
        probes = [p for p in probes if only in p.id or only == p.cls]
    return probes


def run_probes(
    out: Path, *, quick: bool = False, only: str | None = None, keep: bool = False, progress: bool = True
) -> dict:
    """Build the fixtures, run the selected probes, write ``out/probes.jsonl`` and ``out/summary.md``;
    returns the summary (counts per outcome and per class, the non-clean records)."""
    import torch

    from getkern.tools.probe_cases import build_fixtures, catalogue, fixture_digest

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="getkern-probes-"))
    cwd = os.getcwd()
    t_start = time.perf_counter()
    records = []
    try:
        fx = base / "fixtures"
        t0 = time.perf_counter()
        build_fixtures(fx)
        fixture_seconds = time.perf_counter() - t0
        digest_before = fixture_digest(fx)
        probes = select(catalogue(), quick, only)
        ids = [p.id for p in probes]
        assert len(ids) == len(set(ids)), "duplicate probe ids"
        shared: dict = {}
        with open(out / "probes.jsonl", "w") as log:
            for i, probe in enumerate(probes):
                d = base / "probes" / f"{i:04d}"
                d.mkdir(parents=True)
                os.chdir(d)
                try:
                    if probe.isolate in ("process", "nocaps"):
                        rec = execute_in_child(probe, d, fx)
                    else:
                        rec = execute(probe, Ctx(d, fx, shared))
                finally:
                    os.chdir(cwd)
                records.append(rec)
                log.write(json.dumps(rec, sort_keys=True) + "\n")
                log.flush()
                if progress:
                    flag = "" if rec["outcome"] in CLEAN else "  <--"
                    print(
                        f"[{i + 1}/{len(probes)}] {rec['outcome']:<14} {rec['seconds']:6.2f}s {probe.id}{flag}",
                        file=sys.stderr,
                        flush=True,
                    )
                if not keep:
                    shutil.rmtree(d, ignore_errors=True)
        fixtures_changed = fixture_digest(fx) != digest_before
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    summary = summarize(records)
    summary.update(
        seconds=round(time.perf_counter() - t_start, 1),
        fixture_seconds=round(fixture_seconds, 1),
        quick=quick,
        only=only,
        fixtures_changed=fixtures_changed,
        machine=machine(),
    )
    (out / "summary.md").write_text(markdown(summary, records))
    (out / "summary.json").write_text(
        json.dumps({k: v for k, v in summary.items() if k != "non_clean"}, indent=2, sort_keys=True) + "\n"
    )
    return summary


def summarize(records: list[dict]) -> dict:
    classes = sorted({r["class"] for r in records})
    by_class = {c: {o: 0 for o in OUTCOMES} for c in classes}
    totals = {o: 0 for o in OUTCOMES}
    for r in records:
        by_class[r["class"]][r["outcome"]] += 1
        totals[r["outcome"]] += 1
    return {
        "probes": len(records),
        "totals": totals,
        "by_class": by_class,
        "non_clean": [r for r in records if r["outcome"] not in CLEAN],
        "late": [r for r in records if r.get("late")],
    }


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu or platform.processor()}, {os.cpu_count()} logical CPUs visible, Python {platform.python_version()}"


def markdown(summary: dict, records: list[dict]) -> str:
    used = [o for o in OUTCOMES if summary["totals"][o]]
    lines = [
        f"# getkern probes ({'quick' if summary['quick'] else 'full'} run)",
        "",
        f"{summary['probes']} probes in {summary['seconds']:.0f} s (fixtures {summary['fixture_seconds']:.0f} s) "
        f"on {summary['machine']}.",
        "",
    ]
    lines += ["| class | probes | " + " | ".join(used) + " |", "|---|---:|" + "---:|" * len(used)]
    for c, counts in summary["by_class"].items():
        lines.append(f"| {c} | {sum(counts.values())} | " + " | ".join(str(counts[o]) for o in used) + " |")
    lines.append(
        f"| **all** | **{summary['probes']}** | " + " | ".join(f"**{summary['totals'][o]}**" for o in used) + " |"
    )
    lines += ["", f"## Non-clean probes ({len(summary['non_clean'])})", ""]
    if summary["non_clean"]:
        lines += ["| probe | command | outcome | first stderr line / exception / what is wrong |", "|---|---|---|---|"]
        for r in summary["non_clean"]:
            text = r.get("detail") or r.get("stderr_first") or ""
            lines.append(f"| `{r['id']}` | {r['command']} | {r['outcome']} | {_md(text)} |")
    else:
        lines.append("None.")
    if summary["late"]:
        lines += ["", f"## Refused, but after writing something ({len(summary['late'])})", ""]
        lines += [f"- `{r['id']}`: {_md(r['late'])}; {_md(r.get('stderr_first', ''))}" for r in summary["late"]]
    if summary.get("fixtures_changed"):
        lines += ["", "**A probe changed the shared fixtures** (a read-only use wrote to them)."]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:400]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m getkern.tools.probes",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, help="folder for probes.jsonl, summary.md and summary.json")
    p.add_argument("--quick", action="store_true", help="the ~40-probe subset")
    p.add_argument("--only", help="probes whose id contains this (or whose class is this)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders (their path is printed)")
    p.add_argument("--list", action="store_true", help="list the probes and exit")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--fixtures", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child_main(args)
    if args.list:
        from getkern.tools.probe_cases import catalogue

        probes = select(catalogue(), args.quick, args.only)
        for probe in probes:
            print(f"{probe.cls:<12} {probe.id}")
        print(f"{len(probes)} probes", file=sys.stderr)
        return 0
    if args.out is None:
        p.error("--out is required")
    s = run_probes(args.out, quick=args.quick, only=args.only, keep=args.keep)
    print(
        f"{s['probes']} probes in {s['seconds']:.0f} s: "
        + ", ".join(f"{n} {o}" for o, n in s["totals"].items() if n)
        + f"; results in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
