"""Long jobs that refuse what they cannot do safely and TrainConfig as the one source of the
train options: a run folder owned by one process, resume compared by content and settings,
nonsense options refused before anything is written, torn logs, corrupt checkpoints and shards, file
permissions. Each case checks the one-line message, the exit code and that nothing on disk was lost."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import TINY_TRAIN_MODEL, tiny_teacher, tiny_train_config

from getkern.checkpoint import atomic_write
from getkern.cli import main as cli
from getkern.data import PairDataset, PairFileError, write_pairs
from getkern.distill import TrainConfig, Trainer
from getkern.errors import GetkernError, SettingError, UsageError
from getkern.runlock import LOCK_FILE, FolderBusy, hold_folder

MODEL = TINY_TRAIN_MODEL


# Where the teacher lives, as the manifest records it (resume accepts another install's folder).
TEACHER_META = {"path": "/install/a/tiny_teacher"}


def make_pairs(root, n=24):
    write_pairs(tiny_teacher(meta=TEACHER_META), root, num_pairs=n, shard_size=10, num_steps=2, progress=False)
    return root


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"))


def train_argv(pairs, out, *extra):
    return [
        "train",
        "--pairs",
        str(pairs),
        "--out",
        str(out),
        "--model",
        "",
        "--model-args",
        json.dumps(MODEL),
        "--batch-size",
        "8",
        "--iters",
        "2",
        "--lr",
        "1e-3",
        "--checkpoint-every",
        "3",
        "--sample-every",
        "0",
        "--max-steps",
        "3",
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]


def config(pairs, out, **kw):
    return tiny_train_config(pairs, out, **{"iters": 2, "max_steps": 3, "device": "cpu", **kw})


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"getkern {command}: error: ") and err.count("\n") == 1, err
    return err


def snapshot(folder: Path) -> dict:
    """Every file's bytes except the lock file (whose holder details each run rewrites)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- one process per folder

HOLDER = textwrap.dedent("""
    import sys, time
    from getkern.runlock import hold_folder
    lock = hold_folder(sys.argv[1], sys.argv[2])
    print("held", flush=True)
    time.sleep(600)
""")


def hold_from_subprocess(folder: Path, command: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), command], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_train_on_a_held_run_folder_is_refused_and_a_killed_holder_blocks_nothing(pairs, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(train_argv(pairs, run)) == 0
    before = snapshot(run)
    holder = hold_from_subprocess(run, "getkern train")
    try:
        assert cli(train_argv(pairs, run, "--max-steps", "6")) == 1
        err = one_line_error(capsys, "train")
        assert f"is in use by getkern train (pid {holder.pid} on " in err and "started " in err, err
        assert snapshot(run) == before  # the refused run wiped and appended nothing
    finally:
        holder.kill()  # SIGKILL: the OS drops the lock
        holder.wait()
    assert cli(train_argv(pairs, run, "--max-steps", "6")) == 0
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6]


def test_the_same_process_cannot_hold_a_folder_twice(tmp_path):
    with hold_folder(tmp_path / "f", "first"):
        with pytest.raises(FolderBusy, match=f"in use by first \\(pid {os.getpid()} on "):
            hold_folder(tmp_path / "f", "second")
    hold_folder(tmp_path / "f", "third").release()  # released: free again


def test_a_second_pairs_on_a_held_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "pairs"
    argv = [
        "pairs",
        "--teacher",
        "digits",
        "--out",
        str(out),
        "--num-pairs",
        "4",
        "--shard-size",
        "4",
        "--steps",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    with hold_folder(out, "getkern pairs"):  # a second open file description conflicts like another process
        assert cli(argv) == 1
        assert f"is in use by getkern pairs (pid {os.getpid()}" in one_line_error(capsys, "pairs")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # no manifest, no shard
    assert cli(argv) == 0
    assert len(PairDataset(out)) == 4


RANK_WORKER = textwrap.dedent("""
    import os, sys, torch
    from getkern.data import write_pairs
    from getkern.teacher import EDMPrecond, Teacher
    from getkern.teacher.digits import DigitsMLP
    teacher = Teacher(EDMPrecond(DigitsMLP(hidden=16, layers=1, emb_dim=8)).eval(), (1, 8, 8), 10, {"kind": "test"})
    try:
        write_pairs(teacher, sys.argv[1], num_pairs=4, shard_size=2, num_steps=2, progress=False)
    except Exception as e:
        print(f"rank {os.environ['RANK']}: {type(e).__name__}: {e}", flush=True)
        sys.exit(3)
""")


def test_under_torchrun_rank_0_holds_the_folder_and_its_refusal_stops_every_rank(tmp_path):
    (tmp_path / "worker.py").write_text(RANK_WORKER)
    with hold_folder(tmp_path / "pairs", "getkern pairs"):
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=2",
                str(tmp_path / "worker.py"),
                str(tmp_path / "pairs"),
            ],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert res.returncode != 0
    assert "rank 0: FolderBusy: " in res.stdout and "rank 1: GetkernError: rank 0 refused: " in res.stdout, res.stdout
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir()) == [LOCK_FILE]


