"""Noise/image pair generation from a teacher, in sharded safetensors files plus a JSON manifest.

Layout of ``<out>/``::

    manifest.json                          the plan (teacher, sampler, shapes, dtypes, seeds, shards;
                                           once complete, each shard's sha256)
    pairs-000000000-000000999.safetensors  latent float32 (n, C, H, W), image float32 (n, C, H, W),
    ...                                    label int64 (n,) (-1: unconditional), seed int64 (n,)
                                           [guidance float32 (n,): guided pair sets only]

Pair ``s`` is (z, teacher(z * sigma_max, label)) with z and label drawn from
``torch.Generator().manual_seed(s)`` (z first, then the label), so any pair can be regenerated from its
seed alone. A guided pair set (``guidance_range=(wmin, wmax)``) draws the classifier-free guidance weight
w ~ U[wmin, wmax] third from the same generator and samples the guided teacher D_w; z and label are the
same as in an unguided set. Shard ``i`` holds seeds ``first_seed + i*shard_size ...``; each is written atomically, so a
killed run restarted with the same arguments skips finished shards and produces exactly the same set
(no duplicate, no missing seed); a finished shard whose sha256 differs from the manifest's is regenerated.
One process at a time writes a folder (getkern.runlock; under torchrun rank 0 holds the lock), and
rank r writes shards r, r + world, r + 2 world, ...
Arguments are checked before anything is written, plans are bounded (at most MAX_SHARDS shard files,
and no more bytes than the disk has free).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from getkern.checkpoint import atomic_write, file_sha256, read_json
from getkern.distributed import barrier, init_distributed, merge_on_main, share_refusal
from getkern.errors import GetkernError, SettingError, UsageError
from getkern.models.inputs import check_guidance_range
from getkern.runlock import LOCK_FILE, hold_folder, remove_stale_temporaries
from getkern.teacher import Teacher
from getkern.teacher.edm import RHO, SIGMA_MAX, SIGMA_MIN, network_evaluations

MANIFEST = "manifest.json"
FORMAT = "getkern-pairs"
FORMAT_VERSION = 1
MAX_SHARDS = 1_000_000  # the manifest lists every shard: beyond this, use larger shards
MAX_SEED = 2**63 - 1
SHARD_HEADER_BYTES = 1024  # a generous bound on a shard's safetensors header
VERIFY_ENV = "GETKERN_VERIFY_PAIRS"  # "0": trust shards without hashing them (faster loads)


class PairFileError(GetkernError, ValueError):
    """A pair file or manifest is missing, corrupt, truncated or inconsistent with its manifest."""


def shard_name(first: int, count: int) -> str:
    return f"pairs-{first:09d}-{first + count - 1:09d}.safetensors"


def _seeded(seed: int, image_shape: tuple[int, ...], num_classes: int) -> tuple[torch.Tensor, int, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(image_shape, generator=g)
    label = int(torch.randint(num_classes, (1,), generator=g)) if num_classes else -1
    return z, label, g


def seed_inputs(seed: int, image_shape: tuple[int, ...], num_classes: int) -> tuple[torch.Tensor, int]:
    """The teacher's inputs for one pair: (z float32 (C, H, W), label; -1 when unconditional)."""
    z, label, _ = _seeded(seed, image_shape, num_classes)
    return z, label


def seed_guidance(
    seed: int, image_shape: tuple[int, ...], num_classes: int, guidance_range: tuple[float, float]
) -> float:
    """The guidance weight w of pair ``seed`` in a guided set: U[wmin, wmax], drawn after z and the label."""
    _, _, g = _seeded(seed, image_shape, num_classes)
    u = float(torch.rand((), generator=g, dtype=torch.float64))
    return guidance_range[0] + u * (guidance_range[1] - guidance_range[0])


def verify_default() -> bool:
    """Whether shards are checked against the manifest's sha256 when read (unless the caller says)."""
    return os.environ.get(VERIFY_ENV, "1") != "0"


