"""The embedded default end to end at toy size (the real run is measured in docs/pipeline.md), and its cache."""

import json

from getkern.apps.demo import ADVERSARIAL, DemoConfig, run_demo
from getkern.checkpoint import load_train_checkpoint


def test_demo_writes_its_outputs_and_reuses_the_cache(tmp_path):
    cfg = DemoConfig(
        out=str(tmp_path),
        num_pairs=120,
        max_steps=4,
        batch_size=16,
        train_iters=2,
        model=dict(
            patch_size=2,
            hidden_size=16,
            depth=1,
            num_heads=2,
            mlp_ratio=2.0,
            deq_mlp_ratio=2.0,
            backend="torch",
            solver_backend="torch",
        ),
        eval_samples=40,
        teacher_eval_steps=(2, 18),
        get_eval_iters=(1, 2),
        get_iters=2,
        progress=False,
    )
    first = run_demo(cfg)
    for name in (
        "summary.json",
        "metrics.md",
        "metrics.png",
        "samples_teacher.png",
        "samples_get.png",
        "samples_teacher_vs_get.png",
        "profile/profile.csv",
        "profile/profile.json",
        "profile/profile.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["teacher"]["network_evaluations"] == 35 and summary["get"]["network_evaluations"] == 1
    # "1 evaluation" beside its sampling time, and the teacher's
    assert summary["teacher"]["ms_per_image"] > 0 and summary["get"]["ms_per_image"] > 0
    assert summary["floor"] < summary["teacher"]["frechet"] < summary["ceiling"]  # the shipped teacher draws digits
    assert {r["setting"] for r in summary["rows"]} >= {"2 steps", "18 steps", "1 iterations", "2 iterations"}
    assert first["reused"] == {"teacher": True, "pairs": False, "get": False}
    assert "|" in (tmp_path / "metrics.md").read_text()
    # the default objective: GET's L1 recipe plus the small adversarial term, discriminator checkpointed
    assert summary["config"]["train_options"] == ADVERSARIAL
    state = load_train_checkpoint(f"{first['artifacts']['get_run']}/checkpoint.pt")
    assert state["objective"], "the discriminator's state is missing from the demo's checkpoint"

    second = run_demo(cfg)
    assert second["reused"] == {"teacher": True, "pairs": True, "get": True}
    assert second["get"]["frechet"] == first["get"]["frechet"]  # the cached GET, sampled from the same seeds