# ---------------------------------------------------------------- resume compares data and settings


def test_other_pairs_regenerated_at_the_same_path_are_refused(tmp_path, capsys):
    data, run = make_pairs(tmp_path / "p"), tmp_path / "run"
    assert cli(train_argv(data, run)) == 0
    shutil.rmtree(data)
    make_pairs(data, n=30)
    before = snapshot(run)
    assert cli(train_argv(data, run, "--max-steps", "6")) == 2
    err = one_line_error(capsys, "train")
    assert "pairs: " in err and "another pair set" in err and "num_pairs: 24 in the run, 30 now" in err, err
    assert snapshot(run) == before


def test_the_same_pairs_spelled_otherwise_moved_or_from_another_teacher_install_resume(pairs, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(train_argv(pairs, run)) == 0
    assert cli(train_argv(f"{pairs}/./", run, "--max-steps", "4")) == 0  # spelled otherwise
    moved = tmp_path / "moved"
    shutil.copytree(pairs, moved)
    manifest = json.loads((moved / "manifest.json").read_text())  # as if written by another install
    manifest["teacher"]["path"] = "/install/b/tiny_teacher"
    (moved / "manifest.json").write_text(json.dumps(manifest))
    assert cli(train_argv(moved, run, "--max-steps", "5")) == 0
    assert steps_logged(run) == [1, 2, 3, 4, 5]


def test_changed_settings_are_refused_naming_each_and_allowed_ones_apply(pairs, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(train_argv(pairs, run)) == 0
    before = snapshot(run)
    assert cli(train_argv(pairs, run, "--weight-decay", "0.5", "--ema-decay", "0.5", "--max-steps", "6")) == 2
    err = one_line_error(capsys, "train")
    assert "weight_decay: 0.0 in the run, 0.5 now" in err and "ema_decay: 0.9999 in the run, 0.5 now" in err, err
    assert "max_steps" in err.split("may change only")[1]  # the message lists what may change
    assert snapshot(run) == before
    assert cli(train_argv(pairs, run, "--max-steps", "6", "--checkpoint-every", "2", "--log-every", "2")) == 0
    assert steps_logged(run) == [1, 2, 3, 4, 6]
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["checkpoint_every"] == 2 and saved["weight_decay"] == 0.0 and not (run / "config.json").exists()


def test_cosine_runs_keep_their_length(pairs, tmp_path):
    Trainer(config(pairs, tmp_path, lr_schedule="cosine")).fit()
    with pytest.raises(UsageError, match="max_steps: 3 in the run, 4 now"):
        Trainer(config(pairs, tmp_path, lr_schedule="cosine", max_steps=4)).fit()


def test_an_old_run_folder_resumes(pairs, tmp_path):
    """Before this change: config.json for the settings, no digest sidecar, no pair identity."""
    run = tmp_path / "run"
    Trainer(config(pairs, run)).fit()
    (run / "train_config.json").rename(run / "config.json")
    (run / "checkpoint.pt.sha256").unlink()
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    del state["data"]["pairs"]
    torch.save(state, run / "checkpoint.pt")
    assert [r["step"] for r in Trainer(config(pairs, run, max_steps=4)).fit()] == [4]
    assert (run / "train_config.json").is_file() and not (run / "config.json").exists()
    state = torch.load(run / "checkpoint.pt", weights_only=True)  # the resume recorded the pair set's
    del state["data"]["pairs"]  # identity: make it an old one again
    torch.save(state, run / "checkpoint.pt")
    (run / "checkpoint.pt.sha256").unlink()
    with pytest.raises(UsageError, match="pairs: "):  # the path is all such a checkpoint has
        Trainer(config(make_pairs(tmp_path / "elsewhere"), run, max_steps=5)).fit()


# ---------------------------------------------------------------- nonsense refused before any work


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--warmup-steps", "-5", "--warmup-steps must be an integer >= 0, got -5"),
        ("--ema-decay", "2", "--ema-decay must be a finite number in [0, 1], got 2.0"),
        ("--max-steps", "-1", "--max-steps must be an integer >= 1, got -1"),
        ("--checkpoint-every", "0", "--checkpoint-every must be an integer >= 1, got 0"),
        ("--lr", "nan", "--lr must be a finite number > 0, got nan"),
        ("--batch-size", "6", "batch_size=6 must be divisible by grad_accum=4"),
    ],
)
def test_out_of_range_train_options_are_refused_naming_the_option(pairs, tmp_path, capsys, option, value, message):
    run = tmp_path / "run"
    assert cli(train_argv(pairs, run, "--grad-accum", "4" if option == "--batch-size" else "1", option, value)) == 2
    assert f"error: {message}\n" in one_line_error(capsys, "train")
    assert not run.exists()


