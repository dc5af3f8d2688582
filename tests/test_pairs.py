"""Pair writer (manifest, per-seed regeneration, resume) and the two pair datasets.
(The torchrun 2-rank pair run is tested together with DDP training in test_train.py.)"""

import argparse
import copy
import json

import pytest
import torch
from helpers import tiny_teacher
from safetensors.torch import load_file

import getkern.data.pairs as pairs_mod
from getkern.data import PairDataset, PairFileError, ReferencePairDataset, read_manifest, seed_inputs, write_pairs

STEPS = 3


def write(teacher, root, n=23, shard=5, **kw):
    return write_pairs(
        teacher, root, num_pairs=n, shard_size=shard, num_steps=STEPS, batch_size=4, progress=False, **kw
    )


def test_manifest_and_every_pair_regenerates_from_its_seed(tmp_path):
    teacher = tiny_teacher()
    write(teacher, tmp_path, first_seed=100)
    manifest = read_manifest(tmp_path)
    assert manifest["complete"] and manifest["num_pairs"] == 23 and manifest["first_seed"] == 100
    assert manifest["sampler"]["network_evaluations"] == 2 * STEPS - 1 and manifest["image_shape"] == [1, 8, 8]
    assert [s["count"] for s in manifest["shards"]] == [5, 5, 5, 5, 3]
    ds = PairDataset(tmp_path)
    assert len(ds) == 23
    t64 = copy.deepcopy(teacher)
    t64.denoiser.double()
    for i in (0, 7, 22):
        z, y = seed_inputs(100 + i, (1, 8, 8), 10)
        latent, image, label = ds[i]
        assert torch.equal(latent, z) and int(label) == y
        # The stored image (batch of 4) against a float64 regeneration from the seed: batch size, thread
        # count and CPU model change the float32 summation order, so no float32 rerun is a fixed reference.
        # Bound: each of the 2 * STEPS - 1 float32 network evaluations rounds to a few eps of the image's
        # magnitude (k = 4 per evaluation; measured <= 7 eps in total here), plus the float32 store.
        exact = t64.sample(z[None].double(), torch.tensor([y]), num_steps=STEPS)[0]
        tol = 4 * (2 * STEPS - 1) * torch.finfo(torch.float32).eps * float(exact.abs().max())
        assert float((image.double() - exact).abs().max()) <= tol
    labels = ds.tensors()[2]
    assert labels.min() >= 0 and labels.max() <= 9 and len(labels.unique()) > 3


def test_resume_after_a_crash_gives_exactly_the_same_set(tmp_path, monkeypatch):
    teacher = tiny_teacher()
    write(teacher, tmp_path / "ref")
    expect = PairDataset(tmp_path / "ref").tensors()

    real, calls = pairs_mod._generate_shard, []

    def crash_on_third(*args, **kw):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed mid-run
        return real(*args, **kw)

    monkeypatch.setattr(pairs_mod, "_generate_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        write(teacher, tmp_path / "run")
    assert not read_manifest(tmp_path / "run")["complete"]
    with pytest.raises(PairFileError, match="did not finish"):
        PairDataset(tmp_path / "run")
    # a half-written file left by a crash elsewhere must not count as a shard
    (tmp_path / "run" / "pairs-000000020-000000022.safetensors").write_bytes(b"\x01" * 50)
    calls.clear()
    monkeypatch.setattr(pairs_mod, "_generate_shard", lambda *a, **k: (calls.append(a[1]), real(*a, **k))[1])
    write(teacher, tmp_path / "run")
    assert calls == [10, 15, 20]  # only the unfinished shards were generated
    got = PairDataset(tmp_path / "run").tensors()
    for a, b in zip(got, expect):
        assert torch.equal(a, b)
    seeds = torch.cat([load_file(p)["seed"] for p in sorted((tmp_path / "run").glob("pairs-*.safetensors"))])
    assert torch.equal(seeds, torch.arange(23))  # no duplicate, none missing


def test_other_arguments_on_an_existing_directory_are_refused(tmp_path):
    teacher = tiny_teacher()
    write(teacher, tmp_path)
    with pytest.raises(PairFileError, match="num_steps|sampler"):
        write_pairs(teacher, tmp_path, num_pairs=23, shard_size=5, num_steps=STEPS + 1, progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_damaged_shard_is_named(tmp_path, damage):
    write(tiny_teacher(), tmp_path)
    shard = tmp_path / "pairs-000000005-000000009.safetensors"
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-40])
    elif damage == "garbage":
        shard.write_bytes(b"{not a header" * 10)
    else:
        shard.unlink()
    ds = PairDataset(tmp_path)
    ds[0]  # other shards still load
    with pytest.raises(PairFileError, match="pairs-000000005-000000009"):
        ds[6]


def test_unconditional_pairs_have_label_minus_one(tmp_path):
    write(tiny_teacher(num_classes=0), tmp_path, n=4, shard=4)
    ds = PairDataset(tmp_path)
    assert ds.num_classes == 0 and torch.equal(ds.tensors()[2], torch.full((4,), -1))


def _reference_files(root, cond, sizes=(3, 4)):
    (root / "latent").mkdir(parents=True)
    (root / "image").mkdir()
    last, data = -1, []
    for n in sizes:
        last += n
        lat, img = torch.randn(n, 3, 4, 4), torch.randn(n, 3, 4, 4, dtype=torch.float64)
        y = torch.randint(10, (n,))
        torch.save(
            [lat, torch.nn.functional.one_hot(y, 10).float()] if cond else lat, root / "latent" / f"{last:09d}.pkl"
        )
        torch.save(img.float() if cond else img, root / "image" / f"{last:09d}.pkl")
        data.append((lat, img, y))
    return data


@pytest.mark.parametrize("cond", [False, True])
def test_reference_pair_files(tmp_path, cond):
    data = _reference_files(tmp_path, cond, sizes=(3, 4, 2))
    ds = ReferencePairDataset(tmp_path)
    assert len(ds) == 9 and ds.num_classes == (10 if cond else 0)
    lat, img, y = ds.tensors()
    assert torch.equal(lat, torch.cat([d[0] for d in data]))
    assert torch.allclose(img, torch.cat([d[1] for d in data]).float())
    assert torch.equal(y, torch.cat([d[2] for d in data]) if cond else torch.full((9,), -1))
    assert img.dtype == torch.float32


def test_reference_files_sort_by_seed_number_and_damage_is_named(tmp_path):
    (tmp_path / "latent").mkdir()
    (tmp_path / "image").mkdir()
    for last, value in ((99, 1.0), (1099, 2.0), (999, 3.0)):  # numeric order 99, 999, 1099
        torch.save(torch.full((2, 1, 2, 2), value), tmp_path / "latent" / f"{last}.pkl")
        torch.save(torch.full((2, 1, 2, 2), value), tmp_path / "image" / f"{last}.pkl")
    assert ReferencePairDataset(tmp_path).tensors()[0][:, 0, 0, 0].tolist() == [1, 1, 3, 3, 2, 2]
    bad = tmp_path / "image" / "999.pkl"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(PairFileError, match="999.pkl"):
        ReferencePairDataset(tmp_path)
    torch.save(argparse.Namespace(a=1), bad)  # arbitrary objects are refused (weights_only=True)
    with pytest.raises(PairFileError, match="999.pkl"):
        ReferencePairDataset(tmp_path)


def test_manifest_json_is_plain(tmp_path):
    write(tiny_teacher(), tmp_path, n=3, shard=3)
    assert json.loads((tmp_path / "manifest.json").read_text())["latent_dtype"] == "float32"
