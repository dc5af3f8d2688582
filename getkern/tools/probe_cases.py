"""The probes of getkern/tools/probes.py and the fixtures they share.

Classes: ``numbers`` (nonsense values of every numeric flag of every command), ``api-args`` (the same
for GET, ViT, forward, getkern.sample, getkern.load, deq.solve, TrainConfig), ``memory`` (tiny config
files asking for huge models next to small weights), ``corrupt`` (bit flips, truncation, garbage in each
file each loader reads), ``out`` (output-location mistakes for every command), ``concurrency`` (a second
process on a held folder, stale locks), ``resume`` (other data, changed settings, the same data spelled
otherwise), ``crash`` (states a killed run leaves, and real SIGKILLs), ``umask`` (file permissions),
``pickle`` (payloads that would write a marker file when unpickled), ``solver`` (Anderson never slower than
the fixed point, no NaN leak between samples), ``commands`` (checkpoint kinds each command takes, usage).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from getkern.tools.probes import Ctx, Probe, Result, run_cli

MODEL = dict(
    hidden_size=16, depth=1, num_heads=2, deq_mlp_ratio=2, mlp_ratio=2, backend="torch", solver_backend="torch"
)
MODEL_JSON = json.dumps(MODEL)
TRAIN_COMMON = [
    "--model",
    "",
    "--model-args",
    MODEL_JSON,
    "--batch-size",
    "4",
    "--iters",
    "2",
    "--lr",
    "1e-3",
    "--checkpoint-every",
    "1",
    "--sample-every",
    "0",
    "--max-steps",
    "2",
    "--no-progress",
    "--device",
    "cpu",
]
PAIRS_COMMON = [
    "--num-pairs",
    "8",
    "--steps",
    "2",
    "--shard-size",
    "4",
    "--batch-size",
    "8",
    "--device",
    "cpu",
    "--no-progress",
]
SHARD2 = "pairs-000000004-000000007.safetensors"  # the fixture pair set's second shard
MAX_SEED = 2**63 - 1


def train(pairs="{fx}/pairs", out="{d}/run", *extra) -> list[str]:
    return ["train", "--pairs", pairs, "--out", out, *TRAIN_COMMON, *extra]


def pairs(out="{d}/p", *extra, teacher="digits") -> list[str]:
    return ["pairs", "--teacher", teacher, "--out", out, *PAIRS_COMMON, *extra]


def sample(ckpt="{fx}/model", out="{d}/s", *extra) -> list[str]:
    return [
        "sample",
        "--checkpoint",
        ckpt,
        "--out",
        out,
        "--num",
        "4",
        "--iters",
        "1",
        "--device",
        "cpu",
        "--backend",
        "torch",
        *extra,
    ]


def profile(ckpt: str | None = "{fx}/model", out="{d}/prof", *extra) -> list[str]:
    return [
        "profile",
        *(["--checkpoint", ckpt] if ckpt else []),
        "--out",
        out,
        "--iters",
        "1",
        "--samples",
        "4",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--backend",
        "torch",
        "--solver-backend",
        "torch",
        "--no-progress",
        "--solvers",
        "fixed_point",
        *extra,
    ]


def fid_stats(inp="{fx}/images.npy", out="{d}/stats.npz", *extra) -> list[str]:
    return [
        "fid-stats",
        inp,
        "--out",
        out,
        "--inception-weights",
        "{fx}/tiny_inception.pt",
        "--device",
        "cpu",
        "--no-progress",
        "--batch-size",
        "4",
        *extra,
    ]


def demo(out="{d}/demo", *extra) -> list[str]:
    return ["demo", "--out", out, "--num-pairs", "8", "--max-steps", "1", "--no-profile", "--no-progress", *extra]


def gpu_validate(out="{d}/gv", *extra) -> list[str]:
    return ["gpu-validate", "--out", out, "--no-build", "--no-warm", *extra]


# ---------------------------------------------------------------- fixtures


def _must(argv: list[str]) -> None:
    r = run_cli(argv, timeout=300)
    if r.rc != 0:
        raise RuntimeError(f"fixture command {argv[:1]} failed ({r.rc}): {r.stderr.strip()[-500:]} {r.exc_text[-800:]}")


class TinyInception:
    """A TorchScript stand-in for Inception: 8 features per image (channel means, maxima, two minima)."""

    @staticmethod
    def build():
        import torch

        class Net(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.cat([x.mean((2, 3)), x.amax((2, 3)), x.amin((2, 3))[:, :2]], 1)

        return torch.jit.script(Net())


def build_fixtures(fx: Path) -> None:
    """Everything the probes read: pair sets, training runs, model folders, arrays; about 10 s on a CPU."""
    import numpy as np
    import torch

    from getkern.models import GET, ViT

    fx.mkdir(parents=True)
    _must(pairs(str(fx / "pairs")))
    _must(pairs(str(fx / "pairs_other"), "--first-seed", "100"))
    _must(pairs(str(fx / "pairs12"), "--num-pairs", "12"))
    _must(pairs(str(fx / "pairs_guided"), "--guidance-range", "0", "2", teacher="digits-guided"))
    _must(train(str(fx / "pairs"), str(fx / "run")))
    _must(train(str(fx / "pairs"), str(fx / "run3"), "--max-steps", "3"))
    _must(train(str(fx / "pairs_guided"), str(fx / "run_guided"), "--max-steps", "1"))
    torch.manual_seed(0)
    GET(input_size=8, in_channels=1, **MODEL).save_pretrained(fx / "model")
    GET(input_size=8, in_channels=1, cond=True, **MODEL).save_pretrained(fx / "model_cond")
    ViT(
        input_size=8, in_channels=1, hidden_size=16, depth=1, num_heads=2, mlp_ratio=2, backend="torch"
    ).save_pretrained(fx / "vit")
    ref = GET.from_config("GET-T/8", input_size=8, in_channels=1, backend="torch")
    sd = ref.state_dict()
    torch.save(
        {"args": argparse.Namespace(model="GET-T/8", input_size=8, cond=False, num_classes=10), "model": sd, "ema": sd},
        fx / "ref.pth",
    )
    rng = np.random.default_rng(0)
    np.save(fx / "images.npy", rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8))
    TinyInception.build().save(str(fx / "tiny_inception.pt"))
    _must([a.replace("{fx}", str(fx)) for a in fid_stats(str(fx / "images.npy"), str(fx / "stats.npz"))])
    shutil.copy(fx / "run" / "checkpoint.prev.pt", fx / "run_prev.pt")  # the run at step 1 (a fallback's result)
    shutil.copytree(fx / "run" / "ema", fx / "student")  # a save_pretrained folder --init accepts for these pairs
    from getkern.teacher import SHIPPED_DIGITS_TEACHER

    shutil.copytree(SHIPPED_DIGITS_TEACHER, fx / "teacher")
    (fx / "file.txt").write_text("a user's file\n")


def fixture_digest(fx: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(fx.rglob("*")):
        if p.is_file() and p.name != ".getkern.lock":
            h.update(str(p.relative_to(fx)).encode() + p.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- helpers for setups and checks


def steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def checkpoint_state(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def same_tensors(a: dict, b: dict) -> str | None:
    if sorted(a) != sorted(b):
        return f"keys differ: {sorted(set(a) ^ set(b))[:4]}"
    worst = max((float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()), default=0.0)
    return None if worst == 0 else f"weights differ from the reference by up to {worst:.3g}"


def run_ok(steps: list[int], run: str = "run", equal: str | None = None):
    """Check: the run's log lists ``steps``, its checkpoint is at the last, and (``equal``) its weights are
    those of the uninterrupted fixture run ``equal``."""

    def check(ctx: Ctx, r: Result) -> str | None:
        folder = ctx.d / run
        got = steps_logged(folder)
        state = checkpoint_state(folder / "checkpoint.pt")
        if got != steps or int(state["step"]) != steps[-1]:
            return f"log steps {got}, checkpoint step {state['step']}; expected {steps}"
        if equal:
            ref = checkpoint_state(ctx.fx / equal / "checkpoint.pt")
            for key in ("model", "ema"):
                problem = same_tensors(state[key], ref[key])
                if problem:
                    return f"{key}: {problem} (an uninterrupted run to step {steps[-1]})"
        return None

    return check


def reference_images(ctx: Ctx, source: str, *, num=4, iters=1, guidance=None, labels=None, per_class=None):
    """What `getkern sample` must produce for fixture ``source`` (computed with the API, cached)."""
    key = (source, num, iters, guidance, per_class)
    if key not in ctx.shared:
        from getkern.loading import load
        from getkern.sampling import class_rows, sample_get

        model = load(ctx.fx / source, backend="torch")
        if model.cond:
            labels = class_rows(model.num_classes, per_class or 10)
            num = len(labels)
        images, _ = sample_get(model, num, seed=0, iters=iters, solver="fixed_point", labels=labels, guidance=guidance)
        ctx.shared[key] = images.numpy()
    return ctx.shared[key]


def sample_ok(
    source: str,
    *,
    out="s",
    name="samples-fixed_point-iters1",
    num=4,
    per_class=None,
    guidance=None,
    fallback: str | None = None,
):
    """Check: the sampled array equals the API's samples of fixture ``source`` (or, after a warning naming
    the checkpoint, those of ``fallback``)."""

    def check(ctx: Ctx, r: Result) -> str | None:
        import numpy as np

        path = ctx.d / out / f"{name}.npz"
        if not path.is_file():
            return f"{path.name} was not written"
        with np.load(path) as data:
            got = data["images"]
        want = reference_images(ctx, source, num=num, per_class=per_class, guidance=guidance)
        if got.shape == want.shape and np.array_equal(got, want):
            return None
        if fallback and any("checkpoint" in w for w in r.warnings):
            alt = reference_images(ctx, fallback, num=num, per_class=per_class, guidance=guidance)
            if got.shape == alt.shape and np.array_equal(got, alt):
                return None
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else f"shape {got.shape} vs {want.shape}"
        return f"images differ from {source}'s (max abs diff {diff}); warnings: {r.warnings[:1]}"

    return check


def profile_ok(origin: str | None = None):
    def check(ctx: Ctx, r: Result) -> str | None:
        report = json.loads((ctx.d / "prof" / "profile.json").read_text())
        if not report.get("rows"):
            return "profile.json has no rows"
        if origin and origin not in report["context"]["model"]:
            return f"profiled {report['context']['model']!r}, expected {origin}"
        return None

    return check


def model_ok(source: str, fallback: str | None = None):
    """Check for API loads: the returned model's weights equal fixture ``source``'s EMA weights."""

    def check(ctx: Ctx, r: Result) -> str | None:
        from getkern.loading import load

        got = r.value.state_dict()
        problem = same_tensors(got, load(ctx.fx / source, backend="torch").state_dict())
        if problem and fallback and any("checkpoint" in w for w in r.warnings):
            problem = same_tensors(got, load(ctx.fx / fallback, backend="torch").state_dict())
        return problem

    return check


def pairs_ok(folder="p", ref="pairs"):
    def check(ctx: Ctx, r: Result) -> str | None:
        import torch

        from getkern.data import PairDataset

        got, want = PairDataset(ctx.d / folder).tensors(), PairDataset(ctx.fx / ref).tensors()
        for a, b in zip(got, want):
            if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
                return f"the pair set differs from a clean generation of the same plan ({ref})"
        return None

    return check


def stats_ok(dim=8):
    def check(ctx: Ctx, r: Result) -> str | None:
        import numpy as np

        with np.load(ctx.d / "stats.npz") as s:
            if s["mu"].shape != (dim,) or not np.isfinite(s["mu"]).all():
                return f"mu has shape {s['mu'].shape}"
        return None

    return check


def files_exist(*names: str):
    def check(ctx: Ctx, r: Result) -> str | None:
        missing = [n for n in names if not (ctx.d / n).exists()]
        return f"missing {missing}" if missing else None

    return check


def copies(*names: str, then=None):
    """A setup that copies fixtures ``names`` into the probe folder, then runs ``then(ctx)``."""

    def setup(ctx: Ctx) -> None:
        for n in names:
            ctx.copy(n)
        if then is not None:
            then(ctx)

    return setup


# ---------------------------------------------------------------- corruptions


def _flip(path: Path, offset: int, bit: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= bit
    path.write_bytes(bytes(data))


def _zip_member(path: Path, pick) -> tuple[int, int]:
    """(data offset, size) of the member of zip ``path`` that ``pick(infos)`` returns."""
    with zipfile.ZipFile(path) as z:
        info = pick(z.infolist())
    raw = path.read_bytes()
    off = info.header_offset
    name_len, extra_len = (
        int.from_bytes(raw[off + 26 : off + 28], "little"),
        int.from_bytes(raw[off + 28 : off + 30], "little"),
    )
    return off + 30 + name_len + extra_len, info.file_size


def tensor_offset(path: Path) -> int:
    """A byte in the middle of the tensor data (safetensors, torch zip), else the middle of the file."""
    raw = path.read_bytes()
    if path.suffix == ".safetensors":
        start = 8 + int.from_bytes(raw[:8], "little")
        return start + (len(raw) - start) // 2
    if zipfile.is_zipfile(path):
        start, size = _zip_member(
            path,
            lambda infos: max(
                (i for i in infos if "/data/" in i.filename and not i.filename.endswith(".pkl")),
                key=lambda i: i.file_size,
            ),
        )
        return start + size // 2
    return len(raw) // 2


def meta_offset(path: Path) -> int:
    """A byte in the metadata: a safetensors JSON header, a torch zip's data.pkl, a .npy header."""
    raw = path.read_bytes()
    if path.suffix == ".safetensors":
        return 8 + int.from_bytes(raw[:8], "little") // 2
    if zipfile.is_zipfile(path):
        start, size = _zip_member(path, lambda infos: next(i for i in infos if i.filename.endswith("data.pkl")))
        return start + size // 2
    return 20


CORRUPTIONS = {
    "flip-data": lambda p: _flip(p, tensor_offset(p)),
    "flip-meta": lambda p: _flip(p, meta_offset(p)),
    "flip-first": lambda p: _flip(p, 0),
    "flip-last": lambda p: _flip(p, -1),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(b"this is not what you think it is\n" * 8),
}
SHORT_CORRUPTIONS = ("flip-data", "truncated", "garbage")


def corrupt(rel: str, kind: str):
    return lambda ctx: CORRUPTIONS[kind](ctx.d / rel)


def edit_json(rel: str, edit):
    """Rewrite JSON file ``rel``: ``edit(obj)`` returns the new object, or a str written as is."""

    def apply(ctx: Ctx) -> None:
        path = ctx.d / rel
        new = edit(json.loads(path.read_text()))
        path.write_text(new if isinstance(new, str) else json.dumps(new, indent=2))

    return apply


