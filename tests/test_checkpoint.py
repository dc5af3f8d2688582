"""Checkpoints: the reference's torch.save format (args Namespace + model/ema/opt) and getkern's own
safetensors + JSON format; round trips and clear errors on bad or hostile files."""

import argparse
import json
import os

import pytest
import torch

from getkern import GET, ViT
from getkern.checkpoint import CheckpointError


def reference_args(**kw):
    # The fields the reference's train.py parses (a subset is enough for loading).
    base = dict(
        data_path="data",
        model="GET-T/2",
        input_size=8,
        cond=False,
        num_classes=10,
        loss="l1",
        lr=1e-4,
        ema_decay=0.9999,
        global_batch_size=128,
        global_seed=42,
        mem=False,
    )
    return argparse.Namespace(**{**base, **kw})


def randomised(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def write_reference_checkpoint(path, model, ema, args):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    model(
        torch.randn(1, model.in_channels, model.input_size, model.input_size),
        torch.zeros(1, dtype=torch.long) if model.cond else None,
        iters=1,
    ).abs().mean().backward()
    opt.step()
    torch.save({"args": args, "model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict()}, path)


@pytest.fixture(scope="module")
def reference_pair():
    kw = dict(input_size=8, in_channels=3, cond=True, backend="torch")
    model = randomised(GET.from_config("GET-T/2", **kw), 1)
    ema = randomised(GET.from_config("GET-T/2", **kw), 2)
    return model, ema


def test_official_checkpoint_round_trip_loads_ema_by_default(tmp_path, reference_pair):
    model, ema = reference_pair
    path = tmp_path / "0100000.pth"
    write_reference_checkpoint(path, model, ema, reference_args(cond=True))
    loaded = GET.from_official_checkpoint(path, backend="torch").eval()
    online = GET.from_official_checkpoint(path, ema=False, backend="torch").eval()
    assert loaded.cond and loaded.input_size == 8 and loaded.in_channels == 3
    noise, y, z0 = torch.randn(2, 3, 8, 8), torch.tensor([1, 8]), torch.randn(2, 16, 256)
    with torch.no_grad():
        torch.testing.assert_close(loaded(noise, y, z0=z0), ema.eval()(noise, y, z0=z0), rtol=0, atol=0)
        torch.testing.assert_close(online(noise, y, z0=z0), model.eval()(noise, y, z0=z0), rtol=0, atol=0)
    for k, v in ema.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_reference_spelling_of_b_plus_is_accepted(tmp_path):
    with torch.device("meta"):
        sd = GET.from_config("GET-B+/2", input_size=4).state_dict()
    fake = {k: torch.zeros(v.shape) for k, v in sd.items()}
    path = tmp_path / "bplus.pth"
    torch.save({"args": reference_args(model="GET-B/2+", input_size=4), "model": fake, "ema": fake}, path)
    assert GET.from_official_checkpoint(path).config["depth"] == 6


def test_missing_keys_and_wrong_shapes_are_named(tmp_path, reference_pair):
    model, ema = reference_pair
    sd = dict(ema.state_dict())
    sd.pop("qkv_inj.weight")
    path = tmp_path / "missing.pth"
    torch.save({"args": reference_args(cond=True), "model": sd, "ema": sd}, path)
    with pytest.raises(CheckpointError, match="missing keys.*qkv_inj.weight"):
        GET.from_official_checkpoint(path)

    path = tmp_path / "shape.pth"
    torch.save(
        {"args": reference_args(cond=True, input_size=16), "model": ema.state_dict(), "ema": ema.state_dict()}, path
    )
    with pytest.raises(CheckpointError, match="shape mismatch.*pos_embed"):
        GET.from_official_checkpoint(path)

    path = tmp_path / "noema.pth"
    torch.save({"args": reference_args(), "model": ema.state_dict()}, path)
    with pytest.raises(CheckpointError, match="'ema'"):
        GET.from_official_checkpoint(path)

    path = tmp_path / "badname.pth"
    torch.save({"args": reference_args(model="DiT-XL/2"), "ema": ema.state_dict()}, path)
    with pytest.raises(CheckpointError, match="unknown GET model name"):
        GET.from_official_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


class Foreign:
    pass


def test_hostile_and_foreign_pickles_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"args": reference_args(), "ema": {"x": Exploit()}}, path)
    with pytest.raises(CheckpointError, match="refused"):
        GET.from_official_checkpoint(path)
    assert not (tmp_path / "pwned_by_pickle").exists()

    path = tmp_path / "foreign.pth"
    torch.save({"args": Foreign(), "ema": {}}, path)
    with pytest.raises(CheckpointError, match="refused"):
        GET.from_official_checkpoint(path)


def test_garbage_truncated_and_absent_files(tmp_path, reference_pair):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint|refused"):
        GET.from_official_checkpoint(path)
    good = tmp_path / "good.pth"
    write_reference_checkpoint(good, *reference_pair, reference_args(cond=True))
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pth"):
        GET.from_official_checkpoint(cut)
    with pytest.raises(CheckpointError, match="does not exist"):
        GET.from_official_checkpoint(tmp_path / "nope.pth")


@pytest.mark.parametrize("cls, name", [(GET, "GET-T/4"), (ViT, "ViT-S/4")])
def test_pretrained_round_trip(tmp_path, cls, name):
    model = randomised(
        cls.from_config(name, input_size=8, in_channels=1, cond=True, depth=1, backend="torch"), 3
    ).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = cls.from_pretrained(tmp_path / "m", backend="torch").eval()
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["_class_name"] == cls.__name__ and meta["depth"] == 1  # flat, as the Hub mixin writes it
    assert not loaded.training and (tmp_path / "m" / "README.md").is_file()
    assert not list((tmp_path / "m").glob("*.tmp"))
    noise, y = torch.randn(2, 1, 8, 8), torch.tensor([2, 5])
    with torch.no_grad():
        kw = {"z0": torch.randn(2, 4, model.hidden_size)} if cls is GET else {}
        torch.testing.assert_close(loaded(noise, y, **kw), model(noise, y, **kw), rtol=0, atol=0)


def test_pretrained_errors(tmp_path):
    model = GET.from_config("GET-T/8", input_size=8, in_channels=1, depth=1, backend="torch")
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="holds a 'GET', not a ViT"):
        ViT.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        GET.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        GET.from_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="does not exist"):
        GET.from_pretrained(tmp_path / "absent")
