"""The model API: the Hub-layout save_pretrained format (flat config.json, digest, model card), the
first nested format, huggingface_hub's PyTorchModelHubMixin both ways, configs checked against the
weights before anything is allocated, getkern.load on every checkpoint kind, config validation,
and getkern.sample's one-generator seeding."""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import getkern
from getkern import GET, ViT
from getkern.checkpoint import TRAIN_CHECKPOINT_FORMAT, CheckpointError
from getkern.errors import UsageError

TINY = dict(input_size=8, patch_size=4, in_channels=1, hidden_size=16, depth=1, num_heads=2, num_classes=10)
FAST = dict(backend="torch")  # the Triton interpreter (TRITON_INTERPRET=1 in tests) is slow
FAST_GET = dict(backend="torch", solver_backend="torch")


def tiny(cls=GET, seed=0, **kw):
    torch.manual_seed(seed)
    extra = dict(deq_depth=1, solver_backend="torch") if cls is GET else {}
    model = cls(**{**TINY, **extra, **kw}, backend="torch")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)  # fresh models decode zeros: every comparison would pass
    return model.eval()


def outputs(model, n=3, seed=5):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, model.in_channels, model.input_size, model.input_size, generator=g)
    y = torch.arange(n) % model.num_classes if model.cond else None
    with torch.no_grad():
        if isinstance(model, GET):
            z0 = torch.randn(n, model.x_embedder.num_patches, model.hidden_size, generator=g)
            return model(noise.to(model.pos_embed.dtype), y, iters=3, z0=z0.to(model.pos_embed.dtype), tol=None)
        return model(noise.to(model.pos_embed.dtype), y)


# ---------------------------------------------------------------- the format


