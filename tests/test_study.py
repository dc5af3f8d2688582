"""``getkern study`` (GET vs ViTs at equal budgets) end to end at toy size: the --quick grid
with toy models and budgets writes its table and plots, a rerun reuses every run, another setting in
the same folder is refused, and a study killed mid-run resumes to the uninterrupted results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import torch_threads

from getkern.apps.study import run_study
from getkern.apps.study_config import StudyConfig
from getkern.distill.trainer import Trainer
from getkern.errors import UsageError

TOY_GET = dict(
    patch_size=2,
    hidden_size=16,
    depth=1,
    num_heads=2,
    mlp_ratio=2.0,
    deq_mlp_ratio=2.0,
    backend="torch",
    solver_backend="torch",
)


def toy(out, **overrides) -> StudyConfig:
    return StudyConfig.quick_variant(
        **{
            **dict(
                out=str(out),
                num_pairs=120,
                wall_budget_s=0.25,
                eval_samples=40,
                milestones=2,
                calibration_steps=4,
                teacher_steps=(2, 4),
                final_iters=(1, 2),
                curve_iters=(1,),
                timing_repeats=1,
                vits={"ViT-1x": dict(hidden_size=16, depth=2, num_heads=2)},
                demo=dict(batch_size=16, train_iters=2, model=TOY_GET),
                progress=False,
            ),
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The study, calibrated and run on one thread (plan.json records it) for the whole module."""
    out = tmp_path_factory.mktemp("study")
    cfg = toy(out)
    with torch_threads(1):
        yield cfg, run_study(cfg, log=lambda *a: None)


@pytest.mark.slow  # the toy study (the `first` fixture) takes about 20 s
def test_study_writes_its_table_and_plots_and_reuses_every_run(first):
    cfg, s = first
    out = cfg.out
    for name in ("table.md", "results.json", "plan.json", "fd_vs_time.png", "fd_vs_flops.png", "pareto.png"):
        assert (Path(out) / name).stat().st_size > 0, name
    plan = json.loads((Path(out) / "plan.json").read_text())
    cal = plan["calibration"]
    assert plan["threads"] == 1 and plan["machine"]["cpu"]  # fixed for the resume, with the machine
    assert set(cal) == {
        "GET-adversarial",
        "GET-regression",
        "GET-adversarial-phantom",
        "GET-adversarial-implicit",
        "ViT-1x-adversarial",
        "ViT-1x-regression",
    }
    assert all(c["s_per_step"] > 0 and c["flops_per_step"] > 0 for c in cal.values())
    # the custom ops are counted: the implicit gradient's adjoint solve costs more than unrolling
    assert cal["GET-adversarial-implicit"]["flops_per_step"] > cal["GET-adversarial"]["flops_per_step"]
    rows = {(r["model"], r["recipe"], r["grad"], r["budget"]): r for r in s["rows"]}
    assert len(rows) == 2 * 2 + 2 * 2 + 2  # GET and ViT x recipes x budgets, phantom and implicit
    for r in rows.values():
        assert r["max_steps"] >= cfg.milestones and r["fd"]["n"] == 1 and r["curve"]
        assert s["floor"] < s["ceiling"] and r["fd"]["mean"] > 0
    # equal wall time: steps = budget x calibrated steps/s; equal FLOPs: the GET's FLOPs in that budget
    get, vit = rows["GET", "adversarial", "unrolled", "wall"], rows["ViT-1x", "adversarial", "unrolled", "flops"]
    assert get["max_steps"] == max(cfg.milestones, round(cfg.wall_budget_s / get["s_per_step"]))
    assert vit["max_steps"] == max(cfg.milestones, round(get["train_flops"] / vit["flops_per_step"]))
    assert rows["GET", "adversarial", "unrolled", "flops"]["shared_with"] == "wall"
    table = (Path(out) / "table.md").read_text()
    assert "| GET |" in table and "| ViT-1x |" in table and "implicit" in table and "EDM teacher" in table
    teacher = [p for p in s["pareto"] if p["model"].startswith("EDM")]
    assert [p["setting"] for p in teacher] == ["2 steps", "4 steps"] and all(p["ms_per_image"] > 0 for p in s["pareto"])

    again = run_study(cfg, log=lambda *a: None)
    folders = {r["folder"] for r in plan["runs"]}
    assert again["reused_runs"] == len(folders)
    assert [r["fd"] for r in again["rows"]] == [r["fd"] for r in s["rows"]]

    with pytest.raises(UsageError, match="other settings.*wall_budget_s"):
        run_study(toy(out, wall_budget_s=0.5), log=lambda *a: None)


@pytest.mark.slow  # about 10 s
def test_a_killed_study_resumes_to_the_uninterrupted_results(first, tmp_path, monkeypatch, one_thread):
    cfg, s = first
    shutil.copy(Path(cfg.out) / "plan.json", tmp_path / "plan.json")  # the same steps per run
    shutil.copytree(Path(cfg.out) / "cache", tmp_path / "cache")
    calls, real_step = {"n": 0}, Trainer.train_step
    plan = json.loads((tmp_path / "plan.json").read_text())
    one, two = [r for r in plan["runs"] if r["folder"] == r["name"]][:2]  # the first two trained runs
    kill_at = one["max_steps"] + two["max_steps"] // 2 + 1  # after the second's first milestone

    def dying_step(self):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run_study(toy(tmp_path), log=lambda *a: None)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    partial = tmp_path / "runs" / two["folder"]
    assert (partial / "checkpoint.pt").is_file()  # killed after its first milestone, before its end
    assert str(two["max_steps"]) not in json.loads((partial / "study_eval.json").read_text())

    resumed = run_study(toy(tmp_path), log=lambda *a: None)
    assert resumed["reused_runs"] == 1
    assert [r["fd"] for r in resumed["rows"]] == [r["fd"] for r in s["rows"]]


@pytest.mark.parametrize("argv, message", [(["--seeds", "0"], "--seeds"), (["--wall-budget", "0"], "--wall-budget")])
def test_the_command_refuses_bad_budgets_in_one_line(tmp_path, capsys, argv, message):
    from getkern import cli

    assert cli.main(["study", "--out", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("getkern study: error:") and message in err and not (tmp_path / "s").exists()