def with_(**fields):
    return lambda obj: {**obj, **fields}


def without(*keys):
    return lambda obj: {k: v for k, v in obj.items() if k not in keys}


def chain(*fns):
    def run(ctx):
        for f in fns:
            f(ctx)

    return run


# ---------------------------------------------------------------- pickle payloads


class _System:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _Exec:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import builtins

        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


PAYLOADS = {"system": _System, "exec": _Exec}


def evil_file(rel: str, layout: str, payload: str = "system"):
    """Write a file at ``rel`` whose unpickling would run ``payload`` (creating the probe's marker)."""

    def make(ctx: Ctx) -> None:
        import numpy as np
        import torch

        path = ctx.d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        bomb = PAYLOADS[payload](str(ctx.marker))
        if layout == "ref-args":
            torch.save({"args": bomb, "model": {}, "ema": {}}, path)
        elif layout == "top":
            torch.save(bomb, path)
        elif layout == "legacy":
            torch.save({"args": bomb, "ema": {}}, path, _use_new_zipfile_serialization=False)
        elif layout == "raw-pickle":
            path.write_bytes(pickle.dumps({"args": bomb, "ema": {}}))
        elif layout == "in-state":
            state = checkpoint_state(ctx.fx / "run" / "checkpoint.pt")
            state["ema"]["pos_embed_extra"] = bomb
            torch.save(state, path)
        elif layout == "train-ckpt":  # a run's checkpoint.pt replaced, its digest sidecar matching
            state = checkpoint_state(ctx.fx / "run" / "checkpoint.pt")
            state["objective"] = {"state": bomb}
            torch.save(state, path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            (path.parent / (path.name + ".sha256")).write_text(digest + "\n")
        elif layout == "npy-object":
            np.save(path, np.array([bomb, 1], dtype=object), allow_pickle=True)
        elif layout == "npz-object":
            with open(path, "wb") as f:
                np.savez(f, mu=np.array([bomb], dtype=object), sigma=np.zeros((1, 1)))
        else:
            raise ValueError(layout)

    return make


# ---------------------------------------------------------------- the catalogue


def catalogue() -> list[Probe]:
    probes: list[Probe] = []
    for make in (
        numbers_cli,
        api_args,
        memory,
        corrupt_files,
        out_locations,
        concurrency,
        resume,
        crash_states,
        umask_probes,
        pickles,
        solver,
        commands,
    ):
        probes += make()
    return probes


def _fmt(v) -> str:
    return str(v)


def numbers_cli() -> list[Probe]:
    from getkern.commands.train import flag
    from getkern.distill.config import TrainConfig

    out: list[Probe] = []
    quick = {("--warmup-steps", "-5"), ("--ema-decay", "2"), ("--max-steps", "-1")}
    for f in dataclasses.fields(TrainConfig):
        default, m = f.default, f.metadata
        if isinstance(default, bool) or not isinstance(default, (int, float)) or m.get("choices"):
            continue
        bad: list = []
        if isinstance(default, int):
            lo = m["low"]
            bad += [lo - 1] + ([-1] if lo - 1 != -1 else [-5]) + ([m["high"] + 1] if m["high"] else []) + ["1.5"]
        else:
            if m["above"] is not None:
                bad += [m["above"], m["above"] - 1]
            if m["low"] is not None:
                bad += [m["low"] - 1]
            if m["high"] is not None:
                bad += [m["high"] + 1]
            bad += ["nan", "inf"]
        for v in dict.fromkeys(_fmt(b) for b in bad):
            fl = flag(f.name)
            out.append(
                Probe(
                    f"numbers/train/{fl}={v}",
                    "numbers",
                    "train",
                    train("{fx}/pairs", "{d}/run", fl, v),
                    names=(fl, f.name),
                    untouched=("{d}/run",),
                    quick=(fl, v) in quick,
                )
            )
    specials = [
        (
            "batch-6-accum-4",
            ["--batch-size", "6", "--grad-accum", "4"],
            ("batch_size", "--batch-size", "grad_accum"),
            "refuse",
        ),
        ("no-objective", ["--regression-weight", "0"], ("regression_weight", "--regression-weight"), "refuse"),
        ("lr-1e300", ["--lr", "1e300"], ("--lr", "lr", "loss"), "either"),
        ("model-args-num_heads=-2", ["--model-args", json.dumps({**MODEL, "num_heads": -2})], ("num_heads",), "refuse"),
        ("model-args-num_heads=0", ["--model-args", json.dumps({**MODEL, "num_heads": 0})], ("num_heads",), "refuse"),
        ("model-args-cond=yes", ["--model-args", json.dumps({**MODEL, "cond": "yes"})], ("cond",), "refuse"),
        (
            "model-args-hidden=15",
            ["--model-args", json.dumps({**MODEL, "hidden_size": 15})],
            ("hidden_size",),
            "refuse",
        ),
        (
            "model-args-hidden=inf",
            ["--model-args", MODEL_JSON[:-1] + ', "hidden_size": 1e400}'],
            ("hidden_size",),
            "refuse",
        ),
        ("model-args-patch=3", ["--model-args", json.dumps({**MODEL, "patch_size": 3})], ("patch_size",), "refuse"),
        ("model-args-depth=-1", ["--model-args", json.dumps({**MODEL, "depth": -1})], ("depth",), "refuse"),
        ("model-args-mlp=NaN", ["--model-args", MODEL_JSON[:-1] + ', "mlp_ratio": NaN}'], ("mlp_ratio",), "refuse"),
        (
            "model-args-input_size=16",
            ["--model-args", json.dumps({**MODEL, "input_size": 16})],
            ("input_size",),
            "refuse",
        ),
        (
            "model-args-in_channels=3",
            ["--model-args", json.dumps({**MODEL, "in_channels": 3})],
            ("in_channels",),
            "refuse",
        ),
        ("model-args-unknown-key", ["--model-args", json.dumps({**MODEL, "bogus": 1})], ("bogus",), "refuse"),
        (
            "model-args-guidance-unguided",
            ["--model-args", json.dumps({**MODEL, "guidance_range": [0, 1]})],
            ("guidance_range",),
            "refuse",
        ),
        ("model-args-name=GET-Q/2", ["--model-args", json.dumps({"name": "GET-Q/2"})], ("GET-Q/2",), "refuse"),
        ("model-args-name=5", ["--model-args", json.dumps({"name": 5})], ("name", "model"), "refuse"),
        ("model-args-list", ["--model-args", "[1, 2]"], ("--model-args",), "refuse"),
        ("model-args-not-json", ["--model-args", "{hidden"], ("--model-args",), "refuse"),
        ("model=GET-Q/2", ["--model", "GET-Q/2"], ("GET-Q/2",), "refuse"),
        ("model=ViT-S/3", ["--model", "ViT-S/3"], ("ViT-S/3",), "refuse"),
        ("freeze-unknown", ["--freeze", "no_such_module"], ("no_such_module", "freeze"), "refuse"),
        ("freeze-empty", ["--freeze", ""], ("freeze",), "refuse"),
        ("init-missing", ["--init", "{d}/missing"], ("missing",), "refuse"),
        ("init-vit", ["--init", "{fx}/vit"], ("vit", "ViT"), "refuse"),
        ("loss-l3", ["--loss", "l3"], ("--loss",), "refuse"),
        ("device-nonsense", ["--device", "nonsense"], ("nonsense", "device"), "refuse"),
        ("device-cuda-absent", ["--device", "cuda:7"], ("cuda",), "either"),
        ("pairs-missing", ["--pairs", "{d}/missing"], ("missing",), "refuse"),
        ("pairs-is-model", ["--pairs", "{fx}/model"], ("model", "manifest", "pairs"), "refuse"),
        ("pairs-empty", ["--pairs", ""], ("pairs",), "refuse"),
    ]
    for name, extra, names, want in specials:
        out.append(
            Probe(
                f"numbers/train/{name}",
                "numbers",
                "train",
                train("{fx}/pairs", "{d}/run", *extra),
                names=names,
                want=want,
                untouched=("{d}/run",) if want == "refuse" else (),
                check=files_exist("run/checkpoint.pt") if want != "refuse" else None,
                quick=name in ("model-args-cond=yes", "freeze-unknown"),
            )
        )
    out.append(
        Probe(
            "numbers/train/init-student-ok",
            "numbers",
            "train",
            train("{fx}/pairs", "{d}/run", "--init", "{fx}/student"),
            want="accept",
            check=files_exist("run/checkpoint.pt"),
        )
    )

    pair_cases = [
        ("--num-pairs", "0"),
        ("--num-pairs", "-1"),
        ("--first-seed", "-1"),
        ("--first-seed", str(2**63)),
        ("--first-seed", "1.5"),
        ("--shard-size", "0"),
        ("--shard-size", "-1"),
        ("--steps", "0"),
        ("--steps", "1"),
        ("--steps", "-1"),
        ("--batch-size", "0"),
        ("--batch-size", "-1"),
    ]
    for fl, v in pair_cases:
        out.append(
            Probe(
                f"numbers/pairs/{fl}={v}",
                "numbers",
                "pairs",
                pairs("{d}/p", fl, v),
                names=(fl,),
                untouched=("{d}/p",),
                quick=(fl, v) == ("--steps", "0"),
            )
        )
    for name, extra, names, teacher in [
        (
            "huge-num-pairs-shard-1",
            ["--num-pairs", str(10**12), "--shard-size", "1"],
            ("--num-pairs", "shard"),
            "digits",
        ),
        (
            "huge-num-pairs-disk",
            ["--num-pairs", str(10**12), "--shard-size", str(10**7)],
            ("--num-pairs", "GB"),
            "digits",
        ),
        ("first-seed-overflow", ["--first-seed", str(MAX_SEED - 3)], ("--first-seed",), "digits"),
        ("guidance-nan", ["--guidance-range", "nan", "1"], ("--guidance-range",), "digits-guided"),
        ("guidance-reversed", ["--guidance-range", "2", "1"], ("--guidance-range",), "digits-guided"),
        ("guidance-inf", ["--guidance-range", "-inf", "inf"], ("--guidance-range",), "digits-guided"),
        ("guidance-unguided-teacher", ["--guidance-range", "0", "1"], ("--guidance-range",), "digits"),
        ("teacher-missing", [], ("missing",), "{d}/missing"),
        ("teacher-is-model", [], ("model", "teacher"), "{fx}/model"),
        ("teacher-missing-pkl", [], ("nothing.pkl",), "{d}/nothing.pkl"),
        ("device-nonsense", ["--device", "nonsense"], ("nonsense", "device"), "digits"),
    ]:
        out.append(
            Probe(
                f"numbers/pairs/{name}",
                "numbers",
                "pairs",
                pairs("{d}/p", *extra, teacher=teacher),
                names=names,
                untouched=("{d}/p",),
            )
        )

    for fl, v, ckpt in [
        ("--num", "0", "model"),
        ("--num", "-1", "model"),
        ("--per-class", "0", "model_cond"),
        ("--per-class", "-1", "model_cond"),
        ("--iters", "0", "model"),
        ("--iters", "-1", "model"),
        ("--iters", "1.5", "model"),
        ("--seed", "-1", "model"),
        ("--seed", str(2**64), "model"),
        ("--guidance", "nan", "run_guided"),
        ("--guidance", "inf", "run_guided"),
        ("--guidance", "5", "run_guided"),
        ("--solver", "newton", "model"),
        ("--device", "nonsense", "model"),
        ("--device", "cuda:7", "model"),
    ]:
        out.append(
            Probe(
                f"numbers/sample/{fl}={v}",
                "numbers",
                "sample",
                sample("{fx}/" + ckpt, "{d}/s", fl, v),
                names=(fl, v) if fl in ("--solver", "--device") else (fl,),
                untouched=("{d}/s",),
                quick=(fl, v) == ("--num", "0"),
            )
        )
    for fl, v in [
        ("--iters", "0"),
        ("--iters", "-1"),
        ("--samples", "0"),
        ("--samples", "1"),
        ("--samples", "-1"),
        ("--samples", "601"),
        ("--batch-size", "0"),
        ("--batch-size", "-1"),
        ("--tol", "-1"),
        ("--tol", "nan"),
        ("--tol", "inf"),
        ("--quality-tolerance", "-1"),
        ("--quality-tolerance", "nan"),
        ("--quality-tolerance", "inf"),
        ("--threads", "0"),
        ("--threads", "-1"),
        ("--seed", "-1"),
        ("--solvers", "newton"),
    ]:
        names = {
            "--samples": ("--samples", "samples"),
            "--iters": ("--iters", "iter"),
            "--batch-size": ("--batch-size", "batch_size"),
            "--solvers": ("newton",),
        }.get(fl, (fl,))
        out.append(
            Probe(
                f"numbers/profile/{fl}={v}",
                "numbers",
                "profile",
                profile("{fx}/model", "{d}/prof", fl, v),
                names=names,
                untouched=("{d}/prof",),
                quick=(fl, v) == ("--tol", "nan"),
            )
        )
    for fl, v in [
        ("--input-size", "0"),
        ("--input-size", "-1"),
        ("--input-size", "7"),
        ("--in-channels", "0"),
        ("--in-channels", "-1"),
        ("--random", "GET-Q/2"),
    ]:
        names = {
            "--input-size": ("--input-size", "input_size"),
            "--in-channels": ("--in-channels", "in_channels"),
            "--random": ("GET-Q/2",),
        }[fl]
        out.append(
            Probe(
                f"numbers/profile/random{fl}={v}",
                "numbers",
                "profile",
                profile(None, "{d}/prof", fl, v),
                names=names,
                untouched=("{d}/prof",),
            )
        )
    out.append(
        Probe(
            "numbers/profile/fid-without-ref-stats",
            "numbers",
            "profile",
            profile("{fx}/model", "{d}/prof", "--metric", "fid"),
            names=("--ref-stats",),
        )
    )
    for v in ("0", "-1"):
        out.append(
            Probe(
                f"numbers/fid-stats/--batch-size={v}",
                "numbers",
                "fid-stats",
                fid_stats("{fx}/images.npy", "{d}/stats.npz", "--batch-size", v),
                names=("--batch-size",),
                untouched=("{d}/stats.npz",),
            )
        )
    for fl, v in [("--num-pairs", "0"), ("--num-pairs", "-1"), ("--max-steps", "0"), ("--max-steps", "-1")]:
        out.append(
            Probe(
                f"numbers/demo/{fl}={v}",
                "numbers",
                "demo",
                demo("{d}/demo", fl, v),
                names=(fl, fl[2:].replace("-", "_")),
                untouched=("{d}/demo",),
                timeout=90,
            )
        )
    for v in ("-1", "nan", "0", "inf"):
        out.append(
            Probe(
                f"numbers/gpu-validate/--deadline={v}",
                "numbers",
                "gpu-validate",
                gpu_validate("{d}/gv", "--deadline", v),
                names=("--deadline",),
                isolate="process",
                untouched=("{d}/gv",),
                timeout=60,
            )
        )
    return out


def api_args() -> list[Probe]:
    out: list[Probe] = []
    base = dict(input_size=8, in_channels=1, **MODEL)

    def build(cls_name, **kw):
        def call(ctx):
            from getkern import models

            return (
                getattr(models, cls_name)(**{**base, **kw})
                if cls_name == "GET"
                else models.ViT(
                    **{
                        **dict(
                            input_size=8,
                            in_channels=1,
                            hidden_size=16,
                            depth=1,
                            num_heads=2,
                            mlp_ratio=2,
                            backend="torch",
                        ),
                        **kw,
                    }
                )
            )

        return call

    nan, inf = float("nan"), float("inf")
    get_cases = {
        "num_heads": [-2, 0, 2.5, "2", True],
        "cond": ["yes", 1, None],
        "hidden_size": [15, 0, -16, 16.0],
        "input_size": [0, 7, -8],
        "patch_size": [0, 3, -2],
        "in_channels": [0, -1],
        "depth": [-1, 1.5],
        "deq_depth": [0],
        "mlp_ratio": [nan, 0, -1, inf, "4"],
        "deq_mlp_ratio": [nan],
        "backend": ["cuda", 3],
        "solver_backend": ["x"],
    }
    for fld, values in get_cases.items():
        for v in values:
            out.append(
                Probe(
                    f"api-args/GET({fld}={v!r})",
                    "api-args",
                    "api",
                    call=build("GET", **{fld: v}),
                    names=(fld,),
                    quick=(fld, v) == ("num_heads", -2),
                )
            )
    for v, extra in [
        ((2, 1), {"cond": True}),
        ((nan, 1), {"cond": True}),
        ((0, 1), {}),
        ("ab", {"cond": True}),
        ((0, inf), {"cond": True}),
    ]:
        out.append(
            Probe(
                f"api-args/GET(guidance_range={v!r},{extra})",
                "api-args",
                "api",
                call=build("GET", guidance_range=v, **extra),
                names=("guidance_range", "cond"),
            )
        )
    out.append(
        Probe(
            "api-args/GET(cond=True,num_classes=0)",
            "api-args",
            "api",
            call=build("GET", cond=True, num_classes=0),
            names=("num_classes",),
        )
    )
    for fld, v in [("num_heads", -2), ("depth", 0), ("hidden_size", 15), ("cond", "yes")]:
        out.append(Probe(f"api-args/ViT({fld}={v!r})", "api-args", "api", call=build("ViT", **{fld: v}), names=(fld,)))

    def forward(cond=False, **kw):
        def call(ctx):
            import torch

            from getkern.models import GET

            torch.manual_seed(0)
            model = GET(**{**base, "cond": cond}).eval()
            noise = kw.pop("noise", None)
            noise = torch.randn(2, 1, 8, 8) if noise is None else noise(torch)
            if "z0" in kw:
                kw["z0"] = kw["z0"](torch)
            if "y" in kw and callable(kw["y"]):
                kw["y"] = kw["y"](torch)
            with torch.no_grad():
                return model(noise, **kw)

        return call

    fwd = [
        ("noise-nan", {"noise": lambda t: torch_nan(t, (2, 1, 8, 8))}, ("noise", "NaN")),
        ("noise-inf", {"noise": lambda t: t.full((2, 1, 8, 8), float("inf"))}, ("noise",)),
        ("z0-nan", {"z0": lambda t: torch_nan(t, (2, 16, 16))}, ("z0",)),
        ("z0-shape", {"z0": lambda t: t.zeros(2, 15, 16)}, ("z0",)),
        ("noise-shape", {"noise": lambda t: t.zeros(2, 3, 8, 8)}, ("noise",)),
        ("noise-float64", {"noise": lambda t: t.zeros(2, 1, 8, 8, dtype=t.float64)}, ("noise", "dtype")),
        ("noise-empty", {"noise": lambda t: t.zeros(0, 1, 8, 8)}, ("noise", "empty")),
        ("y-for-unconditional", {"y": lambda t: t.tensor([0, 1])}, ("y", "label", "unconditional")),
        ("iters-0", {"iters": 0}, ("iters",)),
        ("iters--1", {"iters": -1}, ("iters",)),
        ("iters-2.5", {"iters": 2.5}, ("iters",)),
        ("iters-True", {"iters": True}, ("iters",)),
        ("solver-newton", {"solver": "newton"}, ("solver", "newton")),
        ("tol--1", {"tol": -1.0}, ("tol",)),
        ("guidance-unguided", {"guidance": 1.0}, ("guidance",)),
    ]
    for name, kw, names in fwd:
        out.append(
            Probe(
                f"api-args/forward/{name}", "api-args", "api", call=forward(**kw), names=names, quick=name == "z0-nan"
            )
        )
    for name, kw, names in [
        ("y-missing", {}, ("y", "label")),
        ("y-10", {"y": lambda t: t.tensor([0, 10])}, ("y", "label")),
        ("y--1", {"y": lambda t: t.tensor([-1, 0])}, ("y", "label")),
        ("y-float", {"y": lambda t: t.tensor([0.0, 1.0])}, ("y", "label")),
        ("y-shape", {"y": lambda t: t.tensor([0, 1, 2])}, ("y", "label")),
    ]:
        out.append(
            Probe(f"api-args/forward-cond/{name}", "api-args", "api", call=forward(cond=True, **kw), names=names)
        )

    def api_sample(source="model", *args, **kw):
        def call(ctx):
            import torch

            import getkern

            model = getkern.load(ctx.fx / source, backend="torch")
            for key in ("z0", "noise"):
                if key in kw and callable(kw[key]):
                    kw[key] = kw[key](torch)
            return getkern.sample(model, *args, **kw)

        return call

    for name, args, kw, names, source in [
        ("num-0", (0,), {}, ("num",), "model"),
        ("num--1", (-1,), {}, ("num",), "model"),
        ("num-True", (True,), {}, ("num",), "model"),
        ("num-'3'", ("3",), {}, ("num",), "model"),
        ("num-2.5", (2.5,), {}, ("num",), "model"),
        ("labels-float", ([0.5],), {}, ("label", "num"), "model_cond"),
        ("labels-unconditional", ([0, 1],), {}, ("label", "unconditional"), "model"),
        ("labels-out-of-range", ([0, 10],), {}, ("label", "y"), "model_cond"),
        ("generator-str", (2,), {"generator": "x"}, ("generator",), "model"),
        ("generator-float", (2,), {"generator": 1.5}, ("generator",), "model"),
        ("batch_size-0", (2,), {"batch_size": 0}, ("batch_size",), "model"),
        ("batch_size--1", (2,), {"batch_size": -1}, ("batch_size",), "model"),
        ("iters-0", (2,), {"iters": 0}, ("iters",), "model"),
        ("solver-x", (2,), {"solver": "x"}, ("solver",), "model"),
        ("tol--1", (2,), {"tol": -1.0}, ("tol",), "model"),
        ("guidance-outside", (2,), {"guidance": 5.0}, ("guidance",), "run_guided"),
        ("guidance-nan", (2,), {"guidance": float("nan")}, ("guidance",), "run_guided"),
        ("guidance-missing", (2,), {}, ("guidance",), "run_guided"),
        ("z0-nan-row", (2,), {"z0": lambda t: torch_nan(t, (2, 16, 16), rows=1)}, ("z0",), "model"),
        ("noise-nan-row", (2,), {"noise": lambda t: torch_nan(t, (2, 1, 8, 8), rows=1)}, ("noise",), "model"),
        ("z0-wrong-shape", (2,), {"z0": lambda t: t.zeros(2, 4, 16)}, ("z0",), "model"),
    ]:
        out.append(
            Probe(
                f"api-args/sample/{name}",
                "api-args",
                "api",
                call=api_sample(source, *args, **kw),
                names=names,
                quick=name == "num-0",
            )
        )

    def solve(**kw):
        def call(ctx):
            import torch

            from getkern import deq

            f = kw.pop("f", lambda z: 0.5 * z + 1)
            z0 = kw.pop("z0", None)
            z0 = torch.randn(2, 4, generator=torch.Generator().manual_seed(0)) if z0 is None else z0(torch)
            opts = {"solver": "anderson", "max_iter": 10, "backend": "torch", **kw}
            return deq.solve(f, z0, **opts)

        return call

    for name, kw, names in [
        ("max_iter-0", {"max_iter": 0}, ("max_iter",)),
        ("max_iter--1", {"max_iter": -1}, ("max_iter",)),
        ("max_iter-2.5", {"max_iter": 2.5}, ("max_iter",)),
        ("max_iter-True", {"max_iter": True}, ("max_iter",)),
        ("tol--1", {"tol": -1.0}, ("tol",)),
        ("tol-0", {"tol": 0.0}, ("tol",)),
        ("tol-nan", {"tol": float("nan")}, ("tol",)),
        ("m-0", {"m": 0}, ("m ", "m=", "m must")),
        ("lam--1", {"lam": -1.0}, ("lam",)),
        ("lam-nan", {"lam": float("nan")}, ("lam",)),
        ("tau-0", {"tau": 0.0}, ("tau",)),
        ("tau-1.5", {"tau": 1.5}, ("tau",)),
        ("tau-nan", {"tau": float("nan")}, ("tau",)),
        ("stop-x", {"stop": "x"}, ("stop",)),
        ("solver-x", {"solver": "x"}, ("solver",)),
        ("check_every-0", {"check_every": 0}, ("check_every",)),
        ("backend-x", {"backend": "x"}, ("backend",)),
        ("z0-int", {"z0": lambda t: t.zeros(2, 4, dtype=t.int64)}, ("z0",)),
        ("z0-empty", {"z0": lambda t: t.zeros(0, 4)}, ("z0",)),
        ("f-not-callable", {"f": 3}, ("f ", "f must", "callable")),
        ("f-wrong-shape", {"f": lambda z: z[:, :2]}, ("shape",)),
    ]:
        out.append(
            Probe(
                f"api-args/deq.solve/{name}", "api-args", "api", call=solve(**kw), names=names, quick=name == "tau-nan"
            )
        )

    def config(**kw):
        def call(ctx):
            from getkern.distill import TrainConfig

            return TrainConfig(pairs="p", out="o", **kw)

        return call

    for fld, v in [
        ("warmup_steps", -5),
        ("ema_decay", 2),
        ("max_steps", -1),
        ("checkpoint_every", 0),
        ("batch_size", 8.0),
        ("ema_warmup", "yes"),
        ("lr", float("nan")),
        ("seed", -1),
        ("loss", "l3"),
        ("model", "GET-T/2"),
        ("freeze", "blocks"),
        ("sample_every", True),
    ]:
        out.append(
            Probe(f"api-args/TrainConfig({fld}={v!r})", "api-args", "api", call=config(**{fld: v}), names=(fld,))
        )
    out.append(
        Probe(
            "api-args/TrainConfig.from_dict(unknown)",
            "api-args",
            "api",
            call=lambda ctx: __import__("getkern.distill", fromlist=["TrainConfig"]).TrainConfig.from_dict(
                {"pairs": "p", "out": "o", "weight_decy": 0.1}
            ),
            names=("weight_decy",),
        )
    )

    def load(path="{fx}/model", **kw):
        def call(ctx):
            import getkern

            return getkern.load(ctx.path(path), **kw)

        return call

    def setup_files(ctx):
        (ctx.d / "empty").mkdir()
        (ctx.d / "garbage.pt").write_bytes(b"garbage" * 10)
        (ctx.d / "notes.txt").write_text("hello")
        (ctx.d / "readme_only").mkdir()
        (ctx.d / "readme_only" / "README.md").write_text("# a model card")

    for name, path, kw, names in [
        ("ema-yes", "{fx}/run", {"ema": "yes"}, ("ema",)),
        ("backend-x", "{fx}/model", {"backend": "x"}, ("backend",)),
        ("torch_dtype-int8", "{fx}/model", {"torch_dtype": "int8"}, ("torch_dtype",)),
        ("torch_dtype-float99", "{fx}/model", {"torch_dtype": "float99"}, ("torch_dtype",)),
        ("device-nonsense", "{fx}/model", {"device": "nonsense"}, ("device",)),
        ("missing", "{d}/missing", {}, ("missing",)),
        ("empty-dir", "{d}/empty", {}, ("empty",)),
        ("garbage-pt", "{d}/garbage.pt", {}, ("garbage.pt",)),
        ("txt-file", "{d}/notes.txt", {}, ("notes.txt",)),
        ("readme-only-dir", "{d}/readme_only", {}, ("readme_only",)),
        ("ema-false-pretrained", "{fx}/model", {"ema": False}, ("ema",)),
        ("override-mismatch", "{fx}/model", {"hidden_size": 32}, ("hidden_size",)),
        ("override-unknown", "{fx}/model", {"foo": 1}, ("foo",)),
    ]:
        out.append(
            Probe(f"api-args/load/{name}", "api-args", "api", call=load(path, **kw), setup=setup_files, names=names)
        )
    out.append(
        Probe(
            "api-args/GET.from_pretrained(vit-folder)",
            "api-args",
            "api",
            call=lambda ctx: __import__("getkern").GET.from_pretrained(ctx.fx / "vit"),
            names=("ViT",),
        )
    )
    out.append(
        Probe(
            "api-args/GET.from_pretrained(run-folder)",
            "api-args",
            "api",
            call=lambda ctx: __import__("getkern").GET.from_pretrained(ctx.fx / "run"),
            names=("run", "getkern.load", "config.json", "model.safetensors"),
        )
    )
    return out


def torch_nan(t, shape, rows=None):
    x = t.randn(*shape, generator=t.Generator().manual_seed(0))
    if rows is None:
        x.view(-1)[0] = float("nan")
    else:
        x[rows] = float("nan")
    return x


def memory() -> list[Probe]:
    out: list[Probe] = []
    fields = {
        "hidden_size=40000": {"hidden_size": 40000},
        "depth=100000": {"depth": 100000},
        "deq_depth=100000": {"deq_depth": 100000},
        "input_size=80000": {"input_size": 80000},
        "mlp_ratio=1e6": {"mlp_ratio": 1e6},
        "deq_mlp_ratio=1e6": {"deq_mlp_ratio": 1e6},
        "in_channels=1e6": {"in_channels": 1000000},
        "hidden_size=40000,num_heads=1": {"hidden_size": 40000, "num_heads": 1},
    }
    names_of = lambda edit: tuple(edit) + ("config.json", "model.safetensors")  # noqa: E731

    def edited(src, edit):
        return copies(src, then=edit_json(f"{src}/config.json", with_(**edit)))

    for label, edit in fields.items():
        out.append(
            Probe(
                f"memory/sample/model-config-{label}",
                "memory",
                "sample",
                sample("{d}/model"),
                setup=edited("model", edit),
                names=names_of(edit),
                isolate="memory",
                timeout=60,
                quick=label == "hidden_size=40000",
            )
        )
        out.append(
            Probe(
                f"memory/load/model-config-{label}",
                "memory",
                "api",
                call=lambda ctx: __import__("getkern").load(ctx.d / "model"),
                setup=edited("model", edit),
                names=names_of(edit),
                isolate="memory",
                timeout=60,
                quick=label == "depth=100000",
            )
        )
    for label in ("hidden_size=40000", "depth=100000", "mlp_ratio=1e6"):
        edit = fields[label]
        out.append(
            Probe(
                f"memory/profile/model-config-{label}",
                "memory",
                "profile",
                profile("{d}/model"),
                setup=edited("model", edit),
                names=names_of(edit),
                isolate="memory",
                timeout=60,
            )
        )
        out.append(
            Probe(
                f"memory/from_pretrained/model-config-{label}",
                "memory",
                "api",
                call=lambda ctx: __import__("getkern").GET.from_pretrained(ctx.d / "model"),
                setup=edited("model", edit),
                names=names_of(edit),
                isolate="memory",
                timeout=60,
            )
        )
    for label in ("hidden_size=40000", "depth=100000"):
        out.append(
            Probe(
                f"memory/train-init/model-config-{label}",
                "memory",
                "train",
                train("{fx}/pairs", "{d}/run", "--init", "{d}/student"),
                setup=edited("student", fields[label]),
                want="either",  # --init reads the weights
                check=files_exist("run/checkpoint.pt"),
                what="--init takes the weights; the config may be ignored, but nothing huge may be allocated",
                names=names_of(fields[label]),
                isolate="memory",
                timeout=60,
            )
        )
    out.append(
        Probe(
            "memory/sample/cond-num_classes=1e9",
            "memory",
            "sample",
            sample("{d}/model_cond"),
            setup=edited("model_cond", {"num_classes": 10**9}),
            names=("num_classes", "config.json"),
            isolate="memory",
            timeout=60,
        )
    )
    for label, edit in (("hidden=40000", {"hidden": 40000}), ("layers=100000", {"layers": 100000})):

        def teacher_edit(o, e=edit):
            return {**o, "config": {**o["config"], **e}}

        out.append(
            Probe(
                f"memory/pairs/teacher-config-{label}",
                "memory",
                "pairs",
                pairs("{d}/p", teacher="{d}/teacher"),
                setup=copies("teacher", then=edit_json("teacher/config.json", teacher_edit)),
                names=tuple(edit) + ("config.json",),
                isolate="memory",
                timeout=60,
            )
        )

    def ckpt_config(edit):
        def apply(ctx):
            import torch

            ctx.copy("run")
            path = ctx.d / "run" / "checkpoint.pt"
            state = checkpoint_state(path)
            state["model_config"] = json.dumps({**json.loads(state["model_config"]), **edit})
            torch.save(state, path)
            (ctx.d / "run" / "checkpoint.pt.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")

        return apply

    for label in ("hidden_size=40000", "depth=100000"):
        edit = fields[label]
        names = tuple(edit) + ("checkpoint.pt",)
        out.append(
            Probe(
                f"memory/sample/train-checkpoint-{label}",
                "memory",
                "sample",
                sample("{d}/run"),
                setup=ckpt_config(edit),
                names=names,
                isolate="memory",
                timeout=60,
            )
        )
        out.append(
            Probe(
                f"memory/load/train-checkpoint-{label}",
                "memory",
                "api",
                call=lambda ctx: __import__("getkern").load(ctx.d / "run"),
                setup=ckpt_config(edit),
                names=names,
                isolate="memory",
                timeout=60,
            )
        )
        out.append(
            Probe(
                f"memory/train-resume/train-checkpoint-{label}",
                "memory",
                "train",
                train("{fx}/pairs", "{d}/run", "--max-steps", "3"),
                setup=ckpt_config(edit),
                names=names + ("model",),
                isolate="memory",
                timeout=60,
                preserve=("{d}/run",),
            )
        )

    def ref_args(**kw):
        def apply(ctx):
            import torch

            with torch.serialization.safe_globals([argparse.Namespace]):
                state = torch.load(ctx.fx / "ref.pth", map_location="cpu", weights_only=True)
            for k, v in kw.items():
                setattr(state["args"], k, v)
            torch.save(state, ctx.d / "ref.pth")

        return apply

    out.append(
        Probe(
            "memory/sample/reference-args-input_size=80000",
            "memory",
            "sample",
            sample("{d}/ref.pth"),
            setup=ref_args(input_size=80000),
            names=("input_size", "ref.pth"),
            isolate="memory",
            timeout=60,
        )
    )
    out.append(
        Probe(
            "memory/load/reference-args-num_classes=1e9-cond",
            "memory",
            "api",
            call=lambda ctx: __import__("getkern").load(ctx.d / "ref.pth"),
            setup=ref_args(num_classes=10**9, cond=True),
            names=("num_classes", "cond", "ref.pth"),
            isolate="memory",
            timeout=60,
        )
    )
    out.append(
        Probe(
            "memory/sample/--num=1e9",
            "memory",
            "sample",
            sample("{fx}/model", "{d}/s", "--num", str(10**9)),
            names=("--num",),
            isolate="memory",
            timeout=60,
        )
    )
    return out


def corrupt_files() -> list[Probe]:
    out: list[Probe] = []
    W = "model/model.safetensors"
    for kind in CORRUPTIONS:
        setup = copies("model", then=corrupt(W, kind))
        q = kind == "flip-data"
        out.append(
            Probe(
                f"corrupt/weights-{kind}/sample",
                "corrupt",
                "sample",
                sample("{d}/model"),
                setup=setup,
                names=("model.safetensors",),
                quick=q,
            )
        )
        out.append(
            Probe(
                f"corrupt/weights-{kind}/profile",
                "corrupt",
                "profile",
                profile("{d}/model"),
                setup=setup,
                names=("model.safetensors",),
            )
        )
        out.append(
            Probe(
                f"corrupt/weights-{kind}/load",
                "corrupt",
                "api",
                call=lambda ctx: __import__("getkern").load(ctx.d / "model"),
                setup=setup,
                names=("model.safetensors",),
            )
        )
        out.append(
            Probe(
                f"corrupt/weights-{kind}/from_pretrained",
                "corrupt",
                "api",
                call=lambda ctx: __import__("getkern").GET.from_pretrained(ctx.d / "model"),
                setup=setup,
                names=("model.safetensors",),
            )
        )
        out.append(
            Probe(
                f"corrupt/weights-{kind}/train-init",
                "corrupt",
                "train",
                train("{fx}/pairs", "{d}/run", "--init", "{d}/student"),
                setup=copies("student", then=corrupt("student/model.safetensors", kind)),
                names=("model.safetensors",),
            )
        )
    # pair shards
    for kind in CORRUPTIONS:
        setup = copies("pairs", then=corrupt(f"pairs/{SHARD2}", kind))
        out.append(
            Probe(
                f"corrupt/shard-{kind}/train",
                "corrupt",
                "train",
                train("{d}/pairs", "{d}/run"),
                setup=setup,
                names=(SHARD2,),
                untouched=("{d}/run",),
                quick=kind == "flip-data",
            )
        )
        out.append(
            Probe(
                f"corrupt/shard-{kind}/PairDataset",
                "corrupt",
                "api",
                call=lambda ctx: (
                    __import__("getkern.data", fromlist=["PairDataset"]).PairDataset(ctx.d / "pairs").tensors()
                ),
                setup=setup,
                names=(SHARD2,),
            )
        )
        out.append(
            Probe(
                f"corrupt/shard-{kind}/pairs-rerun",
                "corrupt",
                "pairs",
                pairs("{d}/pairs"),
                setup=setup,
                names=(SHARD2,),
                want="either",
                check=pairs_ok("pairs"),
            )
        )
    # a training run's checkpoint.pt
    C = "run/checkpoint.pt"
    for kind in CORRUPTIONS:
        setup = copies("run", then=corrupt(C, kind))
        out.append(
            Probe(
                f"corrupt/checkpoint-{kind}/train-resume",
                "corrupt",
                "train",
                train("{fx}/pairs", "{d}/run", "--max-steps", "3"),
                setup=setup,
                names=("checkpoint.pt",),
                want="either",
                check=run_ok([1, 2, 3], equal="run3"),
                quick=kind == "flip-data",
            )
        )
        out.append(
            Probe(
                f"corrupt/checkpoint-{kind}/sample-run",
                "corrupt",
                "sample",
                sample("{d}/run"),
                setup=setup,
                names=("checkpoint.pt",),
                want="either",
                check=sample_ok("run", fallback="run_prev.pt"),
                quick=kind == "flip-data",
            )
        )
        out.append(
            Probe(
                f"corrupt/checkpoint-{kind}/load-run",
                "corrupt",
                "api",
                call=lambda ctx: __import__("getkern").load(ctx.d / "run", backend="torch"),
                setup=setup,
                names=("checkpoint.pt",),
                want="either",
                check=model_ok("run", fallback="run_prev.pt"),
            )
        )
        out.append(
            Probe(
                f"corrupt/checkpoint-{kind}/load-file",
                "corrupt",
                "api",
                call=lambda ctx: __import__("getkern").load(ctx.d / "run" / "checkpoint.pt", backend="torch"),
                setup=setup,
                names=("checkpoint.pt",),
                want="either",
                check=model_ok("run", fallback="run_prev.pt"),
            )
        )
        if kind in SHORT_CORRUPTIONS:
            out.append(
                Probe(
                    f"corrupt/checkpoint-{kind}/profile-run",
                    "corrupt",
                    "profile",
                    profile("{d}/run"),
                    setup=setup,
                    names=("checkpoint.pt",),
                    want="either",
                    check=lambda ctx, r: (
                        None
                        if any("checkpoint" in w for w in r.warnings)
                        else "profiled a corrupt checkpoint.pt without a word"
                    ),
                )
            )
        setup_both = copies("run", then=chain(corrupt(C, kind), corrupt("run/checkpoint.prev.pt", "truncated")))
        if kind in SHORT_CORRUPTIONS:
            out.append(
                Probe(
                    f"corrupt/checkpoint-and-prev-{kind}/train-resume",
                    "corrupt",
                    "train",
                    train("{fx}/pairs", "{d}/run", "--max-steps", "3"),
                    setup=setup_both,
                    names=("checkpoint",),
                    preserve=("{d}/run/log.jsonl",),
                )
            )
    # the run's ema/ folder
    for kind in SHORT_CORRUPTIONS:
        setup = copies("run", then=corrupt("run/ema/model.safetensors", kind))
        out.append(
            Probe(
                f"corrupt/ema-{kind}/sample-ema",
                "corrupt",
                "sample",
                sample("{d}/run/ema"),
                setup=setup,
                names=("model.safetensors",),
            )
        )
        out.append(
            Probe(
                f"corrupt/ema-{kind}/sample-run",
                "corrupt",
                "sample",
                sample("{d}/run"),
                setup=setup,
                want="accept",
                check=sample_ok("run"),
            )
        )
        out.append(
            Probe(
                f"corrupt/ema-{kind}/train-resume",
                "corrupt",
                "train",
                train("{fx}/pairs", "{d}/run", "--max-steps", "3"),
                setup=setup,
                want="accept",
                check=run_ok([1, 2, 3], equal="run3"),
            )
        )
    # save_pretrained config.json
    J = "model/config.json"
    digest_other = "0" * 64
    for name, edit, names in [
        ("truncated", lambda o: json.dumps(o)[:40], ("config.json",)),
        ("empty", lambda o: "", ("config.json",)),
        ("garbage", lambda o: "garbage {", ("config.json",)),
        ("list", lambda o: [1, 2], ("config.json",)),
        ("hidden_size=17", with_(hidden_size=17), ("hidden_size",)),
        ("no-hidden_size", without("hidden_size"), ("hidden_size",)),
        ("class=Evil", with_(_class_name="Evil"), ("Evil", "_class_name")),
        ("sha=zz", with_(_weights_sha256="zz"), ("_weights_sha256", "sha")),
        ("sha=other", with_(_weights_sha256=digest_other), ("sha", "model.safetensors")),
        ("cond=yes", with_(cond="yes"), ("cond",)),
        ("num_heads=-2", with_(num_heads=-2), ("num_heads",)),
        ("unknown-key", with_(bogus=1), ("bogus",)),
        ("patch_size=4", with_(patch_size=4), ("patch_size",)),
    ]:
        setup = copies("model", then=edit_json(J, edit))
        out.append(
            Probe(f"corrupt/config-{name}/sample", "corrupt", "sample", sample("{d}/model"), setup=setup, names=names)
        )
        out.append(
            Probe(
                f"corrupt/config-{name}/load",
                "corrupt",
                "api",
                call=lambda ctx: __import__("getkern").load(ctx.d / "model"),
                setup=setup,
                names=names,
            )
        )
    # pair manifest
    M = "pairs/manifest.json"

    def drop_shard(o):
        return {**o, "shards": o["shards"][:1]}

    def shard_field(**kw):
        return lambda o: {**o, "shards": [{**o["shards"][0], **kw}, *o["shards"][1:]]}

    for name, edit, names in [
        ("truncated", lambda o: json.dumps(o)[:50], ("manifest.json",)),
        ("empty", lambda o: "", ("manifest.json",)),
        ("garbage", lambda o: "garbage {", ("manifest.json",)),
        ("list", lambda o: [], ("manifest.json",)),
        ("format-other", with_(format="other"), ("manifest.json", "format")),
        ("shard-dropped", drop_shard, ("manifest.json", "num_pairs", "shard", "count")),
        ("shard-sha-altered", shard_field(sha256="0" * 64), ("pairs-000000000",)),
        ("num_pairs=9", with_(num_pairs=9), ("manifest.json", "num_pairs")),
        ("incomplete", with_(complete=False), ("manifest.json", "complete", "finish")),
        ("shard-path-traversal", shard_field(file="../../../etc/passwd"), ("manifest.json", "passwd", "file")),
        ("shard-count--1", shard_field(count=-1), ("manifest.json", "count")),
        ("num_classes=str", with_(num_classes="ten"), ("manifest.json", "num_classes")),
    ]:
        setup = copies("pairs", then=edit_json(M, edit))
        out.append(
            Probe(
                f"corrupt/manifest-{name}/train",
                "corrupt",
                "train",
                train("{d}/pairs", "{d}/run"),
                setup=setup,
                names=names,
                untouched=("{d}/run",),
            )
        )
        out.append(
            Probe(
                f"corrupt/manifest-{name}/pairs-rerun",
                "corrupt",
                "pairs",
                pairs("{d}/pairs"),
                setup=setup,
                names=names,
                want="either",
                check=pairs_ok("pairs"),
                preserve=("{d}/pairs/pairs-000000000-000000003.safetensors",) if name != "garbage" else (),
            )
        )
    # train_config.json and the checkpoint's digest sidecar
    for name, edit in [
        ("garbage", lambda o: "garbage {"),
        ("empty", lambda o: ""),
        ("list", lambda o: []),
        ("unknown-key", with_(weight_decy=0.1)),
    ]:
        setup = copies("run", then=edit_json("run/train_config.json", edit))
        out.append(
            Probe(
                f"corrupt/train_config-{name}/train-resume",
                "corrupt",
                "train",
                train("{fx}/pairs", "{d}/run", "--max-steps", "3"),
                setup=setup,
                names=("train_config.json",),
                want="either",
                check=run_ok([1, 2, 3], equal="run3"),
            )
        )
        out.append(
            Probe(
                f"corrupt/train_config-{name}/sample-run",
                "corrupt",
                "sample",
                sample("{d}/run"),
                setup=setup,
                want="accept",
                check=sample_ok("run"),
            )
        )
    for name, text in [
        ("garbage", lambda d: "garbage\n"),
        ("empty", lambda d: ""),
        ("zeros", lambda d: "0" * 64),
        ("uppercase", lambda d: d.upper()),
        ("crlf-spaces", lambda d: f"  {d}  \r\n"),
    ]:

        def setup(ctx, text=text):
            ctx.copy("run")
            side = ctx.d / "run" / "checkpoint.pt.sha256"
            side.write_text(text(side.read_text().strip()))

        out.append(
            Probe(
                f"corrupt/sidecar-{name}/train-resume",
                "corrupt",
                "train",
                train("{fx}/pairs", "{d}/run", "--max-steps", "3"),
                setup=setup,
                names=("sha256",),
                want="either",
                check=run_ok([1, 2, 3], equal="run3"),
            )
        )
        out.append(
            Probe(
                f"corrupt/sidecar-{name}/sample-run",
                "corrupt",
                "sample",
                sample("{d}/run"),
                setup=setup,
                names=("sha256", "checkpoint.pt"),
                want="either",
                check=sample_ok("run"),
            )
        )
    # the reference's .pth
    for kind in ("truncated", "flip-first", "garbage"):
        setup = copies("ref.pth", then=corrupt("ref.pth", kind))
        out.append(
            Probe(
                f"corrupt/reference-{kind}/sample",
                "corrupt",
                "sample",
                sample("{d}/ref.pth"),
                setup=setup,
                names=("ref.pth",),
            )
        )
        out.append(
            Probe(
                f"corrupt/reference-{kind}/load",
                "corrupt",
                "api",
                call=lambda ctx: __import__("getkern").load(ctx.d / "ref.pth"),
                setup=setup,
                names=("ref.pth",),
            )
        )
    # fid-stats inputs
    import numpy as np

    def array_file(name, make):
        def setup(ctx):
            path = ctx.d / name
            obj = make(np)
            if isinstance(obj, bytes):
                path.write_bytes(obj)
            elif isinstance(obj, dict):
                np.savez(path, **obj)
            else:
                np.save(path, obj)

        return setup

    rng = lambda: np.random.default_rng(0)  # noqa: E731
    for name, fname, make, want in [
        (
            "npy-truncated",
            "in.npy",
            lambda np: _npy_half_bytes(rng().integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)),
            "refuse",
        ),
        ("npy-garbage", "in.npy", lambda np: b"garbage" * 20, "refuse"),
        ("shape-(4,8)", "in.npy", lambda np: np.zeros((4, 8), np.uint8), "refuse"),
        ("zero-images", "in.npy", lambda np: np.zeros((0, 8, 8, 3), np.uint8), "refuse"),
        ("one-image", "in.npy", lambda np: np.zeros((1, 8, 8, 3), np.uint8), "refuse"),
        ("int64", "in.npy", lambda np: np.zeros((4, 8, 8, 3), np.int64), "refuse"),
        ("bool", "in.npy", lambda np: np.zeros((4, 8, 8, 3), bool), "refuse"),
        ("float-nan", "in.npy", lambda np: np.full((4, 8, 8, 3), np.nan, np.float32), "refuse"),
        ("channels-5", "in.npy", lambda np: np.zeros((4, 8, 8, 5), np.uint8), "refuse"),
        ("npz-two-arrays", "in.npz", lambda np: {"a": np.zeros((4, 8, 8, 3), np.uint8), "b": np.zeros(3)}, "refuse"),
        ("txt", "in.txt", lambda np: b"hello", "refuse"),
        ("float-in-range", "in.npy", lambda np: rng().uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32), "accept"),
        ("nchw-uint8", "in.npy", lambda np: rng().integers(0, 256, (4, 3, 8, 8), dtype=np.uint8), "accept"),
    ]:
        out.append(
            Probe(
                f"corrupt/fid-input-{name}/fid-stats",
                "corrupt",
                "fid-stats",
                fid_stats("{d}/" + fname, "{d}/stats.npz"),
                setup=array_file(fname, make),
                names=(fname,),
                want=want,
                check=stats_ok() if want == "accept" else None,
                untouched=("{d}/stats.npz",) if want == "refuse" else (),
                quick=name == "float-nan",
            )
        )

    def image_folder(kind):
        def setup(ctx):
            from PIL import Image

            folder = ctx.d / "imgs"
            folder.mkdir()
            if kind == "empty":
                return
            for i in range(3):
                size = (8, 8) if kind != "mixed" or i < 2 else (9, 9)
                Image.fromarray(np.full(size + (3,), 40 * i, np.uint8)).save(folder / f"{i}.png")
            if kind == "corrupt":
                (folder / "1.png").write_bytes(b"\x89PNG garbage")

        return setup

    for kind, want in (("empty", "refuse"), ("corrupt", "refuse"), ("mixed", "refuse"), ("ok", "accept")):
        out.append(
            Probe(
                f"corrupt/fid-folder-{kind}/fid-stats",
                "corrupt",
                "fid-stats",
                fid_stats("{d}/imgs", "{d}/stats.npz"),
                setup=image_folder(kind),
                names=("imgs", "1.png", ".png"),
                want=want,
                check=stats_ok() if want == "accept" else None,
            )
        )
    out.append(
        Probe(
            "corrupt/fid-input-missing/fid-stats",
            "corrupt",
            "fid-stats",
            fid_stats("{d}/missing.npy", "{d}/stats.npz"),
            names=("missing.npy",),
        )
    )
    for kind, make in [
        ("truncated", lambda ctx: (ctx.d / "w.pt").write_bytes((ctx.fx / "tiny_inception.pt").read_bytes()[:500])),
        ("garbage", lambda ctx: (ctx.d / "w.pt").write_bytes(b"garbage" * 9)),
        ("a-GET-checkpoint", lambda ctx: shutil.copy(ctx.fx / "run" / "checkpoint.pt", ctx.d / "w.pt")),
        ("a-folder", lambda ctx: (ctx.d / "w.pt").mkdir()),
    ]:
        out.append(
            Probe(
                f"corrupt/inception-weights-{kind}/fid-stats",
                "corrupt",
                "fid-stats",
                fid_stats("{fx}/images.npy", "{d}/stats.npz", "--inception-weights", "{d}/w.pt"),
                setup=make,
                names=("w.pt",),
            )
        )
    # reference statistics for profile's FID

    def stats(make):
        def setup(ctx):
            path = ctx.d / "ref.npz"
            obj = make(np)
            if isinstance(obj, bytes):
                path.write_bytes(obj)
            else:
                with open(path, "wb") as f:
                    np.savez(f, **obj)

        return setup

    fid = ["--metric", "fid", "--inception-weights", "{fx}/tiny_inception.pt"]
    for name, make, want in [
        ("truncated", lambda np: _stats_npz_bytes()[:100], "refuse"),
        ("garbage", lambda np: b"garbage" * 10, "refuse"),
        ("no-sigma", lambda np: {"mu": np.zeros(8)}, "refuse"),
        ("mu-nan", lambda np: {"mu": np.full(8, np.nan), "sigma": np.eye(8)}, "refuse"),
        ("dim-5", lambda np: {"mu": np.zeros(5), "sigma": np.eye(5)}, "refuse"),
        ("protocol-clean", lambda np: {"mu": np.zeros(8), "sigma": np.eye(8), "protocol": np.array("clean")}, "refuse"),
        ("sigma-not-square", lambda np: {"mu": np.zeros(8), "sigma": np.zeros((8, 3))}, "refuse"),
    ]:
        out.append(
            Probe(
                f"corrupt/ref-stats-{name}/profile",
                "corrupt",
                "profile",
                profile("{fx}/model", "{d}/prof", *fid, "--ref-stats", "{d}/ref.npz"),
                setup=stats(make),
                names=("ref.npz", "--fid-protocol"),
                want=want,
                untouched=("{d}/prof",),
            )
        )
    out.append(
        Probe(
            "corrupt/ref-stats-ok/profile",
            "corrupt",
            "profile",
            profile("{fx}/model", "{d}/prof", *fid, "--ref-stats", "{fx}/stats.npz"),
            want="accept",
            check=profile_ok(),
        )
    )
    # a teacher folder
    for name, setup, want in [
        ("weights-truncated", copies("teacher", then=corrupt("teacher/model.safetensors", "truncated")), "refuse"),
        ("weights-garbage", copies("teacher", then=corrupt("teacher/model.safetensors", "garbage")), "refuse"),
        ("weights-flip-data", copies("teacher", then=corrupt("teacher/model.safetensors", "flip-data")), "refuse"),
        ("config-garbage", copies("teacher", then=edit_json("teacher/config.json", lambda o: "garbage {")), "refuse"),
        ("config-kind", copies("teacher", then=edit_json("teacher/config.json", with_(kind="other"))), "refuse"),
    ]:
        out.append(
            Probe(
                f"corrupt/teacher-{name}/pairs",
                "corrupt",
                "pairs",
                pairs("{d}/p", teacher="{d}/teacher"),
                setup=setup,
                names=("model.safetensors", "config.json", "teacher"),
                want=want,
                untouched=("{d}/p",),
            )
        )
    return out