def check_pair_arguments(*, num_pairs, first_seed, shard_size, num_steps, batch_size, names=None) -> None:
    """Refuse (SettingError, UsageError) arguments that cannot make a pair set, before anything is loaded or
    written. ``names`` maps an argument to what the message calls it (the command line's flags)."""
    names = names or {}
    for name, value, low, allowed in (
        ("num_pairs", num_pairs, 1, "an integer >= 1"),
        ("first_seed", first_seed, 0, "an integer >= 0"),
        ("shard_size", shard_size, 1, "an integer >= 1"),
        ("batch_size", batch_size, 1, "an integer >= 1"),
        ("num_steps", num_steps, 2, "an integer >= 2 (Heun steps from sigma_max to sigma_min)"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SettingError(names.get(name, name), value, allowed)
    if first_seed + num_pairs - 1 > MAX_SEED:
        raise UsageError(
            f"{names.get('first_seed', 'first_seed')} + {names.get('num_pairs', 'num_pairs')} - 1 = "
            f"{first_seed + num_pairs - 1} exceeds the largest seed {MAX_SEED}"
        )
    shards = -(-num_pairs // shard_size)
    if shards > MAX_SHARDS:
        raise UsageError(
            f"{names.get('num_pairs', 'num_pairs')} {num_pairs} in shards of {shard_size} makes "
            f"{shards:,} shard files, more than {MAX_SHARDS:,}: raise "
            f"{names.get('shard_size', 'shard_size')}"
        )


def plan_manifest(
    teacher: Teacher,
    *,
    num_pairs: int,
    first_seed: int,
    shard_size: int,
    num_steps: int,
    guidance_range: tuple[float, float] | None = None,
) -> dict:
    """Everything that determines the pair set (compared on resume) plus the shard list."""
    shards = [
        {
            "file": shard_name(first, min(shard_size, first_seed + num_pairs - first)),
            "first_seed": first,
            "count": min(shard_size, first_seed + num_pairs - first),
        }
        for first in range(first_seed, first_seed + num_pairs, shard_size)
    ]
    sampler = {
        "name": "edm-heun",
        "num_steps": num_steps,
        "network_evaluations": network_evaluations(num_steps),
        "sigma_min": SIGMA_MIN,
        "sigma_max": SIGMA_MAX,
        "rho": RHO,
        "ode_dtype": "float64",
    }
    guided = {}
    if guidance_range is not None:  # keys only in guided sets: unguided manifests are unchanged
        sampler["guidance"] = "classifier-free: (1 + w) D(x, c) - w D(x, none), w ~ U[wmin, wmax] per seed"
        sampler["network_evaluations"] *= 2
        guided = {"guidance_range": list(guidance_range), "guidance_dtype": "float32"}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "teacher": teacher.meta,
        "sampler": sampler,
        "image_shape": list(teacher.image_shape),
        "num_classes": teacher.num_classes,
        "latent_dtype": "float32",
        "image_dtype": "float32",
        "label_dtype": "int64",
        **guided,
        "first_seed": first_seed,
        "num_pairs": num_pairs,
        "shard_size": shard_size,
        "shards": shards,
    }


def teacher_identity(meta: dict) -> dict:
    """The teacher's metadata without the folder it lives in (only its file name): the shipped teacher
    of another install, or a moved EDM pickle, makes the same pair set."""
    return {**meta, "path": Path(meta["path"]).name} if "path" in meta else dict(meta)


def plan_fields(manifest: dict) -> dict:
    """What defines a pair set: the manifest without its completion flag, shard digests and teacher folder."""
    fields = {k: v for k, v in manifest.items() if k != "complete"}
    fields["teacher"] = teacher_identity(fields.get("teacher", {}))
    fields["shards"] = [{k: v for k, v in s.items() if k != "sha256"} for s in fields.get("shards", [])]
    return fields


def describe_differences(old: dict, new: dict, then: str, now: str) -> list[str]:
    """``"key: <old> <then>, <new> <now>"`` for each differing key (nested dicts by dotted key); the shard
    list (or its digest) only when nothing else explains the difference, since seeds and counts decide it."""

    def walk(a, b, prefix):
        for k in sorted(set(a) | set(b), key=str):
            x, y = a.get(k), b.get(k)
            if isinstance(x, dict) and isinstance(y, dict):
                yield from walk(x, y, f"{prefix}{k}.")
            elif x != y:
                yield f"{prefix}{k}", x, y

    found = list(walk(old, new, ""))
    if len(found) > 1:
        found = [f for f in found if f[0] != "shards"]
    return [f"{k}: {_describe(x)} {then}, {_describe(y)} {now}" for k, x, y in found]


def _describe(value) -> str:
    if isinstance(value, list) and len(value) > 4:
        return f"[{len(value)} entries]"
    if isinstance(value, str) and len(value) == 64:  # a sha256
        return repr(value[:12] + "...")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def shard_keys(guided: bool) -> set[str]:
    """The tensors a shard holds."""
    return {"latent", "image", "label", "seed"} | ({"guidance"} if guided else set())


def read_manifest(root: Path) -> dict:
    """The manifest of pair folder ``root``, its fields' types, ranges and consistency checked
    (:func:`check_manifest`): PairFileError naming the file and the field otherwise."""
    path = Path(root) / MANIFEST
    manifest = read_json(path, PairFileError, "not a getkern pair directory")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PairFileError(f"{path} is not a getkern pair manifest (format != {FORMAT!r})")
    check_manifest(manifest, path)
    return manifest


def _is_int(value, low: int = 0, high: int = MAX_SEED) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_manifest(manifest: dict, path) -> None:
    """Refuse (PairFileError naming ``path`` and the field) a manifest whose fields have the wrong type or
    range, or whose shards do not cover seeds first_seed .. first_seed + num_pairs - 1 exactly, once each
    (a dropped shard or an edited num_pairs would otherwise train on another set than the manifest says)."""

    def bad(field: str, value, allowed: str):
        return PairFileError(
            f"{path}: {field}={value!r} is invalid: expected {allowed} (the manifest is damaged "
            "or was edited; regenerate the pair set with `getkern pairs`)"
        )

    get = manifest.get
    for field, low in (("num_pairs", 1), ("first_seed", 0), ("num_classes", 0)):
        if not _is_int(get(field), low):
            raise bad(field, get(field), f"an integer >= {low}")
    if "shard_size" in manifest and not _is_int(get("shard_size"), 1):
        raise bad("shard_size", get("shard_size"), "an integer >= 1")
    shape = get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v, 1, 1 << 20) for v in shape)):
        raise bad("image_shape", shape, "[C, H, W], three integers >= 1")
    if get("guidance_range") is not None:
        gr = get("guidance_range")
        ok = (
            isinstance(gr, list)
            and len(gr) == 2
            and all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in gr)
            and gr[0] <= gr[1]
        )
        if not ok:
            raise bad("guidance_range", gr, "[wmin, wmax], finite, wmin <= wmax")
    shards = get("shards")
    if not isinstance(shards, list) or not shards:
        raise bad("shards", shards if not isinstance(shards, list) else [], "a non-empty list of shards")
    expect = manifest["first_seed"]
    for i, shard in enumerate(shards):
        where = f"shards[{i}]"
        if not isinstance(shard, dict):
            raise bad(where, shard, "an object with file, first_seed and count")
        name = shard.get("file")
        if not (isinstance(name, str) and name and Path(name).name == name and name not in (".", "..")):
            raise bad(f"{where}.file", name, "a file name inside the pair folder")
        if not _is_int(shard.get("count"), 1):
            raise bad(f"{where}.count", shard.get("count"), "an integer >= 1")
        if not _is_int(shard.get("first_seed")):
            raise bad(f"{where}.first_seed", shard.get("first_seed"), f"an integer in [0, {MAX_SEED}]")
        digest = shard.get("sha256")
        if digest is not None and not (
            isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
        ):
            raise bad(f"{where}.sha256", digest, "a SHA-256 hex digest")
        if shard["first_seed"] != expect:
            raise PairFileError(
                f"{path}: {where} ({name}) starts at seed {shard['first_seed']}, but the shards "
                f"before it end at seed {expect - 1}: shards are missing, repeated or out of order"
            )
        expect += shard["count"]
    end = manifest["first_seed"] + manifest["num_pairs"]
    if expect != end:
        raise PairFileError(
            f"{path}: its shards hold seeds {manifest['first_seed']} .. {expect - 1} "
            f"({expect - manifest['first_seed']} pairs), but num_pairs is {manifest['num_pairs']}: "
            "a shard count is wrong or a shard is missing from the list"
        )