def test_train_config_validates_itself_for_the_api_and_saved_settings():
    with pytest.raises(SettingError, match=r"warmup_steps must be an integer >= 0, got -5"):
        TrainConfig(pairs="p", out="o", warmup_steps=-5)
    with pytest.raises(SettingError, match=r"batch_size must be an integer >= 1, got 8.0"):
        TrainConfig(pairs="p", out="o", batch_size=8.0)
    with pytest.raises(SettingError, match="ema_warmup must be True or False"):
        TrainConfig.from_dict({"pairs": "p", "out": "o", "ema_warmup": "yes"})
    with pytest.raises(UsageError, match=r"unknown training settings \['weight_decy'\]"):
        TrainConfig.from_dict({"pairs": "p", "out": "o", "weight_decy": 0.1})
    cfg = TrainConfig(pairs="p", out="o")
    cfg.checkpoint_every = 0  # set after construction: the Trainer validates again
    with pytest.raises(SettingError, match="checkpoint_every"):
        Trainer(cfg)


def test_bad_model_args_are_one_line(pairs, tmp_path, capsys):
    assert cli(train_argv(pairs, tmp_path / "run", "--model-args", "{hidden")) == 2
    assert "--model-args is not JSON" in one_line_error(capsys, "train")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num-pairs", "1000000000000", "--shard-size", "1"], "1,000,000,000,000 shard files, more than 1,000,000"),
        (["--num-pairs", "1000000000000", "--shard-size", "10000000"], "GB free"),
        (
            ["--num-pairs", "4", "--steps", "0"],
            "--steps must be an integer >= 2 (Heun steps from sigma_max to sigma_min), got 0",
        ),
        (["--num-pairs", "0"], "--num-pairs must be an integer >= 1, got 0"),
        (["--num-pairs", "4", "--first-seed", "-1"], "--first-seed must be an integer >= 0, got -1"),
    ],
)
def test_impossible_pair_plans_are_refused_before_anything_is_written(tmp_path, capsys, extra, message):
    out = tmp_path / "pairs"
    assert cli(["pairs", "--teacher", "digits", "--out", str(out), "--no-progress", "--device", "cpu", *extra]) == 2
    assert message in one_line_error(capsys, "pairs")
    assert not out.exists()


def test_the_right_pairs_rerun_after_a_refused_one_succeeds(tmp_path, capsys):
    out = tmp_path / "pairs"
    base = ["pairs", "--teacher", "digits", "--out", str(out), "--num-pairs", "4", "--shard-size", "4", "--no-progress"]
    assert cli(base + ["--steps", "0"]) == 2
    capsys.readouterr()
    assert cli(base + ["--steps", "2"]) == 0


def test_pairs_refuse_a_folder_of_other_files_and_train_refuses_a_pair_folder(pairs, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="notes.txt"):
        write_pairs(tiny_teacher(meta=TEACHER_META), tmp_path, num_pairs=4, shard_size=4, num_steps=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "notes.txt"]
    assert cli(train_argv(pairs, pairs)) == 2
    assert "is a pair folder" in one_line_error(capsys, "train")


# ---------------------------------------------------------------- runs that would get stuck