def _npy_half_bytes(array) -> bytes:
    """The first half of ``array`` saved as .npy (a truncated file)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    raw = buf.getvalue()
    return raw[: len(raw) // 2]


def _stats_npz_bytes() -> bytes:
    """Bytes of a valid 8-d .npz statistics file."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, mu=np.zeros(8), sigma=np.eye(8))
    return buf.getvalue()


def out_locations() -> list[Probe]:
    out: list[Probe] = []

    def prep(ctx: Ctx) -> None:
        (ctx.d / "file.txt").write_text("a user's file\n")
        os.symlink(ctx.d / "nowhere" / "deeper", ctx.d / "dangling")
        os.symlink(ctx.d / "file.txt", ctx.d / "link")
        (ctx.d / "ro").mkdir()
        os.chmod(ctx.d / "ro", 0o555)
        os.mkfifo(ctx.d / "fifo")  # a special file (as /dev/full is): must not be replaced by a regular one

    long_name = "x" * 300
    mistakes = [
        ("is-a-file", "{d}/file.txt", ("file.txt",), "refuse", None),
        ("under-a-file", "{d}/file.txt/sub", ("file.txt",), "refuse", None),
        ("dangling-symlink", "{d}/dangling", ("dangling", "nowhere"), "either", None),
        ("symlink-to-file", "{d}/link", ("link",), "refuse", None),
        ("dev-null", "/dev/null", ("/dev/null",), "refuse", None),
        ("in-proc", "/proc/getkern-probe/out", ("/proc",), "refuse", None),
        ("name-too-long", "{d}/" + long_name, ("too long", "xxxxxxxxxx"), "refuse", None),
        ("unwritable", "{d}/ro/out", ("ro",), "refuse", "nocaps"),
        ("empty-string", "", ("--out",), "either", None),
    ]
    commands = {
        "pairs": (lambda o: pairs(o), ("p", "manifest.json")),
        "train": (lambda o: train("{fx}/pairs", o), ("checkpoint.pt",)),
        "sample": (lambda o: sample("{fx}/model", o), ("samples-fixed_point-iters1.npz",)),
        "profile": (lambda o: profile("{fx}/model", o), ("profile.json",)),
        "demo": (lambda o: demo(o), ("summary.json",)),
    }
    for cmd, (argv, _) in commands.items():
        for name, path, names, want, isolate in mistakes:
            if cmd == "demo" and name in ("empty-string", "dangling-symlink"):
                continue  # accepted, they would run the whole demo
            out.append(
                Probe(
                    f"out/{cmd}/{name}",
                    "out",
                    cmd,
                    argv(path),
                    setup=prep,
                    names=names,
                    want=want,
                    isolate=isolate,
                    preserve=("{d}/file.txt",),
                    timeout=90,
                    quick=cmd == "train" and name in ("is-a-file", "unwritable"),
                )
            )
    for name, path, names, want, isolate in mistakes:
        if name in ("empty-string", "dangling-symlink", "name-too-long", "in-proc"):
            continue
        out.append(
            Probe(
                f"out/gpu-validate/{name}",
                "out",
                "gpu-validate",
                gpu_validate(path),
                setup=prep,
                names=names,
                want=want,
                isolate="nocaps" if isolate else "process",
                preserve=("{d}/file.txt",),
                timeout=60,
            )
        )
    # fid-stats writes a file
    for name, path, names, want, isolate in [
        ("is-a-folder", "{d}/ro", ("ro",), "refuse", None),
        ("under-a-file", "{d}/file.txt/stats.npz", ("file.txt",), "refuse", None),
        ("in-proc", "/proc/getkern-probe/stats.npz", ("/proc",), "refuse", None),
        ("name-too-long", "{d}/" + long_name + ".npz", ("too long", "xxxxxxxxxx"), "refuse", None),
        ("unwritable", "{d}/ro/stats.npz", ("ro",), "refuse", "nocaps"),
        ("is-a-fifo", "{d}/fifo", ("fifo",), "refuse", None),
        ("symlink-to-file", "{d}/link", ("link", "file.txt"), "either", None),
        ("empty-string", "", ("--out",), "refuse", None),
    ]:
        out.append(
            Probe(
                f"out/fid-stats/{name}",
                "out",
                "fid-stats",
                fid_stats("{fx}/images.npy", path),
                setup=prep,
                names=names,
                want=want,
                isolate=isolate,
                preserve=("{d}/file.txt",) if name != "symlink-to-file" else (),
                check=lambda ctx, r: None,
            )
        )

    def inp(ctx):
        shutil.copy(ctx.fx / "images.npy", ctx.d / "images.npz" if False else ctx.d / "in.npy")
        import numpy as np

        np.savez(ctx.d / "in.npz", images=np.load(ctx.d / "in.npy"))

    out.append(
        Probe(
            "out/fid-stats/out-is-the-input",
            "out",
            "fid-stats",
            fid_stats("{d}/in.npz", "{d}/in.npz"),
            setup=inp,
            names=("in.npz",),
            preserve=("{d}/in.npz",),
            quick=True,
        )
    )
    # writing into folders that hold other things
    out.append(
        Probe(
            "out/sample/into-a-model-folder",
            "out",
            "sample",
            sample("{d}/model", "{d}/model"),
            setup=copies("model"),
            want="either",
            preserve=("{d}/model",),
            check=sample_ok("model", out="model"),
        )
    )
    out.append(
        Probe(
            "out/sample/into-a-run-folder",
            "out",
            "sample",
            sample("{d}/run", "{d}/run"),
            setup=copies("run"),
            want="either",
            preserve=("{d}/run",),
            check=sample_ok("run", out="run"),
        )
    )
    out.append(
        Probe(
            "out/profile/into-a-run-folder",
            "out",
            "profile",
            profile("{d}/run", "{d}/run"),
            setup=copies("run"),
            want="either",
            preserve=("{d}/run",),
            check=lambda ctx, r: None if (ctx.d / "run" / "profile.json").is_file() else "no profile.json",
        )
    )
    out.append(
        Probe(
            "out/pairs/into-a-run-folder",
            "out",
            "pairs",
            pairs("{d}/run"),
            setup=copies("run"),
            names=("run", "checkpoint.pt", "belong"),
            preserve=("{d}/run",),
            quick=True,
        )
    )
    out.append(
        Probe(
            "out/pairs/into-a-model-folder",
            "out",
            "pairs",
            pairs("{d}/model"),
            setup=copies("model"),
            names=("model", "config.json", "belong"),
            preserve=("{d}/model",),
        )
    )
    out.append(
        Probe(
            "out/pairs/into-a-folder-of-user-files",
            "out",
            "pairs",
            pairs("{d}/mine"),
            setup=lambda ctx: ((ctx.d / "mine").mkdir(), (ctx.d / "mine" / "notes.txt").write_text("x")),
            names=("notes.txt",),
            preserve=("{d}/mine",),
        )
    )
    out.append(
        Probe(
            "out/pairs/into-another-pair-set",
            "out",
            "pairs",
            pairs("{d}/pairs", "--num-pairs", "12"),
            setup=copies("pairs"),
            names=("manifest.json", "num_pairs"),
            preserve=("{d}/pairs",),
        )
    )
    out.append(
        Probe(
            "out/pairs/same-pair-set-again",
            "out",
            "pairs",
            pairs("{d}/pairs"),
            setup=copies("pairs"),
            want="accept",
            preserve=("{d}/pairs",),
            check=pairs_ok("pairs"),
        )
    )
    out.append(
        Probe(
            "out/train/into-a-pair-folder",
            "out",
            "train",
            train("{d}/pairs", "{d}/pairs"),
            setup=copies("pairs"),
            names=("pair folder", "manifest.json"),
            preserve=("{d}/pairs",),
        )
    )
    out.append(
        Probe(
            "out/train/into-another-pair-folder",
            "out",
            "train",
            train("{fx}/pairs", "{d}/pairs_other"),
            setup=copies("pairs_other"),
            names=("pair folder", "manifest.json"),
            preserve=("{d}/pairs_other",),
        )
    )
    out.append(
        Probe(
            "out/train/into-a-model-folder",
            "out",
            "train",
            train("{fx}/pairs", "{d}/model"),
            setup=copies("model"),
            want="either",
            preserve=("{d}/model",),
            names=("model", "config.json"),
            check=files_exist("model/checkpoint.pt"),
        )
    )
    out.append(
        Probe(
            "out/train/into-a-folder-of-user-files",
            "out",
            "train",
            train("{fx}/pairs", "{d}/mine"),
            setup=lambda ctx: (
                (ctx.d / "mine").mkdir(),
                (ctx.d / "mine" / "config.json").write_text('{"my": "settings"}'),
                (ctx.d / "mine" / "log.jsonl").write_text("my log\n"),
            ),
            want="either",
            names=("mine", "log.jsonl", "config.json"),
            preserve=("{d}/mine",),
        )
    )
    out.append(
        Probe(
            "out/train/pairs-is-a-run-folder",
            "out",
            "train",
            train("{d}/run", "{d}/run2"),
            setup=copies("run"),
            names=("run",),
            preserve=("{d}/run",),
        )
    )
    return out


