"""Distillation trainer: loss, data order, resume after SIGKILL, grad accumulation, DDP with gloo
(2 processes, pairs and training), grad modes, the sample command."""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TINY_TRAIN_MODEL, tiny_teacher, tiny_train_config

from getkern.checkpoint import CheckpointError
from getkern.cli import main as cli
from getkern.data import PairDataset, write_pairs
from getkern.distill import Trainer, fpc_loss
from getkern.errors import UsageError
from getkern.models import GET

MODEL = TINY_TRAIN_MODEL


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    write_pairs(tiny_teacher(), root, num_pairs=24, shard_size=10, num_steps=2, progress=False)
    return root


def config(pairs, out, **kw):
    return tiny_train_config(pairs, out, **{"iters": 3, "max_steps": 6, **kw})


def read_log(run):
    return [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines()]


def test_fpc_loss_weights():
    t = torch.randn(2, 1, 4, 4)
    xs = [torch.randn(2, 1, 4, 4) for _ in range(3)]
    expect = 0.64 * (xs[0] - t).abs().mean() + 0.8 * (xs[1] - t).abs().mean() + (xs[2] - t).abs().mean()
    assert torch.allclose(fpc_loss(xs, t, 0.8), expect)
    assert torch.allclose(fpc_loss(xs[:1], t, 0.8, "l2"), ((xs[0] - t) ** 2).mean())


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_ema_warmup_and_lr_schedule(pairs, tmp_path, schedule):
    trainer = Trainer(
        config(
            pairs,
            tmp_path / "run",
            ema_warmup=True,
            ema_decay=0.999,
            warmup_steps=2,
            lr_schedule=schedule,
            max_steps=10,
        )
    )
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step()
    for p_ema, p, p0 in zip(trainer.ema.parameters(), trainer.model.parameters(), before):
        torch.testing.assert_close(p_ema, 0.1 * p0 + 0.9 * p)  # decay (1 + 0) / (10 + 0) at step 0
    lrs = []  # lrs[k]: the lr of optimiser step k + 1
    for _ in range(9):
        lrs.append(trainer.opt.param_groups[0]["lr"])
        trainer.train_step()
    assert lrs[:2] == pytest.approx([2e-3 / 3, 1e-3])  # warm-up factor (s + 1) / (warmup + 1)
    if schedule == "constant":
        assert lrs[1:] == pytest.approx([1e-3] * 8)
    else:  # half a cosine from step 2 (lr 1e-3) to 0 at step 10
        assert lrs[1:] == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in range(2, 10)])


def test_data_order_visits_every_pair_once_per_epoch(pairs, tmp_path):
    tr = Trainer(config(pairs, tmp_path, batch_size=8))
    stream = torch.cat([tr.batch_indices(s) for s in range(6)])  # 48 = 2 epochs of 24
    assert sorted(stream[:24].tolist()) == list(range(24)) and sorted(stream[24:].tolist()) == list(range(24))
    assert not torch.equal(stream[:24], stream[24:])
    assert torch.equal(tr.batch_indices(4), Trainer(config(pairs, tmp_path / "b")).batch_indices(4))


def test_sigkill_and_resume_reproduce_the_uninterrupted_losses(pairs, tmp_path, one_thread):
    run = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "getkern",
        "train",
        "--pairs",
        str(pairs),
        "--out",
        str(run),
        "--model",
        "",
        "--model-args",
        json.dumps(MODEL),
        "--batch-size",
        "8",
        "--iters",
        "3",
        "--lr",
        "1e-3",
        "--checkpoint-every",
        "3",
        "--sample-every",
        "0",
        "--max-steps",
        "100000",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        log = run / "log.jsonl"
        if (run / "checkpoint.pt").is_file() and log.is_file() and len(log.read_text().splitlines()) >= 8:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"training exited before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    ckpt_step = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert ckpt_step >= 3 and ckpt_step % 3 == 0
    final = ckpt_step + 4
    resumed = Trainer(config(pairs, run, max_steps=final)).fit()
    assert [r["step"] for r in resumed] == list(range(ckpt_step + 1, final + 1))
    straight = Trainer(config(pairs, tmp_path / "straight", max_steps=final)).fit()
    assert [r["loss"] for r in read_log(run)] == [r["loss"] for r in straight]  # bitwise