def test_a_torn_last_log_line_is_dropped_with_a_warning(pairs, tmp_path):
    run = tmp_path / "run"
    Trainer(config(pairs, run)).fit()
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # killed mid-write
    with pytest.warns(UserWarning, match="torn last line 4"):
        Trainer(config(pairs, run, max_steps=4)).fit()
    assert steps_logged(run) == [1, 2, 3, 4]
    lines = (run / "log.jsonl").read_text().splitlines()
    (run / "log.jsonl").write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(GetkernError, match="line 2 is not a log record"):
        Trainer(config(pairs, run, max_steps=5)).fit()


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(pairs, tmp_path):
    run = tmp_path / "run"
    Trainer(config(pairs, run, max_steps=6)).fit()
    assert torch.load(run / "checkpoint.prev.pt", weights_only=True)["step"] == 3
    data = bytearray((run / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped in a tensor
    (run / "checkpoint.pt").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="checkpoint.pt: its sha256 differs.*resuming from the previous checkpoint"):
        records = Trainer(config(pairs, run, max_steps=7)).fit()
    assert [r["step"] for r in records] == [4, 5, 6, 7] and steps_logged(run) == list(range(1, 8))
    assert (run / "checkpoint.corrupt.pt").read_bytes() == bytes(data)  # kept for inspection
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 7
    assert torch.load(run / "checkpoint.prev.pt", weights_only=True)["step"] == 6


def test_a_corrupt_checkpoint_with_none_before_it_is_named(pairs, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(train_argv(pairs, run)) == 0
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])
    assert cli(train_argv(pairs, run, "--max-steps", "4")) == 1
    assert "checkpoint.pt: its sha256 differs" in one_line_error(capsys, "train")


def test_stale_temporaries_are_removed_only_in_the_owned_folder(pairs, tmp_path):
    run = tmp_path / "run"
    for stale in (
        run / ".checkpoint.pt.1a2b.tmp",
        run / "ema" / ".model.safetensors.3c4d.tmp",
        run / "other" / ".file.5e6f.tmp",
    ):
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"half")
    Trainer(config(pairs, run)).fit()
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*.tmp")) == ["other/.file.5e6f.tmp"]


# ---------------------------------------------------------------- permissions and digests


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_permissions_open_would(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "f.txt", lambda p: Path(p).write_text("x"))
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777


def test_run_and_pair_files_are_not_private(pairs, tmp_path):
    old = os.umask(0o022)
    try:
        Trainer(config(pairs, tmp_path / "run")).fit()
        write_pairs(
            tiny_teacher(meta=TEACHER_META), tmp_path / "pairs", num_pairs=4, shard_size=4, num_steps=2, progress=False
        )
    finally:
        os.umask(old)
    for name in (
        "run/checkpoint.pt",
        "run/log.jsonl",
        "run/train_config.json",
        "run/ema/model.safetensors",
        "pairs/manifest.json",
        "pairs/pairs-000000000-000000003.safetensors",
    ):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_a_flipped_byte_in_a_shard_is_named_and_regenerated(pairs, tmp_path, capsys, monkeypatch):
    data = tmp_path / "p"
    shutil.copytree(pairs, data)
    expect = PairDataset(data).tensors()
    shard = data / "pairs-000000010-000000019.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-7] ^= 0x10  # inside the last tensor's bytes: the file still parses
    shard.write_bytes(bytes(raw))
    with pytest.raises(PairFileError, match="pairs-000000010-000000019.safetensors: its sha256 differs"):
        PairDataset(data).tensors()
    assert cli(train_argv(data, tmp_path / "run")) == 1
    assert "pairs-000000010-000000019.safetensors: its sha256 differs" in one_line_error(capsys, "train")
    PairDataset(data, verify=False).tensors()  # the opt-out reads it as it is
    monkeypatch.setenv("GETKERN_VERIFY_PAIRS", "0")
    PairDataset(data).tensors()
    monkeypatch.delenv("GETKERN_VERIFY_PAIRS")
    with pytest.warns(UserWarning, match="generating it again"):
        make_pairs(data)  # the same arguments: only the damaged shard is written again
    for a, b in zip(PairDataset(data).tensors(), expect):
        assert torch.equal(a, b)


def test_manifests_without_digests_still_load(pairs, tmp_path):
    data = tmp_path / "p"
    shutil.copytree(pairs, data)
    manifest = json.loads((data / "manifest.json").read_text())
    for s in manifest["shards"]:
        del s["sha256"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    assert len(PairDataset(data).tensors()[0]) == 24