HOLDER = """
import sys, time
from getkern.runlock import hold_folder
lock = hold_folder(sys.argv[1], sys.argv[2])
print("held", flush=True)
time.sleep(600)
"""


def concurrency() -> list[Probe]:
    out: list[Probe] = []

    def held_call(argv, rel, command="getkern train", copy=None):
        """Run argv while this process holds ``rel`` (another open file description: a second holder)."""

        def call(ctx):
            from getkern.runlock import hold_folder

            if copy:
                ctx.copy(copy)
            with hold_folder(ctx.d / rel, command):
                return ctx.cli(argv)

        return call

    names = ("in use by", "pid")
    out.append(
        Probe(
            "concurrency/train-resume-on-held-run",
            "concurrency",
            "train",
            call=held_call(train("{fx}/pairs", "{d}/run", "--max-steps", "3"), "run", copy="run"),
            names=names,
            preserve=("{d}/run",),
            quick=True,
        )
    )
    out.append(
        Probe(
            "concurrency/train-new-run-held",
            "concurrency",
            "train",
            call=held_call(train("{fx}/pairs", "{d}/run"), "run"),
            names=names,
        )
    )
    out.append(
        Probe(
            "concurrency/pairs-on-held-folder",
            "concurrency",
            "pairs",
            call=held_call(pairs("{d}/p"), "p", "getkern pairs"),
            names=names,
            quick=True,
        )
    )
    out.append(
        Probe(
            "concurrency/pairs-complete-held",
            "concurrency",
            "pairs",
            call=held_call(pairs("{d}/pairs"), "pairs", "getkern pairs", copy="pairs"),
            names=names,
            preserve=("{d}/pairs",),
        )
    )
    out.append(
        Probe(
            "concurrency/pairs-into-run-held-by-train",
            "concurrency",
            "pairs",
            call=held_call(pairs("{d}/run"), "run", copy="run"),
            names=names + ("belong", "checkpoint"),
            preserve=("{d}/run",),
        )
    )
    out.append(
        Probe(
            "concurrency/api-Trainer.fit-held", "concurrency", "api", call=lambda ctx: _api_fit_held(ctx), names=names
        )
    )

    def subprocess_holder(argv, rel, command):
        def call(ctx):
            (ctx.d / rel).mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(ctx.d / rel), command], stdout=subprocess.PIPE, text=True
            )
            try:
                assert proc.stdout.readline().strip() == "held"
                r = ctx.cli(argv)
                if r.rc in (1, 2) and f"pid {proc.pid}" not in r.stderr:  # a second line: not a clear error
                    r.stderr += f"(probe: the message does not name the holder's pid {proc.pid})\n"
                return r
            finally:
                proc.kill()
                proc.wait()

        return call

    out.append(
        Probe(
            "concurrency/train-held-by-another-process",
            "concurrency",
            "train",
            call=subprocess_holder(train("{fx}/pairs", "{d}/run"), "run", "getkern train"),
            names=("in use by getkern train",),
            timeout=90,
        )
    )
    out.append(
        Probe(
            "concurrency/pairs-held-by-another-process",
            "concurrency",
            "pairs",
            call=subprocess_holder(pairs("{d}/p"), "p", "getkern pairs"),
            names=("in use by getkern pairs",),
            timeout=90,
        )
    )

    def lock_file(content):
        def setup(ctx):
            ctx.copy("run")
            path = ctx.d / "run" / ".getkern.lock"
            path.unlink(missing_ok=True)
            if content == "dir":
                path.mkdir()
            else:
                path.write_bytes(content)

        return setup

    stale = json.dumps(
        {"pid": 999999, "host": "elsewhere", "command": "getkern train", "started": "2020-01-01 00:00:00 +0000"}
    ).encode()
    for name, content, want in [
        ("stale-dead-pid", stale, "accept"),
        ("empty", b"", "accept"),
        ("garbage", b"\x00\xffgarbage", "accept"),
        ("a-folder", "dir", "either"),
    ]:
        out.append(
            Probe(
                f"concurrency/lock-file-{name}",
                "concurrency",
                "train",
                train("{fx}/pairs", "{d}/run", "--max-steps", "3"),
                setup=lock_file(content),
                want=want,
                names=(".getkern.lock",),
                check=run_ok([1, 2, 3], equal="run3"),
                quick=name == "stale-dead-pid",
            )
        )

    def sample_while_held(ctx):
        from getkern.runlock import hold_folder

        ctx.copy("run")
        with hold_folder(ctx.d / "run", "getkern train"):
            return ctx.cli(sample("{d}/run"))

    out.append(
        Probe(
            "concurrency/sample-a-run-being-trained",
            "concurrency",
            "sample",
            call=sample_while_held,
            want="accept",
            check=sample_ok("run"),
        )
    )

    def two_trains(ctx):
        argv = [
            sys.executable,
            "-m",
            "getkern",
            *[ctx.path(a) for a in train("{fx}/pairs", "{d}/run", "--max-steps", "3")],
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs = [
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        ctx.state["two"] = [(p.returncode, e) for p, (o, e) in zip(procs, outs)]
        return None

    def two_ok(ctx, r):
        codes = sorted(c for c, _ in ctx.state["two"])
        errs = [e for c, e in ctx.state["two"] if c != 0]
        if codes not in ([0, 0], [0, 1]):
            return f"exit codes {codes}: {[e.strip().splitlines()[-1:] for e in errs]}"
        if errs and not ("in use by getkern train" in errs[0] and errs[0].count("\n") == 1):
            return f"the refused one said {errs[0].strip()[:200]!r}"
        return run_ok([1, 2, 3], equal="run3")(ctx, r)

    out.append(
        Probe(
            "concurrency/two-trains-at-once",
            "concurrency",
            "api",
            call=two_trains,
            want="accept",
            check=two_ok,
            timeout=150,
        )
    )
    return out


def _api_fit_held(ctx):
    from getkern.distill import TrainConfig, Trainer
    from getkern.runlock import hold_folder

    cfg = TrainConfig(
        pairs=str(ctx.fx / "pairs"),
        out=str(ctx.d / "run"),
        model=dict(MODEL),
        batch_size=4,
        iters=2,
        max_steps=1,
        sample_every=0,
        progress=False,
        device="cpu",
    )
    with hold_folder(ctx.d / "run", "getkern train"):
        return Trainer(cfg).fit()


def resume() -> list[Probe]:
    out: list[Probe] = []
    R = ("{d}/run",)

    def regenerate_other(ctx):  # the run's pair folder replaced by another set at the same path
        ctx.copy("pairs")
        ctx.copy("run")
        _must(train(str(ctx.d / "pairs"), str(ctx.d / "run_here")))
        shutil.rmtree(ctx.d / "pairs")
        shutil.copytree(ctx.fx / "pairs12", ctx.d / "pairs")

    out.append(
        Probe(
            "resume/other-pairs-same-path",
            "resume",
            "train",
            train("{d}/pairs", "{d}/run_here", "--max-steps", "3"),
            setup=regenerate_other,
            names=("pairs",),
            preserve=("{d}/run_here",),
            quick=True,
        )
    )
    out.append(
        Probe(
            "resume/other-pairs-other-path",
            "resume",
            "train",
            train("{fx}/pairs_other", "{d}/run", "--max-steps", "3"),
            setup=copies("run"),
            names=("pairs",),
            preserve=R,
        )
    )
    spellings = [
        ("dot-slash", "{fx}/pairs/./"),
        ("trailing-slash", "{fx}/pairs/"),
        ("double-slash", "{fx}//pairs"),
        ("relative", "REL"),
        ("symlink", "{d}/plink"),
        ("copy", "{d}/pcopy"),
        ("copy-other-install", "{d}/pinst"),
        ("dotdot", "{fx}/run/../pairs"),
    ]
    for name, path in spellings:

        def setup(ctx, name=name):
            ctx.copy("run")
            if name == "symlink":
                os.symlink(ctx.fx / "pairs", ctx.d / "plink")
            if name in ("copy", "copy-other-install"):
                dst = ctx.copy("pairs", "pcopy" if name == "copy" else "pinst")
                if name == "copy-other-install":
                    m = json.loads((dst / "manifest.json").read_text())
                    m["teacher"]["path"] = "/another/install/digits_teacher"
                    (dst / "manifest.json").write_text(json.dumps(m))

        def call(ctx, path=path):
            p = os.path.relpath(ctx.fx / "pairs", ctx.d) if path == "REL" else path
            return ctx.cli(train(p, "{d}/run", "--max-steps", "3"))

        out.append(
            Probe(
                f"resume/same-pairs-{name}",
                "resume",
                "train",
                call=call,
                setup=setup,
                want="accept",
                check=run_ok([1, 2, 3], equal="run3"),
                quick=name == "relative",
            )
        )
    changed = [
        ("--lr", "2e-3"),
        ("--weight-decay", "0.1"),
        ("--ema-decay", "0.5"),
        ("--iters", "3"),
        ("--fpc-weight", "0.5"),
        ("--loss", "l2"),
        ("--grad", "phantom"),
        ("--seed", "1"),
        ("--batch-size", "8"),
        ("--warmup-steps", "5"),
        ("--lr-schedule", "cosine"),
        ("--ema-warmup", None),
        ("--regression-weight", "0.5"),
        ("--adversarial-weight", "0.1"),
        ("--model-args", json.dumps({**MODEL, "hidden_size": 32})),
        ("--freeze", "x_embedder"),
        ("--model", "GET-T/4"),
    ]
    for fl, v in changed:
        field_name = fl[2:].replace("-", "_")
        names = {"--model-args": ("model", "hidden_size"), "--model": ("model",)}.get(fl, (field_name,))
        extra = [fl] + ([v] if v is not None else [])
        out.append(
            Probe(
                f"resume/changed{fl}={v}",
                "resume",
                "train",
                train("{fx}/pairs", "{d}/run", "--max-steps", "3", *extra),
                setup=copies("run"),
                names=names,
                preserve=R,
                quick=fl == "--weight-decay",
            )
        )
    for name, extra, steps, equal in [
        ("max-steps-4", ["--max-steps", "4"], [1, 2, 3, 4], None),
        ("checkpoint-every-2", ["--max-steps", "3", "--checkpoint-every", "2"], [1, 2, 3], "run3"),
        ("log-every-2", ["--max-steps", "3", "--log-every", "2"], [1, 2, 3], "run3"),
        ("sample-every-1", ["--max-steps", "3", "--sample-every", "1"], [1, 2, 3], "run3"),
        ("device-auto", ["--max-steps", "3", "--device", "auto"], [1, 2, 3], "run3"),
        ("grad-accum-2", ["--max-steps", "3", "--grad-accum", "2"], [1, 2, 3], None),
        ("no-progress-dropped", [], None, None),
        ("same-model-named", ["--max-steps", "3", "--model", "GET-T/2"], [1, 2, 3], "run3"),
    ]:
        if steps is None:
            argv = [a for a in train("{fx}/pairs", "{d}/run", "--max-steps", "3") if a != "--no-progress"]
            steps, equal = [1, 2, 3], "run3"
        else:
            argv = train("{fx}/pairs", "{d}/run", *extra)
        out.append(
            Probe(
                f"resume/allowed-{name}",
                "resume",
                "train",
                argv,
                setup=copies("run"),
                want="accept",
                check=run_ok(steps, equal=equal),
                quick=name == "max-steps-4",
            )
        )

    def kept_step2(ctx, r):
        return None if int(checkpoint_state(ctx.d / "run" / "checkpoint.pt")["step"]) == 2 else "checkpoint rewound"

    out.append(
        Probe(
            "resume/max-steps-below-the-run",
            "resume",
            "train",
            train("{fx}/pairs", "{d}/run", "--max-steps", "1"),
            setup=copies("run"),
            want="either",
            names=("max_steps", "--max-steps"),
            check=kept_step2,
            preserve=("{d}/run/checkpoint.pt",),
        )
    )

    def cosine_run(ctx):
        _must(train(str(ctx.fx / "pairs"), str(ctx.d / "run"), "--lr-schedule", "cosine", "--max-steps", "1"))

    out.append(
        Probe(
            "resume/cosine-length-changed",
            "resume",
            "train",
            train("{fx}/pairs", "{d}/run", "--lr-schedule", "cosine", "--max-steps", "2"),
            setup=cosine_run,
            names=("max_steps",),
            preserve=R,
        )
    )

    def api_changed(ctx):
        from getkern.distill import TrainConfig, Trainer

        cfg = TrainConfig(
            pairs=str(ctx.fx / "pairs"),
            out=str(ctx.d / "run"),
            model=dict(MODEL),
            batch_size=4,
            iters=2,
            lr=2e-3,
            checkpoint_every=1,
            sample_every=0,
            max_steps=3,
            progress=False,
            device="cpu",
        )
        return Trainer(cfg).fit()

    out.append(
        Probe(
            "resume/api-changed-lr", "resume", "api", call=api_changed, setup=copies("run"), names=("lr",), preserve=R
        )
    )
    return out


def crash_states() -> list[Probe]:
    out: list[Probe] = []
    T3 = train("{fx}/pairs", "{d}/run", "--max-steps", "3")
    ok3 = run_ok([1, 2, 3], equal="run3")

    def log(edit):
        def setup(ctx):
            ctx.copy("run")
            path = ctx.d / "run" / "log.jsonl"
            path.write_bytes(edit(path.read_bytes()))

        return setup

    lines = lambda raw: raw.decode().splitlines(keepends=True)  # noqa: E731
    cases = [
        ("torn-last-log-line", log(lambda b: b + b'{"step": 3, "lo'), "accept", ok3, ()),
        (
            "garbage-middle-log-line",
            log(lambda b: "".join([lines(b)[0], "garbage\n", *lines(b)[1:]]).encode()),
            "refuse",
            None,
            ("log.jsonl", "line 2"),
        ),
        (
            "log-ahead-of-checkpoint",
            log(lambda b: b + b'{"step": 3, "loss": 1.0}\n{"step": 4, "loss": 1.0}\n'),
            "accept",
            ok3,
            (),
        ),
        ("log-non-utf8-tail", log(lambda b: b + b"\xff\xfe\x00"), "accept", ok3, ()),
        ("log-blank-lines", log(lambda b: b.replace(b"\n", b"\n\n")), "accept", ok3, ()),
        (
            "log-empty",
            log(lambda b: b""),
            "either",
            lambda ctx, r: None if steps_logged(ctx.d / "run")[-1:] == [3] else f"log {steps_logged(ctx.d / 'run')}",
            ("log.jsonl",),
        ),
    ]
    for name, setup, want, check, names in cases:
        out.append(
            Probe(
                f"crash/{name}",
                "crash",
                "train",
                T3,
                setup=setup,
                want=want,
                check=check,
                names=names,
                quick=name == "torn-last-log-line",
            )
        )

    def stale_tmp(ctx):
        ctx.copy("run")
        for rel in (".checkpoint.pt.1a2b3c.tmp", "ema/.model.safetensors.4d5e6f.tmp", ".log.jsonl.778899.tmp"):
            (ctx.d / "run" / rel).write_bytes(b"half-written")

    def no_tmp(ctx, r):
        left = sorted(str(p.relative_to(ctx.d)) for p in (ctx.d / "run").rglob("*.tmp"))
        return f"left {left}" if left else ok3(ctx, r)

    out.append(
        Probe(
            "crash/stale-tmp-files-run", "crash", "train", T3, setup=stale_tmp, want="accept", check=no_tmp, quick=True
        )
    )

    def rm(*rels):
        def setup(ctx):
            ctx.copy("run")
            for rel in rels:
                p = ctx.d / "run" / rel
                shutil.rmtree(p) if p.is_dir() else p.unlink()

        return setup

    out.append(
        Probe(
            "crash/checkpoint-missing-prev-present",
            "crash",
            "train",
            T3,
            setup=rm("checkpoint.pt", "checkpoint.pt.sha256"),
            want="accept",
            check=ok3,
        )
    )
    out.append(
        Probe(
            "crash/checkpoint-sidecar-missing",
            "crash",
            "train",
            T3,
            setup=rm("checkpoint.pt.sha256"),
            want="accept",
            check=ok3,
        )
    )
    out.append(
        Probe(
            "crash/sidecar-without-checkpoint",
            "crash",
            "train",
            T3,
            setup=rm("checkpoint.pt"),
            want="either",
            check=ok3,
            names=("checkpoint",),
        )
    )
    out.append(Probe("crash/ema-folder-missing", "crash", "train", T3, setup=rm("ema"), want="accept", check=ok3))
    out.append(
        Probe(
            "crash/train_config-missing", "crash", "train", T3, setup=rm("train_config.json"), want="accept", check=ok3
        )
    )
    out.append(
        Probe(
            "crash/log-missing",
            "crash",
            "train",
            T3,
            setup=rm("log.jsonl"),
            want="either",
            check=lambda ctx, r: None if steps_logged(ctx.d / "run")[-1:] == [3] else "log wrong",
            names=("log.jsonl",),
        )
    )

    def partial_pairs(how):
        def setup(ctx):
            ctx.copy("pairs")
            m = json.loads((ctx.d / "pairs" / "manifest.json").read_text())
            m["complete"] = False
            (ctx.d / "pairs" / "manifest.json").write_text(json.dumps(m, indent=2))
            shard = ctx.d / "pairs" / SHARD2
            if how == "missing":
                shard.unlink()
            elif how == "half":
                shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
            elif how == "tmp":
                (ctx.d / "pairs" / f".{SHARD2}.abcdef.tmp").write_bytes(b"half")
                shard.unlink()

        return setup

    def no_pair_tmp(ctx, r):
        left = sorted(p.name for p in (ctx.d / "pairs").glob("*.tmp"))
        return f"left {left}" if left else pairs_ok("pairs")(ctx, r)

    for how in ("missing", "half", "tmp"):
        out.append(
            Probe(
                f"crash/pairs-unfinished-shard-{how}",
                "crash",
                "pairs",
                pairs("{d}/pairs"),
                setup=partial_pairs(how),
                want="accept",
                check=no_pair_tmp,
                quick=how == "half",
            )
        )
    out.append(
        Probe(
            "crash/train-on-unfinished-pairs",
            "crash",
            "train",
            train("{d}/pairs", "{d}/run"),
            setup=partial_pairs("missing"),
            names=("manifest.json", "complete", "finish"),
        )
    )

    # real SIGKILLs
    def kill_train(after_lines: int):
        def call(ctx):
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            argv = [
                sys.executable,
                "-m",
                "getkern",
                *[ctx.path(a) for a in train("{fx}/pairs", "{d}/run", "--max-steps", "500")],
            ]
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            log_file = ctx.d / "run" / "log.jsonl"
            t0 = time.time()
            try:
                while time.time() - t0 < 90:
                    if log_file.is_file() and len(log_file.read_text().splitlines()) >= after_lines:
                        break
                    time.sleep(0.01)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            ctx.state["killed_at"] = len(log_file.read_text().splitlines()) if log_file.is_file() else 0
            step = ctx.state["killed_at"] + 2
            ctx.state["target"] = step
            return ctx.cli(train("{fx}/pairs", "{d}/run", "--max-steps", str(step)))

        return call

    def killed_ok(ctx, r):
        target = ctx.state["target"]
        got = steps_logged(ctx.d / "run")
        state = checkpoint_state(ctx.d / "run" / "checkpoint.pt")
        if got != list(range(1, target + 1)) or int(state["step"]) != target:
            return f"killed after {ctx.state['killed_at']} log lines: log {got}, checkpoint step {state['step']}"
        return None

    for n in (1, 3, 6):
        out.append(
            Probe(
                f"crash/sigkill-train-after-{n}-steps",
                "crash",
                "train",
                call=kill_train(n),
                want="accept",
                check=killed_ok,
                timeout=150,
            )
        )

    def kill_pairs(ctx):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        big = ["--num-pairs", "160", "--shard-size", "8", "--batch-size", "8", "--steps", "6"]
        argv = [sys.executable, "-m", "getkern", *pairs(str(ctx.d / "p"), *big)]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        try:
            while time.time() - t0 < 90 and len(list((ctx.d / "p").glob("pairs-*.safetensors"))) < 3:
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        ctx.state["shards_at_kill"] = len(list((ctx.d / "p").glob("pairs-*.safetensors")))
        _must(pairs(str(ctx.d / "clean"), *big))
        return ctx.cli(pairs("{d}/p", *big))

    def pairs_equal(ctx, r):
        import torch

        from getkern.data import PairDataset

        for a, b in zip(PairDataset(ctx.d / "p").tensors(), PairDataset(ctx.d / "clean").tensors()):
            if a is not None and not torch.equal(a, b):
                return f"killed at {ctx.state['shards_at_kill']} shards: the finished set differs from a clean one"
        return None

    out.append(
        Probe(
            "crash/sigkill-pairs-midway",
            "crash",
            "pairs",
            call=kill_pairs,
            want="accept",
            check=pairs_equal,
            timeout=150,
        )
    )
    return out


def umask_probes() -> list[Probe]:
    out: list[Probe] = []

    def modes_ok(root: str, mask: int):
        def check(ctx, r):
            bad = []
            for p in [ctx.d / root, *(ctx.d / root).rglob("*")]:
                if p.name == ".getkern.lock":
                    continue
                want = (0o777 if p.is_dir() else 0o666) & ~mask
                got = p.stat().st_mode & 0o777
                if got != want:
                    bad.append(f"{p.relative_to(ctx.d)} {oct(got)} (open() gives {oct(want)})")
            return "; ".join(bad[:4]) or None

        return check

    cmds = {
        "pairs": (pairs("{d}/p"), "p"),
        "train": (train("{fx}/pairs", "{d}/run"), "run"),
        "sample": (sample("{fx}/model", "{d}/s"), "s"),
        "profile": (profile("{fx}/model", "{d}/prof"), "prof"),
        "fid-stats": (fid_stats("{fx}/images.npy", "{d}/st/stats.npz"), "st"),
    }
    for cmd, (argv, root) in cmds.items():
        for mask in (0o022, 0o077, 0o002):
            if cmd in ("profile", "fid-stats") and mask == 0o002:
                continue
            out.append(
                Probe(
                    f"umask/{cmd}/{mask:03o}",
                    "umask",
                    cmd,
                    argv,
                    umask=mask,
                    want="accept",
                    check=modes_ok(root, mask),
                    quick=(cmd, mask) == ("train", 0o077),
                )
            )

    def save_pretrained_mode(ctx):
        from getkern.models import GET

        GET(input_size=8, in_channels=1, **MODEL).save_pretrained(ctx.d / "m")

    out.append(
        Probe(
            "umask/api-save_pretrained/022",
            "umask",
            "api",
            call=save_pretrained_mode,
            umask=0o022,
            want="accept",
            check=modes_ok("m", 0o022),
        )
    )
    return out


def pickles() -> list[Probe]:
    out: list[Probe] = []
    for layout in ("ref-args", "top", "legacy", "raw-pickle"):
        for payload in ("system", "exec"):
            out.append(
                Probe(
                    f"pickle/sample/{layout}-{payload}",
                    "pickle",
                    "sample",
                    sample("{d}/evil.pth"),
                    setup=evil_file("evil.pth", layout, payload),
                    names=("evil.pth",),
                    quick=(layout, payload) == ("ref-args", "system"),
                )
            )
        out.append(
            Probe(
                f"pickle/load/{layout}-exec",
                "pickle",
                "api",
                call=lambda ctx: __import__("getkern").load(ctx.d / "evil.pth"),
                setup=evil_file("evil.pth", layout, "exec"),
                names=("evil.pth",),
                quick=layout == "legacy",
            )
        )
    for suffix in (".ckpt", ".bin", ".tar", ".pt"):
        out.append(
            Probe(
                f"pickle/sample/suffix{suffix}",
                "pickle",
                "sample",
                sample("{d}/evil" + suffix),
                setup=evil_file("evil" + suffix, "ref-args"),
                names=("evil" + suffix,),
            )
        )
    out.append(
        Probe(
            "pickle/sample/no-suffix",
            "pickle",
            "sample",
            sample("{d}/evil"),
            setup=evil_file("evil", "top"),
            names=("evil",),
        )
    )
    out.append(
        Probe(
            "pickle/profile/ref-args",
            "pickle",
            "profile",
            profile("{d}/evil.pth"),
            setup=evil_file("evil.pth", "ref-args"),
            names=("evil.pth",),
        )
    )
    out.append(
        Probe(
            "pickle/profile/legacy",
            "pickle",
            "profile",
            profile("{d}/evil.pth"),
            setup=evil_file("evil.pth", "legacy"),
            names=("evil.pth",),
        )
    )
    out.append(
        Probe(
            "pickle/GET.from_official_checkpoint/ref-args",
            "pickle",
            "api",
            call=lambda ctx: __import__("getkern").GET.from_official_checkpoint(ctx.d / "evil.pth"),
            setup=evil_file("evil.pth", "ref-args", "exec"),
            names=("evil.pth",),
        )
    )
    out.append(
        Probe(
            "pickle/train-init/ref-args",
            "pickle",
            "train",
            train("{fx}/pairs", "{d}/run", "--init", "{d}/evil.pth"),
            setup=evil_file("evil.pth", "ref-args"),
            names=("evil.pth",),
        )
    )
    out.append(
        Probe(
            "pickle/train-init/in-state",
            "pickle",
            "train",
            train("{fx}/pairs", "{d}/run", "--init", "{d}/evil.pt"),
            setup=evil_file("evil.pt", "in-state"),
            names=("evil.pt",),
        )
    )
    run_evil = copies("run", then=evil_file("run/checkpoint.pt", "train-ckpt"))
    out.append(
        Probe(
            "pickle/run-checkpoint/sample",
            "pickle",
            "sample",
            sample("{d}/run"),
            setup=run_evil,
            names=("checkpoint.pt",),
            quick=True,
        )
    )
    out.append(
        Probe(
            "pickle/run-checkpoint/train-resume",
            "pickle",
            "train",
            train("{fx}/pairs", "{d}/run", "--max-steps", "3"),
            setup=run_evil,
            names=("checkpoint.pt",),
            want="either",
            check=run_ok([1, 2, 3], equal="run3"),
        )
    )
    out.append(
        Probe(
            "pickle/run-checkpoint/load",
            "pickle",
            "api",
            call=lambda ctx: __import__("getkern").load(ctx.d / "run"),
            setup=run_evil,
            names=("checkpoint.pt",),
        )
    )
    out.append(
        Probe(
            "pickle/run-checkpoint/profile",
            "pickle",
            "profile",
            profile("{d}/run"),
            setup=run_evil,
            names=("checkpoint.pt",),
        )
    )
    out.append(
        Probe(
            "pickle/pairs-teacher-pkl-untrusted",
            "pickle",
            "pairs",
            pairs("{d}/p", teacher="{d}/evil.pkl"),
            setup=evil_file("evil.pkl", "raw-pickle"),
            names=("--trust-pickle", "evil.pkl"),
            quick=True,
        )
    )
    out.append(
        Probe(
            "pickle/fid-stats-inception-weights",
            "pickle",
            "fid-stats",
            fid_stats("{fx}/images.npy", "{d}/stats.npz", "--inception-weights", "{d}/evil.pth"),
            setup=evil_file("evil.pth", "top"),
            names=("evil.pth",),
        )
    )
    out.append(
        Probe(
            "pickle/profile-inception-weights",
            "pickle",
            "profile",
            profile(
                "{fx}/model",
                "{d}/prof",
                "--metric",
                "fid",
                "--ref-stats",
                "{fx}/stats.npz",
                "--inception-weights",
                "{d}/evil.pth",
            ),
            setup=evil_file("evil.pth", "top"),
            names=("evil.pth",),
        )
    )
    out.append(
        Probe(
            "pickle/fid-stats-input-object-npy",
            "pickle",
            "fid-stats",
            fid_stats("{d}/evil.npy", "{d}/stats.npz"),
            setup=evil_file("evil.npy", "npy-object"),
            names=("evil.npy",),
        )
    )
    out.append(
        Probe(
            "pickle/profile-ref-stats-object-npz",
            "pickle",
            "profile",
            profile(
                "{fx}/model",
                "{d}/prof",
                "--metric",
                "fid",
                "--ref-stats",
                "{d}/evil.npz",
                "--inception-weights",
                "{fx}/tiny_inception.pt",
            ),
            setup=evil_file("evil.npz", "npz-object"),
            names=("evil.npz",),
        )
    )
    out.append(
        Probe(
            "pickle/load_stats-object-npz",
            "pickle",
            "api",
            call=lambda ctx: __import__("getkern.metrics.stats_file", fromlist=["load_stats"]).load_stats(
                ctx.d / "evil.npz"
            ),
            setup=evil_file("evil.npz", "npz-object"),
            names=("evil.npz",),
        )
    )
    return out


def solver() -> list[Probe]:
    out: list[Probe] = []

    def problem(kind, dtype_name, seed=0, n=32, batch=3):
        import torch

        dtype = getattr(torch, dtype_name)
        g = torch.Generator().manual_seed(seed)
        if kind.startswith("linear"):
            top = float(kind.split("-")[1])
            q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
            W = q @ torch.diag(torch.linspace(-top, top, n, dtype=torch.float64)) @ q.T
            b = torch.randn(batch, n, generator=g, dtype=torch.float64)
            W, b = W.to(dtype), b.to(dtype)
            return lambda z: z @ W.T + b
        W = torch.randn(n, n, generator=g, dtype=torch.float64)
        W *= 0.9 / torch.linalg.matrix_norm(W, ord=2)
        b = torch.randn(batch, n, generator=g, dtype=torch.float64)
        W, b = W.to(dtype), b.to(dtype)
        return lambda z: torch.tanh(z @ W.T + b)

    def never_slower(kind, dtype_name, backend):
        def call(ctx):
            import torch

            from getkern import deq

            f = problem(kind, dtype_name)
            dtype = getattr(torch, dtype_name)
            z0 = torch.zeros(3, 32, dtype=dtype)
            traces = {
                s: deq.solve(f, z0, solver=s, max_iter=400, stop="rel", backend=backend)[1]["rel_trace"]
                for s in ("fixed_point", "anderson")
            }
            lowest = 10 * traces["fixed_point"].amin(0).clamp_min(torch.finfo(dtype).eps)
            for tol in torch.logspace(0, -16, 33, dtype=torch.float64).tolist():
                reach = {}
                for s, t in traces.items():
                    hit = t < tol
                    reach[s] = torch.where(hit.any(0), hit.int().argmax(0) + 1, t.shape[0] + 1)
                slower = (reach["anderson"] > reach["fixed_point"]) & (lowest <= tol)
                if slower.any():
                    ctx.state["slower"] = (
                        f"to tol {tol:.1e}: Anderson needs {reach['anderson'].tolist()} iterations, "
                        f"the fixed point {reach['fixed_point'].tolist()}"
                    )
                    break
            return traces

        return call

    def slower_check(ctx, r):
        return ctx.state.get("slower")

    for kind in ("linear-0.9", "linear-0.95", "linear-0.99", "tanh"):
        for dtype_name in ("float64", "float32"):
            for backend in ("torch", "auto"):
                if backend == "auto" and kind == "linear-0.9":
                    continue
                out.append(
                    Probe(
                        f"solver/never-slower/{kind}/{dtype_name}/{backend}",
                        "solver",
                        "api",
                        call=never_slower(kind, dtype_name, backend),
                        want="accept",
                        check=slower_check,
                        quick=(kind, dtype_name, backend) == ("linear-0.95", "float32", "torch"),
                    )
                )

    def nan_leak(solver_name, how, backend="torch"):
        def call(ctx):
            import torch

            from getkern import deq

            f0 = problem("linear-0.9", "float32", batch=4)
            z0 = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
            calls = {"n": 0}

            def f(z):
                out = f0(z).clone() if z.shape[0] == 4 else f0_sub(z)
                calls["n"] += 1
                if how == "f-nan-once" and calls["n"] == 3:
                    out[1] = float("nan")
                if how == "f-nan-always" and calls["n"] >= 3:
                    out[1] = float("nan")
                if how == "f-inf-once" and calls["n"] == 3:
                    out[1] = float("inf")
                if how == "f-huge-once" and calls["n"] == 3:
                    out[1] = 1e30
                return out

            W_b = f0  # the solo reference: the same map on samples 0, 2, 3

            def f0_sub(z):
                full = torch.zeros(4, 32)
                full[[0, 2, 3]] = z
                return W_b(full)[[0, 2, 3]]

            start = z0.clone()
            if how == "z0-nan":
                start[1] = float("nan")
            z, info = deq.solve(f, start, solver=solver_name, max_iter=40, backend=backend)
            ref, _ = deq.solve(f0_sub, z0[[0, 2, 3]].clone(), solver=solver_name, max_iter=40, backend=backend)
            ctx.state["leak"] = None
            others = z[[0, 2, 3]]
            if not torch.isfinite(others).all():
                ctx.state["leak"] = "a non-finite value reached the other samples"
            elif not torch.allclose(others, ref, rtol=1e-5, atol=1e-5):
                ctx.state["leak"] = (
                    f"the other samples differ from solving them alone by {float((others - ref).abs().max()):.3g}"
                )
            elif how.startswith("f-") and how != "f-nan-always" and not torch.isfinite(z[1]).all():
                ctx.state["leak"] = "the faulty sample did not recover its best finite iterate"
            return z

        return call

    for solver_name in ("fixed_point", "anderson"):
        for how in ("z0-nan", "f-nan-once", "f-nan-always", "f-inf-once", "f-huge-once"):
            out.append(
                Probe(
                    f"solver/no-nan-leak/{solver_name}/{how}",
                    "solver",
                    "api",
                    call=nan_leak(solver_name, how),
                    want="accept",
                    check=lambda ctx, r: ctx.state.get("leak"),
                    quick=(solver_name, how) == ("anderson", "f-nan-once"),
                )
            )
    for how in ("z0-nan", "f-nan-once"):
        out.append(
            Probe(
                f"solver/no-nan-leak/anderson/{how}/auto",
                "solver",
                "api",
                call=nan_leak("anderson", how, "auto"),
                want="accept",
                check=lambda ctx, r: ctx.state.get("leak"),
            )
        )
    return out


def commands() -> list[Probe]:
    out: list[Probe] = []
    for name, ckpt in [
        ("run", "{fx}/run"),
        ("run-trailing-slash", "{fx}/run/"),
        ("checkpoint.pt", "{fx}/run/checkpoint.pt"),
        ("ema", "{fx}/run/ema"),
        ("ema-weights-file", "{fx}/run/ema/model.safetensors"),
        ("ema-config-file", "{fx}/run/ema/config.json"),
        ("symlink", "{d}/rlink"),
    ]:
        setup = (lambda ctx: os.symlink(ctx.fx / "run", ctx.d / "rlink")) if name == "symlink" else None
        out.append(
            Probe(
                f"commands/sample-checkpoint-{name}",
                "commands",
                "sample",
                sample(ckpt),
                setup=setup,
                want="accept",
                check=sample_ok("run"),
                quick=name == "run",
            )
        )
    out.append(
        Probe(
            "commands/sample-checkpoint-relative",
            "commands",
            "sample",
            call=lambda ctx: ctx.cli(sample(os.path.relpath(ctx.fx / "run", ctx.d))),
            want="accept",
            check=sample_ok("run"),
        )
    )
    out.append(
        Probe(
            "commands/sample-reference-pth",
            "commands",
            "sample",
            sample("{fx}/ref.pth"),
            want="accept",
            check=sample_ok("ref.pth"),
        )
    )
    out.append(
        Probe(
            "commands/sample-model-folder",
            "commands",
            "sample",
            sample("{fx}/model"),
            want="accept",
            check=sample_ok("model"),
        )
    )
    out.append(
        Probe(
            "commands/sample-cond-model",
            "commands",
            "sample",
            sample("{fx}/model_cond", "{d}/s", "--per-class", "1"),
            want="accept",
            check=sample_ok("model_cond", per_class=1),
        )
    )
    out.append(
        Probe(
            "commands/sample-guided-with-guidance",
            "commands",
            "sample",
            sample("{fx}/run_guided", "{d}/s", "--per-class", "1", "--guidance", "1"),
            want="accept",
            check=sample_ok("run_guided", per_class=1, guidance=1.0, name="samples-fixed_point-iters1-w1"),
        )
    )
    out.append(
        Probe(
            "commands/sample-guided-without-guidance",
            "commands",
            "sample",
            sample("{fx}/run_guided"),
            names=("--guidance",),
        )
    )
    out.append(
        Probe(
            "commands/sample-guidance-unconditional",
            "commands",
            "sample",
            sample("{fx}/model", "{d}/s", "--guidance", "1"),
            names=("--guidance",),
        )
    )
    out.append(Probe("commands/sample-vit", "commands", "sample", sample("{fx}/vit"), names=("ViT",)))
    out.append(Probe("commands/profile-vit", "commands", "profile", profile("{fx}/vit"), names=("ViT",)))
    out.append(
        Probe(
            "commands/profile-checkpoint-run",
            "commands",
            "profile",
            profile("{fx}/run"),
            want="accept",
            check=profile_ok("step 2"),
            quick=True,
        )
    )
    out.append(
        Probe(
            "commands/profile-checkpoint-run-ema",
            "commands",
            "profile",
            profile("{fx}/run/ema"),
            want="accept",
            check=profile_ok(),
        )
    )
    out.append(
        Probe(
            "commands/profile-checkpoint-pt",
            "commands",
            "profile",
            profile("{fx}/run/checkpoint.pt"),
            want="accept",
            check=profile_ok("step 2"),
        )
    )
    out.append(Probe("commands/fid-stats-ok", "commands", "fid-stats", fid_stats(), want="accept", check=stats_ok()))
    for name, argv, names in [
        ("no-command", [], ("command",)),
        ("unknown-command", ["frobnicate"], ("frobnicate",)),
        ("train-without-out", ["train", "--pairs", "x"], ("--out",)),
        ("unknown-flag", ["sample", "--checkpoint", "x", "--out", "y", "--bogus"], ("--bogus",)),
    ]:
        cmd = argv[0] if argv and argv[0] in ("train", "sample") else ""
        out.append(Probe(f"commands/usage-{name}", "commands", cmd, argv, names=names, quick=name == "unknown-flag"))
    return out