@pytest.mark.parametrize("cls", [GET, ViT])
def test_round_trip_writes_the_hub_layout_and_loads_in_eval_mode(tmp_path, cls):
    model = tiny(cls, cond=True)
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    text = (tmp_path / "m" / "config.json").read_text()
    config = json.loads(text)
    assert text == json.dumps(config, sort_keys=True, indent=2) + "\n"  # as PyTorchModelHubMixin writes it
    assert config["_class_name"] == cls.__name__ and config["_getkern_version"] == getkern.__version__
    assert len(config["_weights_sha256"]) == 64 and config["guidance_range"] is None
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    assert kwargs == {**model.config, "guidance_range": None}  # the constructor's arguments, flat
    assert "backend" not in config and "solver_backend" not in config  # runtime choices, not stored
    card = (tmp_path / "m" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: getkern") and "getkern.load" in card and "not clamped" in card

    loaded = cls.from_pretrained(tmp_path / "m", **FAST)
    assert not loaded.training
    torch.testing.assert_close(outputs(loaded), outputs(model.eval()), rtol=0, atol=0)
    again = getkern.load(tmp_path / "m", **FAST)
    assert type(again) is cls and not again.training
    torch.testing.assert_close(outputs(again), outputs(model), rtol=0, atol=0)


def test_torch_dtype_and_device(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    half = GET.from_pretrained(tmp_path / "m", torch_dtype=torch.bfloat16, device="cpu", **FAST)
    assert half.pos_embed.dtype == torch.bfloat16 and half.pos_embed.device.type == "cpu" and not half.training
    assert GET.from_pretrained(tmp_path / "m", torch_dtype="float64", **FAST).pos_embed.dtype == torch.float64
    assert GET.from_pretrained(tmp_path / "m", torch_dtype="auto", **FAST).pos_embed.dtype == torch.float32
    torch.testing.assert_close(outputs(half).float(), outputs(model), atol=0.1, rtol=0.1)
    half.save_pretrained(tmp_path / "bf16")
    assert getkern.load(tmp_path / "bf16", torch_dtype="auto", **FAST).pos_embed.dtype == torch.bfloat16
    assert getkern.load(tmp_path / "bf16", **FAST).pos_embed.dtype == torch.float32  # default: float32
    meta = getkern.load(tmp_path / "m", device=torch.device("meta"), **FAST)
    assert meta.pos_embed.is_meta
    with pytest.raises(UsageError, match="torch_dtype='int8'"):
        GET.from_pretrained(tmp_path / "m", torch_dtype="int8")
    with pytest.raises(UsageError, match="torch_dtype=torch.int64"):
        getkern.load(tmp_path / "m", torch_dtype=torch.int64)
    with pytest.raises(UsageError, match="device='gpu0'"):
        getkern.load(tmp_path / "m", device="gpu0")


def test_the_first_nested_format_still_loads(tmp_path):
    model = tiny(cond=True)
    folder = tmp_path / "old"
    folder.mkdir()
    # exactly what getkern wrote before the Hub layout
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    (folder / "config.json").write_text(
        json.dumps({"format": "getkern", "format_version": 1, "architecture": "GET", "config": model.config}, indent=2)
    )
    for loaded in (GET.from_pretrained(folder, **FAST), getkern.load(folder, **FAST)):
        assert not loaded.training and loaded.cond
        torch.testing.assert_close(outputs(loaded), outputs(model), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="holds a 'GET', not a ViT"):
        ViT.from_pretrained(folder)


def test_saving_again_keeps_a_model_card_and_refreshes_the_digest(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "README.md").write_text("my card")
    with torch.no_grad():
        model.final_layer.linear.bias.add_(1)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "README.md").read_text() == "my card"  # never overwritten (as the Hub mixin)
    torch.testing.assert_close(outputs(GET.from_pretrained(tmp_path / "m", **FAST)), outputs(model), rtol=0, atol=0)
    tiny().save_pretrained(tmp_path / "nocard", model_card=False)
    assert not (tmp_path / "nocard" / "README.md").exists()


# ---------------------------------------------------------------- checks before building


def _edit_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("hidden_size", 40000, r"hidden_size=40000, but the weights have hidden_size 16"),
        ("depth", 100000, r"depth=100000, but the weights hold 1 blocks"),
        ("deq_depth", 7, r"deq_depth=7, but the weights hold 1 deq_blocks"),
        ("input_size", 4096, r"input_size=4096 with patch_size=4 makes 1048576 tokens"),
        ("cond", True, r"cond=True, but the weights have no class embedding"),
        ("mlp_ratio", 8.0, r"blocks.0.mlp.fc1.weight: file \(64, 16\) vs model \(128, 16\)"),
    ],
)
def test_oversized_or_foreign_configs_are_refused_before_allocating(tmp_path, field, value, match):
    tiny().save_pretrained(tmp_path / "m")
    _edit_config(tmp_path / "m", **{field: value})
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match=match):
        GET.from_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match=match):
        getkern.load(tmp_path / "m")
    assert time.perf_counter() - t < 5  # hidden_size 40000 once tried 19.2 GB; depth 100000 ran a minute


@pytest.mark.parametrize("field, value", [("num_heads", -2), ("cond", "yes"), ("patch_size", 3)])
def test_invalid_fields_in_a_config_file_are_checkpoint_errors(tmp_path, field, value):
    tiny().save_pretrained(tmp_path / "m")
    _edit_config(tmp_path / "m", **{field: value})
    with pytest.raises(CheckpointError, match=rf"config.json: GET: {field}={value!r} is invalid"):
        GET.from_pretrained(tmp_path / "m")


def test_unknown_config_keys_and_overrides(tmp_path):
    tiny().save_pretrained(tmp_path / "m")
    with pytest.raises(TypeError, match="depht"):
        GET.from_pretrained(tmp_path / "m", depht=2)
    _edit_config(tmp_path / "m", colour="red")
    with pytest.raises(CheckpointError, match=r"unknown GET arguments \['colour'\]"):
        GET.from_pretrained(tmp_path / "m")