def shard_is_complete(path: Path, count: int, guided: bool = False) -> bool:
    """True when ``path`` is a readable shard with ``count`` pairs (cheap: reads the header only)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys()) == shard_keys(guided) and f.get_slice("seed").get_shape() == [count]
    except (SafetensorError, OSError, ValueError):
        return False


def _generate_shard(
    teacher: Teacher,
    first: int,
    count: int,
    num_steps: int,
    batch_size: int,
    device: torch.device,
    guidance_range: tuple[float, float] | None = None,
) -> dict[str, torch.Tensor]:
    seeds = list(range(first, first + count))
    inputs = [seed_inputs(s, teacher.image_shape, teacher.num_classes) for s in seeds]
    latent = torch.stack([z for z, _ in inputs])
    label = torch.tensor([y for _, y in inputs], dtype=torch.int64)
    guidance = None
    if guidance_range is not None:
        guidance = torch.tensor(
            [seed_guidance(s, teacher.image_shape, teacher.num_classes, guidance_range) for s in seeds],
            dtype=torch.float64,
        )
    images = []
    for i in range(0, count, batch_size):
        z = latent[i : i + batch_size].to(device)
        y = label[i : i + batch_size].to(device) if teacher.num_classes else None
        w = guidance[i : i + batch_size].to(device) if guidance is not None else None
        images.append(teacher.sample(z, y, num_steps=num_steps, guidance=w).to(torch.float32).cpu())
    out = {"latent": latent, "image": torch.cat(images), "label": label, "seed": torch.tensor(seeds, dtype=torch.int64)}
    if guidance is not None:
        out["guidance"] = guidance.to(torch.float32)
    return out


def _write_manifest(out: Path, plan: dict, complete: bool) -> None:
    text = json.dumps({**plan, "complete": complete}, indent=1) + "\n"
    atomic_write(out / MANIFEST, lambda p: Path(p).write_text(text))


def bytes_per_pair(image_shape, guided: bool) -> int:
    """Bytes a pair takes in a shard: latent and image float32, label and seed int64, guidance float32."""
    return 2 * 4 * math.prod(image_shape) + 8 + 8 + (4 if guided else 0)


def check_disk_space(out: Path, plan: dict, guided: bool) -> None:
    """Refuse (UsageError) a plan whose missing shards need more bytes than the disk under ``out`` has free."""
    sizes = {p.name: p.stat().st_size for p in out.glob("pairs-*.safetensors")} if out.is_dir() else {}
    per_pair = bytes_per_pair(plan["image_shape"], guided)
    need = sum(s["count"] * per_pair + SHARD_HEADER_BYTES for s in plan["shards"] if s["file"] not in sizes)
    base = out
    while not base.exists():
        base = base.parent
    free = shutil.disk_usage(base).free
    if need > free:
        raise UsageError(
            f"the pair set needs about {need / 1e9:,.1f} GB more ({per_pair} bytes a pair), "
            f"but {base} has {free / 1e9:,.1f} GB free"
        )


def _prepare_folder(out: Path, plan: dict, guided: bool) -> None:
    """Under the folder's lock: clear a killed writer's temporaries, refuse another pair set or a folder
    holding other files, and write the plan first (so a rerun is checked against it)."""
    remove_stale_temporaries(out)
    if (out / MANIFEST).is_file():
        differing = describe_differences(plan_fields(read_manifest(out)), plan_fields(plan), "there", "asked")
        if differing:
            raise PairFileError(
                f"{out / MANIFEST} describes a different pair set ({'; '.join(differing)}); "
                "use another output directory"
            )
    else:
        names = {s["file"] for s in plan["shards"]} | {LOCK_FILE}
        foreign = sorted(p.name for p in out.iterdir() if p.name not in names)
        if foreign:
            raise UsageError(
                f"{out} holds files that belong to no pair set ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}) and no {MANIFEST}: use an empty or new folder"
            )
        _write_manifest(out, plan, complete=False)


def _finished_shards(out: Path, shards: list[dict], guided: bool, verify: bool) -> dict[str, str]:
    """{file: sha256} of the ``shards`` already written whole and (when the manifest records a digest and
    ``verify``) unchanged; a changed one is left out, so it is generated again."""
    recorded = {s["file"]: s.get("sha256") for s in read_manifest(out)["shards"]}
    done = {}
    for s in shards:
        path = out / s["file"]
        if not shard_is_complete(path, s["count"], guided):
            continue
        if recorded.get(s["file"]) and not verify:
            done[s["file"]] = recorded[s["file"]]
            continue
        digest = file_sha256(path)
        if recorded.get(s["file"]) in (None, digest):
            done[s["file"]] = digest
        else:
            warnings.warn(
                f"{path}: its sha256 differs from the manifest's (the file is corrupt): generating it again",
                stacklevel=3,
            )
    return done


def write_pairs(
    teacher: Teacher,
    out_dir,
    *,
    num_pairs: int,
    first_seed: int = 0,
    shard_size: int = 1000,
    num_steps: int = 18,
    batch_size: int = 500,
    guidance_range: tuple[float, float] | None = None,
    progress: bool = True,
    verify: bool | None = None,
) -> Path:
    """Generate (or finish generating) ``num_pairs`` pairs into ``out_dir``; returns the manifest path.

    ``guidance_range=(wmin, wmax)``: a guided set for guidance distillation; pair s gets its own
    w ~ U[wmin, wmax] (:func:`seed_guidance`) and the image is the classifier-free-guided teacher's
    sample at that w (the teacher needs a null class, e.g. ``load_teacher("digits-guided")``).
    Safe to call again with the same arguments: finished shards are kept (``verify``: their sha256 is
    checked against the manifest's; default: on unless GETKERN_VERIFY_PAIRS=0). Different arguments on
    an existing directory raise PairFileError rather than mixing two pair sets; a folder another process
    is writing raises FolderBusy. Under torchrun each rank writes its own shards and rank 0 holds the
    folder's lock and writes the manifest once all ranks are done.
    """
    check_pair_arguments(
        num_pairs=num_pairs, first_seed=first_seed, shard_size=shard_size, num_steps=num_steps, batch_size=batch_size
    )
    if guidance_range is not None:
        guidance_range = check_guidance_range(guidance_range)
        teacher.guided(0.0)  # raises now, with the reason, if the teacher cannot be guided
    verify = verify_default() if verify is None else verify
    dist_info = init_distributed(str(next(teacher.denoiser.parameters()).device.type))
    out = Path(out_dir)
    plan = plan_manifest(
        teacher,
        num_pairs=num_pairs,
        first_seed=first_seed,
        shard_size=shard_size,
        num_steps=num_steps,
        guidance_range=guidance_range,
    )
    guided = guidance_range is not None
    lock, refusal = None, None
    if dist_info.is_main:
        try:
            check_disk_space(out, plan, guided)  # before the lock creates the folder
            lock = hold_folder(out, "getkern pairs")
            _prepare_folder(out, plan, guided)
        except (GetkernError, OSError) as e:
            refusal = e
    try:
        share_refusal(refusal)
        mine = plan["shards"][dist_info.rank :: dist_info.world_size]
        digests = _finished_shards(out, mine, guided, verify)
        todo = [s for s in mine if s["file"] not in digests]
        device = next(teacher.denoiser.parameters()).device
        bar = tqdm(
            total=sum(s["count"] for s in mine),
            initial=sum(s["count"] for s in mine if s["file"] in digests),
            desc=f"pairs (rank {dist_info.rank})",
            unit="pair",
            disable=not progress,
        )
        for shard in todo:
            tensors = _generate_shard(
                teacher, shard["first_seed"], shard["count"], num_steps, batch_size, device, guidance_range
            )
            meta = {"first_seed": str(shard["first_seed"]), "count": str(shard["count"])}
            atomic_write(out / shard["file"], lambda p, t=tensors: save_file(t, p, metadata=meta))
            digests[shard["file"]] = file_sha256(out / shard["file"])  # read back from the page cache
            bar.update(shard["count"])
        bar.close()
        digests = merge_on_main(digests)
        if dist_info.is_main:
            missing = [
                s["file"]
                for s in plan["shards"]
                if s["file"] not in digests or not shard_is_complete(out / s["file"], s["count"], guided)
            ]
            if missing:
                raise PairFileError(f"{out}: shards missing or incomplete after generation: {missing[:5]}")
            shards = [{**s, "sha256": digests[s["file"]]} for s in plan["shards"]]
            _write_manifest(out, {**plan, "shards": shards}, complete=True)
        barrier()
    finally:
        if lock is not None:
            lock.release()
    return out / MANIFEST
