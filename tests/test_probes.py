"""Issue #19's adversarial probes, quick subset (getkern/tools/probes.py): user mistakes, corrupt files,
concurrent and killed runs, malicious pickles and solver edge cases across every class, in one harness
run. The target: no traceback for a user mistake, no silent wrong result, no data loss, no code executed
from a file. The full set (``python -m getkern.tools.probes --out DIR``) is reported in
docs/results/probes.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from getkern.tools.probe_cases import catalogue
from getkern.tools.probes import CLEAN, OUTCOMES, select

# "unclear error" (an error not in one line, or not naming what is wrong) is reported, not failed on.
MUST_BE_ZERO = (
    "traceback",
    "silent wrong",
    "data loss",
    "code executed",
    "blocked",
    "crash",
    "timeout",
    "harness error",
)


def test_the_catalogue_covers_every_class_with_unique_ids():
    probes = catalogue()
    assert len(probes) >= 200
    assert len({p.id for p in probes}) == len(probes)
    classes = {p.cls for p in probes}
    assert classes >= {
        "numbers",
        "api-args",
        "memory",
        "corrupt",
        "out",
        "concurrency",
        "resume",
        "crash",
        "umask",
        "pickle",
        "solver",
        "commands",
    }
    quick = select(probes, quick=True, only=None)
    assert 30 <= len(quick) <= 50 and {p.cls for p in quick} == classes
    assert all(p.want in ("refuse", "accept", "either") for p in probes)


@pytest.mark.slow
def test_quick_probes_find_no_traceback_silent_wrong_result_data_loss_or_code_execution(tmp_path):
    # A child process: the harness sets umasks, thread counts and signal handlers, and must not see the
    # Triton interpreter tests/conftest.py turns on.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["OMP_NUM_THREADS"] = "1"
    res = subprocess.run(
        [sys.executable, "-m", "getkern.tools.probes", "--out", str(tmp_path), "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "probes.jsonl").read_text().splitlines()]
    assert summary["probes"] == len(records) >= 30
    assert set(summary["totals"]) == set(OUTCOMES)
    bad = {o: [f"{r['id']}: {r.get('detail', '')[:200]}" for r in records if r["outcome"] == o] for o in MUST_BE_ZERO}
    assert not any(bad.values()), json.dumps({o: v for o, v in bad.items() if v}, indent=1)
    assert all(r["outcome"] in CLEAN or r["outcome"] == "unclear error" for r in records)