def test_a_flipped_byte_is_refused_unless_verify_is_off(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x40  # inside the last tensor's data: still a valid file
    weights.write_bytes(bytes(data))
    for load in (GET.from_pretrained, getkern.load):
        with pytest.raises(CheckpointError, match="does not match the SHA-256 .*verify=False"):
            load(tmp_path / "m", **FAST)
    loaded = GET.from_pretrained(tmp_path / "m", verify=False, **FAST)
    changed = [k for k, v in loaded.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert len(changed) == 1
    assert getkern.load(tmp_path / "m", verify=False, **FAST) is not None


def test_a_folder_without_a_digest_loads(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["_weights_sha256"], config["_class_name"]  # as a plain PyTorchModelHubMixin writes it
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    torch.testing.assert_close(outputs(getkern.load(tmp_path / "m", **FAST)), outputs(model), rtol=0, atol=0)
    _edit_config(tmp_path / "m", _weights_sha256="xyz")
    with pytest.raises(CheckpointError, match="_weights_sha256 is not a SHA-256"):
        getkern.load(tmp_path / "m")


# ---------------------------------------------------------------- huggingface_hub


def test_pytorch_model_hub_mixin_reads_and_writes_the_same_folders(tmp_path, capsys):
    hub = pytest.importorskip("huggingface_hub")

    class HubGET(hub.PyTorchModelHubMixin, GET):
        """GET with huggingface_hub's own save_pretrained / from_pretrained."""

    ours = tiny(cond=True)
    ours.save_pretrained(tmp_path / "ours")
    theirs = HubGET.from_pretrained(str(tmp_path / "ours"))  # the mixin's reader on getkern's folder
    assert not theirs.training and theirs.cond
    for k, v in ours.state_dict().items():
        assert torch.equal(theirs.state_dict()[k], v), k

    written = HubGET(**{**TINY, "deq_depth": 1, "cond": True}, **FAST_GET)
    written.load_state_dict(ours.state_dict())
    written.save_pretrained(tmp_path / "theirs")  # the mixin's writer
    config = json.loads((tmp_path / "theirs" / "config.json").read_text())
    assert "_class_name" not in config and config["hidden_size"] == 16
    loaded = GET.from_pretrained(tmp_path / "theirs", **FAST_GET)
    torch.testing.assert_close(outputs(loaded), outputs(ours), rtol=0, atol=0)
    assert type(getkern.load(tmp_path / "theirs", **FAST)) is GET  # unmarked: GET by its weights' keys


def test_hub_ids_download_with_snapshot_download(tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    model = tiny()
    model.save_pretrained(tmp_path / "snapshot")
    calls = []

    def fake_snapshot_download(repo_id, **kw):
        calls.append((repo_id, kw))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.chdir(tmp_path)
    loaded = getkern.load("someone/tiny-get", **FAST)
    again = GET.from_pretrained("someone/tiny-get", revision="v1", **FAST)
    torch.testing.assert_close(outputs(loaded), outputs(model), rtol=0, atol=0)
    assert not again.training and calls[0][0] == "someone/tiny-get" and calls[1][1]["revision"] == "v1"
    assert set(calls[0][1]["allow_patterns"]) == {"config.json", "model.safetensors", "README.md"}

    def failing(repo_id, **kw):
        raise OSError("no network")

    monkeypatch.setattr(hub, "snapshot_download", failing)
    with pytest.raises(CheckpointError, match="downloading it from the Hugging Face Hub failed: OSError: no network"):
        getkern.load("someone/absent")
    (tmp_path / "runs").mkdir()
    with pytest.raises(CheckpointError, match="does not exist"):  # a local typo is no Hub id
        getkern.load("runs/get")


def test_push_to_hub_uploads_the_saved_folder(monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    uploads = []

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("Repo", (), {"repo_id": f"user/{repo_id}"})()

        def upload_folder(self, *, repo_id, folder_path, **kw):
            uploads.append((repo_id, sorted(p.name for p in Path(folder_path).iterdir()), kw))
            return "https://huggingface.co/user/tiny/commit/1"

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    assert tiny().push_to_hub("tiny", commit_message="hi") == "https://huggingface.co/user/tiny/commit/1"
    assert uploads[0][:2] == ("user/tiny", ["README.md", "config.json", "model.safetensors"])
    assert uploads[0][2]["commit_message"] == "hi"


def test_without_huggingface_hub(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="needs the optional huggingface_hub package"):
        getkern.load("someone/tiny-get")
    with pytest.raises(ImportError, match="push_to_hub needs the optional huggingface_hub"):
        tiny().push_to_hub("tiny")
    tiny().save_pretrained(tmp_path / "m")
    assert getkern.load(tmp_path / "m", **FAST) is not None


def test_getkern_never_imports_huggingface_hub_for_local_folders(tmp_path):
    code = (
        "import sys, torch, getkern\n"
        f"m = getkern.GET(input_size=8, patch_size=4, in_channels=1, hidden_size=16, depth=1, deq_depth=1, "
        f"num_heads=2, backend='torch')\n"
        f"m.save_pretrained({str(tmp_path / 'm')!r}); getkern.load({str(tmp_path / 'm')!r}, backend='torch')\n"
        "assert 'huggingface_hub' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------- getkern.load on every kind


def train_state(online, ema, step=3):
    """A checkpoint.pt as getkern.distill.trainer.Trainer.state_dict writes it (the parts loading reads)."""
    return {
        "format": TRAIN_CHECKPOINT_FORMAT,
        "step": step,
        "model": online.state_dict(),
        "ema": ema.state_dict(),
        "opt": {},
        "model_class": type(ema).__name__,
        "rng": {"torch": torch.get_rng_state()},
        "config": json.dumps({"pairs": "p", "out": "o"}),
        "model_config": json.dumps(ema.config),
    }


def test_the_train_checkpoint_format_is_the_trainers():
    from getkern.checkpoint import DIGEST_SUFFIX
    from getkern.distill import trainer

    assert TRAIN_CHECKPOINT_FORMAT == trainer.CHECKPOINT_FORMAT and DIGEST_SUFFIX == trainer.DIGEST_SUFFIX


def test_a_training_checkpoint_is_checked_against_its_sidecar(tmp_path):
    from getkern.checkpoint import file_sha256

    online, ema = tiny(seed=1), tiny(seed=2)
    run = tmp_path / "run"
    run.mkdir()
    torch.save(train_state(online, ema), run / "checkpoint.pt")
    (run / "checkpoint.pt.sha256").write_text(file_sha256(run / "checkpoint.pt") + "\n")
    torch.testing.assert_close(outputs(getkern.load(run, **FAST_GET)), outputs(ema), rtol=0, atol=0)
    (run / "checkpoint.pt.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(CheckpointError, match="sha256 differs from the one in checkpoint.pt.sha256"):
        getkern.load(run)
    assert getkern.load(run, verify=False, **FAST_GET) is not None


@pytest.mark.parametrize("config_name", ["config.json", "train_config.json"])
def test_load_run_folders(tmp_path, config_name):
    online, ema = tiny(seed=1, cond=True), tiny(seed=2, cond=True)
    run = tmp_path / "run"
    run.mkdir()
    (run / config_name).write_text(json.dumps({"pairs": "runs/pairs", "out": str(run), "model": {"name": "GET-T/2"}}))
    ema.save_pretrained(run / "ema")
    model = getkern.load(run, **FAST_GET)  # ema/ only (the trainer's config file must not shadow it)
    torch.testing.assert_close(outputs(model), outputs(ema), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="ema=False needs the run's checkpoint.pt"):
        getkern.load(run, ema=False)
    torch.save(train_state(online, ema), run / "checkpoint.pt")
    model = getkern.load(run, **FAST_GET)
    assert not model.training
    torch.testing.assert_close(outputs(model), outputs(ema), rtol=0, atol=0)
    torch.testing.assert_close(outputs(getkern.load(run, ema=False, **FAST_GET)), outputs(online), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="is a `getkern train` run folder: load it with getkern.load"):
        GET.from_pretrained(run)  # not a save_pretrained folder: says what to use


def test_load_training_and_reference_files(tmp_path):
    online, ema = tiny(seed=1), tiny(seed=2)
    torch.save(train_state(online, ema, step=7), tmp_path / "checkpoint.pt")
    model, origin = getkern.loading.load_with_origin(tmp_path / "checkpoint.pt", **FAST_GET)
    assert "training checkpoint" in origin and "step 7" in origin and not model.training
    torch.testing.assert_close(outputs(model), outputs(ema), rtol=0, atol=0)
    vit_online, vit_ema = tiny(ViT, seed=1), tiny(ViT, seed=2)
    torch.save(train_state(vit_online, vit_ema), tmp_path / "vit.pt")
    assert type(getkern.load(tmp_path / "vit.pt", **FAST)) is ViT
    torch.testing.assert_close(outputs(getkern.load(tmp_path / "vit.pt", ema=False, **FAST)), outputs(vit_online))

    reference = GET.from_config("GET-T/4", input_size=8, in_channels=1, backend="torch")
    torch.save(
        {
            "args": argparse.Namespace(model="GET-T/4", input_size=8, cond=False, num_classes=10),
            "ema": reference.state_dict(),
            "model": online.state_dict(),
        },
        tmp_path / "ref.pth",
    )
    model, origin = getkern.loading.load_with_origin(tmp_path / "ref.pth", **FAST_GET)
    assert origin.startswith("reference checkpoint") and model.patch_size == 4 and not model.training
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    big = dict(train_state(online, ema), model_config=json.dumps({**ema.config, "depth": 100000}))
    torch.save(big, tmp_path / "big.pt")
    with pytest.raises(CheckpointError, match="depth=100000"):
        getkern.load(tmp_path / "big.pt")

    (tmp_path / "notes.txt").write_text("?")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        getkern.load(tmp_path / "notes.txt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unknown checkpoint format.*something"):
        getkern.load(tmp_path / "other.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        getkern.load(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="does not exist"):
        getkern.load(tmp_path / "nothing")


def test_load_arguments(tmp_path):
    tiny().save_pretrained(tmp_path / "m")
    assert getkern.load(tmp_path / "m" / "model.safetensors", **FAST) is not None  # a file of the folder
    with pytest.raises(UsageError, match="ema=False: .* holds one set of weights"):
        getkern.load(tmp_path / "m", ema=False)
    with pytest.raises(UsageError, match="backend='cuda'"):
        getkern.load(tmp_path / "m", backend="cuda")
    model = getkern.load(tmp_path / "m", backend="torch", solver_backend="cpp")
    assert model.solver_backend == "cpp"
    assert {m.backend for m in model.modules() if hasattr(m, "backend")} == {"torch"}


def test_sample_command_on_a_run_folder(tmp_path):
    from getkern import cli
    from getkern.sampling import class_rows, sample_get

    ema = tiny(cond=True)
    run = tmp_path / "run"
    ema.save_pretrained(run / "ema")
    (run / "config.json").write_text(json.dumps({"pairs": "p", "out": str(run)}))  # an old run's trainer config
    assert (
        cli.main(
            [
                "sample",
                "--checkpoint",
                str(run),
                "--out",
                str(tmp_path / "s"),
                "--iters",
                "2",
                "--per-class",
                "1",
                "--backend",
                "torch",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    arrays = np.load(tmp_path / "s" / "samples-fixed_point-iters2.npz")
    ema.solver_backend = "auto"
    expected, _ = sample_get(ema, 10, seed=0, iters=2, labels=class_rows(10, 1))
    np.testing.assert_array_equal(arrays["images"], expected.numpy())


# ---------------------------------------------------------------- construction-time validation


@pytest.mark.parametrize(
    "cls, field, value, allowed",
    [
        (GET, "num_heads", -2, "an integer >= 1"),
        (GET, "cond", "yes", "True or False"),
        (GET, "hidden_size", 30, "a multiple of num_heads=4|a multiple of 4"),
        (GET, "hidden_size", 36, "a multiple of num_heads=8"),
        (GET, "depth", -1, "an integer >= 0"),
        (GET, "deq_depth", 0, "an integer >= 1"),
        (GET, "mlp_ratio", 0, "a finite number > 0"),
        (GET, "deq_mlp_ratio", float("nan"), "a finite number > 0"),
        (GET, "patch_size", 3, "divisible by patch_size"),
        (GET, "input_size", 8.0, "an integer >= 1"),
        (GET, "in_channels", 0, "an integer >= 1"),
        (GET, "num_classes", True, "an integer >= 1"),
        (GET, "backend", "cuda", "auto, triton, torch"),
        (GET, "solver_backend", "gpu", "auto, torch, triton, cpp"),
        (ViT, "depth", 0, "an integer >= 1"),
        (ViT, "num_heads", -2, "an integer >= 1"),
        (ViT, "cond", 1, "True or False"),
    ],
)
def test_invalid_constructor_arguments_name_the_field_value_and_range(cls, field, value, allowed):
    kw = dict(TINY, num_heads=8 if (field, value) == ("hidden_size", 36) else 4, hidden_size=32)
    kw[field] = value
    with pytest.raises(UsageError, match=rf"{cls.__name__}: {field}={value!r} is invalid: expected .*({allowed})"):
        cls(**kw)


def test_guidance_range_errors_are_usage_errors():
    with pytest.raises(UsageError, match="cond=True"):
        GET(**TINY, guidance_range=(0, 1))
    with pytest.raises(UsageError, match="guidance_range"):
        GET(**TINY, cond=True, guidance_range=(2, 1))


def test_nan_z0_is_refused():
    model = tiny()
    noise, z0 = torch.randn(2, 1, 8, 8), torch.randn(2, 4, 16)
    z0[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="z0 contains NaN or Inf"):
        model(noise, z0=z0)
    with pytest.raises(ValueError, match="z0 contains NaN or Inf"):
        getkern.sample(model, 2, z0=z0)
    with pytest.raises(ValueError, match="noise contains NaN"):
        getkern.sample(model, 2, noise=torch.full((2, 1, 8, 8), float("inf")))


# ---------------------------------------------------------------- getkern.sample


def test_sample_is_reproducible_from_one_generator():
    model = tiny()
    a = getkern.sample(model, 5, generator=torch.Generator().manual_seed(3), iters=2)
    b = getkern.sample(model, 5, generator=3, iters=2)
    c = getkern.sample(model, 5, generator=4, iters=2)
    assert a.shape == (5, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    # the documented draw order: noise, then z0, from the one generator
    g = torch.Generator().manual_seed(3)
    noise, z0 = torch.randn(5, 1, 8, 8, generator=g), torch.randn(5, 4, 16, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(a, model(noise, iters=2, z0=z0), rtol=0, atol=0)
    from getkern.sampling import sample_get

    torch.testing.assert_close(sample_get(model, 5, seed=3, iters=2)[0], a, rtol=0, atol=0)
    torch.manual_seed(0)
    d = getkern.sample(model, 5, iters=2)  # generator=None: torch's global RNG
    torch.manual_seed(0)
    assert torch.equal(d, getkern.sample(model, 5, iters=2))
    split = getkern.sample(model, 5, generator=3, iters=2, tol=None, batch_size=2)
    torch.testing.assert_close(split, getkern.sample(model, 5, generator=3, iters=2, tol=None), rtol=1e-5, atol=1e-6)


def test_sample_labels_guidance_and_vit():
    model = tiny(cond=True)
    images, labels = getkern.sample(model, 6, generator=1, iters=1, return_labels=True)
    assert labels.shape == (6,) and labels.dtype == torch.int64 and 0 <= int(labels.min()) and int(labels.max()) < 10
    again = getkern.sample(model, labels, generator=1, iters=1)  # labels drawn after noise and z0
    torch.testing.assert_close(images, again, rtol=0, atol=0)
    assert getkern.sample(model, [3, 3], generator=1, iters=1).shape == (2, 1, 8, 8)
    with pytest.raises(UsageError, match="unconditional"):
        getkern.sample(tiny(), [1, 2])
    with pytest.raises(UsageError, match="at least one image"):
        getkern.sample(model, 0)
    with pytest.raises(UsageError, match="integer class labels"):
        getkern.sample(model, torch.tensor([0.5, 1.0]))
    guided = tiny(cond=True, guidance_range=(0, 2))
    assert getkern.sample(guided, 2, generator=0, iters=1, guidance=[0.0, 2.0]).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="guidance weight w is required"):
        getkern.sample(guided, 2, iters=1)
    vit = tiny(ViT, cond=True)
    v = getkern.sample(vit, [1, 2, 3], generator=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        torch.testing.assert_close(
            v, vit(torch.randn(3, 1, 8, 8, generator=g), torch.tensor([1, 2, 3])), rtol=0, atol=0
        )
    with pytest.raises(UsageError, match="iters: a ViT runs its blocks once"):
        getkern.sample(vit, 2, iters=3)


def test_sample_on_the_model_device_and_dtype():
    model = tiny().to(torch.float64)
    out = getkern.sample(model, 2, generator=0, iters=1)
    assert out.dtype == torch.float64


# ---------------------------------------------------------------- packaging


def test_py_typed_ships():
    root = Path(__file__).resolve().parents[1]
    section = (root / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1].split("\n[")[0]
    assert '"py.typed"' in section and (root / "getkern" / "py.typed").is_file()