def test_grad_accumulation_matches_one_big_batch(pairs, tmp_path):
    a = Trainer(config(pairs, tmp_path / "a", max_steps=3))
    b = Trainer(config(pairs, tmp_path / "b", max_steps=3, grad_accum=2))
    la, lb = [r["loss"] for r in a.fit()], [r["loss"] for r in b.fit()]
    assert la == pytest.approx(lb, rel=1e-5)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6)
    assert not torch.equal(a.ema.final_layer.linear.weight, torch.zeros_like(a.ema.final_layer.linear.weight))


def test_resume_refuses_other_settings_and_corrupt_checkpoints(pairs, tmp_path):
    Trainer(config(pairs, tmp_path, max_steps=3)).fit()
    with pytest.raises(UsageError, match="batch_size: 8 in the run, 4 now"):
        Trainer(config(pairs, tmp_path, max_steps=4, batch_size=4)).fit()
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        Trainer(config(pairs, tmp_path, max_steps=4)).fit()


@pytest.mark.parametrize("grad", ["phantom", "implicit"])
def test_other_gradient_modes_train(pairs, tmp_path, grad):
    recs = Trainer(config(pairs, tmp_path, max_steps=2, grad=grad)).fit()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in recs)


def test_sample_command_writes_class_rows_from_both_checkpoint_kinds(pairs, tmp_path):
    Trainer(config(pairs, tmp_path / "run", max_steps=1)).fit()
    assert (
        cli(
            [
                "sample",
                "--checkpoint",
                str(tmp_path / "run" / "checkpoint.pt"),
                "--out",
                str(tmp_path / "s"),
                "--iters",
                "1",
                "3",
                "--per-class",
                "2",
                "--backend",
                "torch",
            ]
        )
        == 0
    )
    import numpy as np

    arr = np.load(tmp_path / "s" / "samples-fixed_point-iters3.npz")
    assert arr["images"].shape == (20, 1, 8, 8) and arr["labels"].tolist() == [k for k in range(10) for _ in range(2)]
    assert (tmp_path / "s" / "samples-fixed_point-iters1.png").stat().st_size > 100
    # a reference-format checkpoint ({'args': Namespace, 'model', 'ema'}) of GET-T/8 on 8x8 grayscale
    model = GET.from_config("GET-T/8", input_size=8, in_channels=1, backend="torch")
    torch.save(
        {
            "args": argparse.Namespace(model="GET-T/8", input_size=8, cond=False, num_classes=10),
            "model": model.state_dict(),
            "ema": model.state_dict(),
        },
        tmp_path / "ref.pt",
    )
    assert (
        cli(
            [
                "sample",
                "--checkpoint",
                str(tmp_path / "ref.pt"),
                "--out",
                str(tmp_path / "r"),
                "--num",
                "4",
                "--iters",
                "1",
                "--backend",
                "torch",
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "r" / "samples-fixed_point-iters1.npz")["images"].shape == (4, 1, 8, 8)


@pytest.mark.slow  # two torchrun ranks: 9-15 s
def test_torchrun_gloo_two_processes_pairs_and_training(pairs, tmp_path, one_thread):
    """2 ranks: each writes its own shards (the set equals a 1-process run's) and DDP training with
    batch 8 = 2 ranks x 4 gives the 1-process losses and weights."""
    script = Path(__file__).with_name("ddp_worker.py")  # builds helpers.tiny_teacher(), as below
    cfg = config(tmp_path / "pairs", tmp_path / "ddp_run", max_steps=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(tmp_path),
            json.dumps(cfg.to_dict()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    write_pairs(tiny_teacher(), tmp_path / "single_pairs", num_pairs=24, shard_size=5, num_steps=2, progress=False)
    for a, b in zip(PairDataset(tmp_path / "pairs").tensors(), PairDataset(tmp_path / "single_pairs").tensors()):
        assert torch.equal(a, b)
    single = Trainer(config(tmp_path / "single_pairs", tmp_path / "single_run", max_steps=3))
    losses = [r["loss"] for r in single.fit()]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert ddp["losses"] == pytest.approx(losses, rel=1e-5)
    for k, v in single.model.state_dict().items():
        assert torch.allclose(ddp["model"][k], v, rtol=1e-4, atol=1e-6), k
