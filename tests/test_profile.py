"""`getkern profile` and profile_model on a tiny GET (backend="torch"), the report's answer, the CPU
memory measure, and bad inputs rejected before any work."""

import argparse
import csv
import json
import re

import numpy as np
import pytest
import torch
from helpers import tiny_get

from getkern import GET, cli
from getkern.checkpoint import CheckpointError
from getkern.commands.profile import load_model
from getkern.profiling import REFERENCE_SETTING, ProfileReport, profile_model
from getkern.profiling.memory import LiveTensorPeak

TINY = dict(
    input_size=8, patch_size=4, in_channels=1, hidden_size=16, depth=1, deq_depth=1, num_heads=2, num_classes=10
)


PROFILED = dict(TINY, solver_backend="torch", std=0.3)  # helpers.tiny_get's arguments


class RecordingMetric:
    """Stands in for a quality metric: distance = mean squared sample value; keeps what it saw."""

    name = "test distance"

    def __init__(self):
        self.seen = []

    def __call__(self, images):
        self.seen.append(images.clone())
        return type("Q", (), {"as_dict": lambda _: {"distance": float(images.pow(2).mean()), "kid": None}})()


def test_profile_model_same_inputs_every_setting():
    model = tiny_get(**PROFILED, cond=True)
    metric = RecordingMetric()
    report = profile_model(
        model,
        metric,
        iters=[3],
        solvers=["fixed_point", "anderson"],
        num_samples=6,
        batch_size=4,
        seed=7,
        tol=None,
        progress=False,
    )
    assert [(r["solver"], r["iters"]) for r in report.rows] == [
        ("fixed_point", 3),
        ("fixed_point", 6),
        ("anderson", 3),
        ("anderson", 6),
    ]
    # documented inputs: noise then z0 from one CPU generator seeded with `seed`, labels i % classes
    gen = torch.Generator().manual_seed(7)
    noise = torch.randn(6, 1, 8, 8, generator=gen)
    z0 = torch.randn(6, model.x_embedder.num_patches, 16, generator=gen)
    for seen, solver in ((metric.seen[0], "fixed_point"), (metric.seen[2], "anderson")):
        with torch.no_grad():
            expected = model(noise, torch.arange(6) % 10, iters=3, solver=solver, z0=z0, tol=None)
        torch.testing.assert_close(seen, expected)
    row = report.rows[0]
    assert row["nfev"] == 3 and row["residual"] > 0 and row["peak_memory_mb"] > 0
    assert row["kernels"] == "torch" and row["solver_backend"] == "torch"


def test_answer_from_rows():
    def row(solver, iters, distance, sec):
        return {"solver": solver, "iters": iters, "distance": distance, "sec_per_image": sec}

    rows = [
        row("fixed_point", 2, 30.0, 2.0),
        row("fixed_point", 4, 10.4, 4.0),
        row("fixed_point", 6, 10.0, 6.0),
        row("anderson", 2, 10.2, 3.0),
        row("anderson", 3, 9.0, 4.5),
        row("broken", 9, 50.0, 1.0),
    ]
    report = ProfileReport(rows, "FD", quality_tolerance=0.05)
    best = report.fewest_iterations()
    assert best["fixed_point"]["iters"] == 4 and best["anderson"]["iters"] == 2 and best["broken"] is None
    text = report.answer()
    assert "anderson: 2 iterations" in text and "saves 50%" in text and "within 9 iterations" in text


def test_live_tensor_peak():
    with LiveTensorPeak() as m:
        a = torch.empty(1000, dtype=torch.float32).fill_(1)  # 4 kB
        b = a + 1  # 8 kB alive
        del a
        c = b.view(10, 100) * 2  # 8 kB alive (a freed)
        del b, c
    assert m.peak_bytes == 8000 and m.live_bytes == 0


def test_live_tensor_peak_does_not_count_views_of_tensors_made_before():
    weight = torch.randn(300, 200)
    with LiveTensorPeak() as m:
        y = torch.nn.functional.linear(torch.ones(2, 200), weight)  # dispatches weight.t(): a view
        weight.t().mul_(1.0)  # in place on an old storage
    assert m.peak_bytes == 2 * 200 * 4 + 2 * 300 * 4 and m.live_bytes == 2 * 300 * 4, (m.peak_bytes, m.live_bytes)
    del y


def test_profile_command_on_checkpoint(tmp_path):
    tiny_get(**PROFILED).save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "profile",
                "--checkpoint",
                str(tmp_path / "ckpt"),
                "--iters",
                "1",
                "2",
                "--solvers",
                "fixed_point",
                "anderson",
                "--samples",
                "12",
                "--batch-size",
                "6",
                "--backend",
                "torch",
                "--solver-backend",
                "torch",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(out / "profile.csv")))
    assert len(rows) == 6 and {r["solver"] for r in rows} == {"fixed_point", "anderson"}
    assert all(np.isfinite(float(r["distance"])) and float(r["images_per_sec"]) > 0 for r in rows)
    payload = json.loads((out / "profile.json").read_text())
    assert payload["metric"] == "digits-classifier Frechet distance"
    assert payload["reference_setting"] == list(REFERENCE_SETTING) and "Reference" in payload["answer"]
    assert (out / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_fail_before_work(tmp_path, capsys):
    def expect(argv, code, match):
        assert cli.main(["profile", "--out", str(tmp_path / "out"), *argv]) == code
        err = capsys.readouterr().err
        assert err.startswith("getkern profile: error: ") and err.count("\n") == 1 and re.search(match, err), err

    (tmp_path / "weights.txt").write_text("?")
    expect(["--checkpoint", str(tmp_path / "weights.txt")], 1, "unknown checkpoint format")
    expect(["--iters", "0", "2"], 2, "--iters must be an integer >= 1, got 0")  # when parsing
    expect(["--solvers", "newton"], 2, "--solvers: invalid choice: 'newton'")
    expect(["--tol", "nan"], 2, "--tol must be a finite number >= 0, got 'nan'")
    expect(["--seed", "-1"], 2, "--seed must be an integer >= 0, got -1")
    expect(["--samples", "601"], 2, "2..600 samples")
    np.savez(tmp_path / "s.npz", mu=np.zeros(7), sigma=np.eye(7))
    expect(
        [
            "--in-channels",
            "3",
            "--ref-stats",
            str(tmp_path / "s.npz"),
            "--inception-weights",
            str(tmp_path / "missing.pt"),
        ],
        1,
        "Inception weights .* do not exist",
    )
    assert cli.main(["profile", "--out", str(tmp_path / "weights.txt")]) == 2  # checked before any sampling
    assert "exists and is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_checkpoint_formats(tmp_path):
    model = tiny_get(**PROFILED)
    model.save_pretrained(tmp_path / "run" / "ema")
    args = argparse.Namespace(checkpoint=tmp_path / "run", seed=0)
    loaded, origin = load_model(args)
    assert "training run" in origin
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())
    # the reference's format: torch.save({'args': Namespace, 'ema': state_dict, ...})
    reference = GET.from_config("GET-T/4", input_size=8, in_channels=1)
    torch.save(
        {
            "args": argparse.Namespace(model="GET-T/4", input_size=8, cond=False, num_classes=10),
            "ema": reference.state_dict(),
            "model": reference.state_dict(),
        },
        tmp_path / "ref.pth",
    )
    loaded, origin = load_model(argparse.Namespace(checkpoint=tmp_path / "ref.pth", seed=0))
    assert origin.startswith("reference checkpoint") and loaded.patch_size == 4
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(argparse.Namespace(checkpoint=tmp_path / "nothing", seed=0))


def _rows(distances, residuals, ceiling=None, solver="fixed_point", iters=(1, 2, 6)):
    return [
        {
            "solver": solver,
            "iters": k,
            "distance": d,
            "kid": None,
            "residual": r,
            "nfev": float(k),
            "sec_per_image": 1e-3 * k,
            "images_per_sec": 1e3 / k,
            "peak_memory_mb": 1.0,
            "kernels": "torch",
            "solver_backend": "torch",
            **({} if ceiling is None else {"floor": 2.0, "ceiling": ceiling}),
        }
        for k, d, r in zip(iters, distances, residuals)
    ]


def test_warnings_from_rows():
    healthy = ProfileReport(_rows([30.0, 10.0, 9.9], [1.0, 0.3, 0.05], ceiling=760.0), "FD", {"tol": None})
    assert healthy.warnings() == [] and "WARNING" not in healthy.answer() and "not meaningful" not in healthy.answer()
    broken = ProfileReport(_rows([3212.0, 3212.0, 3212.0], [129.0, 129.0, 128.5], ceiling=760.0), "FD", {"tol": 1e-3})
    w = broken.warnings()
    assert len(w) == 2 and w[0].startswith("every setting scores worse than noise") and "760.0" in w[0]
    assert w[1].startswith("fixed_point does not converge") and "129 at 1 iteration, 128 at 6 iterations" in w[1]
    text = broken.answer()
    assert (
        text.startswith("WARNING: every setting")
        and "saves 83% of the reference's time (not meaningful: worse than noise, the solver does not converge)."
        in text
    )
    # some settings beyond the ceiling; a residual under the early-exit tolerance counts as converged
    mixed = ProfileReport(_rows([900.0, 20.0, 19.0], [1e-4, 1e-4, 1e-4], ceiling=760.0), "FD", {"tol": 1e-3})
    assert mixed.warnings() == [
        "1 of 3 settings (fixed_point 1) scores worse than noise (FD 900.0 or more, noise "
        "ceiling 760.0): the samples are unusable (an untrained or broken model?), so "
        "comparing the times of these settings says nothing"
    ]
    # no ceiling (FID), one iteration count: nothing to judge
    assert ProfileReport(_rows([5.0], [3.0], iters=(6,)), "FID").warnings() == []


def test_a_random_get_is_worse_than_noise_and_the_report_says_so(tmp_path):
    from getkern.metrics import default_digits_metric

    torch.manual_seed(0)
    model = GET(**TINY, backend="torch", solver_backend="torch")  # untrained: blank images
    report = profile_model(
        model,
        default_digits_metric(),
        iters=[1, 2],
        solvers=["fixed_point"],
        num_samples=20,
        batch_size=20,
        tol=None,
        progress=False,
    )
    row = report.reference_row()
    assert row["distance"] > row["ceiling"] > row["floor"]
    assert report.beyond_ceiling() == report.rows and "fixed_point" in report.not_converging()
    answer = report.answer()
    assert answer.startswith("WARNING: every setting scores worse than noise") and "does not converge" in answer
    assert "not meaningful" in answer.splitlines()[-1]
    fig = report.figure()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "WARNING" in ax.get_title(loc="left")
    levels = {round(line.get_ydata()[0], 6) for line in ax.get_lines() if len(set(line.get_ydata())) == 1}
    assert {round(row["floor"], 6), round(row["ceiling"], 6)} <= levels
    labels = ax.get_legend_handles_labels()[1]
    assert "ceiling (Gaussian noise)" in labels and "floor (real held-out images)" in labels
    import matplotlib.pyplot as plt

    plt.close(fig)
    paths = report.write(tmp_path / "out")
    payload = json.loads(paths["json"].read_text())
    assert payload["warnings"] == report.warnings() and payload["answer"].startswith("WARNING")
    again = ProfileReport.from_json(paths["json"])
    assert again.rows == payload["rows"] and again.answer() == report.answer()
