"""Noise/image pair generation from a teacher, in sharded safetensors files plus a JSON manifest.

Layout of ``<out>/``::

    manifest.json                          the plan (teacher, sampler, shapes, dtypes, seeds, shards)
    pairs-000000000-000000999.safetensors  latent float32 (n, C, H, W), image float32 (n, C, H, W),
    ...                                    label int64 (n,) (-1: unconditional), seed int64 (n,)

Pair ``s`` is (z, teacher(z * sigma_max, label)) with z and label drawn from
``torch.Generator().manual_seed(s)`` (z first, then the label), so any pair can be regenerated from its
seed alone. Shard ``i`` holds seeds ``first_seed + i*shard_size ...``; each is written atomically, so a
killed run restarted with the same arguments skips finished shards and produces exactly the same set
(no duplicate, no missing seed). Under torchrun, rank r writes shards r, r + world, r + 2 world, ...
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from getkern.checkpoint import atomic_write, read_json
from getkern.distill.distributed import barrier, init_distributed
from getkern.teacher import Teacher
from getkern.teacher.edm import RHO, SIGMA_MAX, SIGMA_MIN, network_evaluations

MANIFEST = "manifest.json"
FORMAT = "getkern-pairs"
FORMAT_VERSION = 1


class PairFileError(ValueError):
    """A pair file or manifest is missing, corrupt, truncated or inconsistent with its manifest."""


def shard_name(first: int, count: int) -> str:
    return f"pairs-{first:09d}-{first + count - 1:09d}.safetensors"


def seed_inputs(seed: int, image_shape: tuple[int, ...], num_classes: int) -> tuple[torch.Tensor, int]:
    """The teacher's inputs for one pair: (z float32 (C, H, W), label; -1 when unconditional)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(image_shape, generator=g)
    label = int(torch.randint(num_classes, (1,), generator=g)) if num_classes else -1
    return z, label


def plan_manifest(teacher: Teacher, *, num_pairs: int, first_seed: int, shard_size: int, num_steps: int) -> dict:
    """Everything that determines the pair set (compared on resume) plus the shard list."""
    shards = [{"file": shard_name(first, min(shard_size, first_seed + num_pairs - first)), "first_seed": first,
               "count": min(shard_size, first_seed + num_pairs - first)}
              for first in range(first_seed, first_seed + num_pairs, shard_size)]
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "teacher": teacher.meta,
            "sampler": {"name": "edm-heun", "num_steps": num_steps, "network_evaluations": network_evaluations(num_steps),
                        "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "rho": RHO, "ode_dtype": "float64"},
            "image_shape": list(teacher.image_shape), "num_classes": teacher.num_classes,
            "latent_dtype": "float32", "image_dtype": "float32", "label_dtype": "int64",
            "first_seed": first_seed, "num_pairs": num_pairs, "shard_size": shard_size, "shards": shards}


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    manifest = read_json(path, PairFileError, "not a getkern pair directory")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PairFileError(f"{path} is not a getkern pair manifest (format != {FORMAT!r})")
    return manifest


def shard_is_complete(path: Path, count: int) -> bool:
    """True when ``path`` is a readable shard with ``count`` pairs (cheap: reads the header only)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys()) == {"latent", "image", "label", "seed"} and f.get_slice("seed").get_shape() == [count]
    except (SafetensorError, OSError, ValueError):
        return False


def _generate_shard(teacher: Teacher, first: int, count: int, num_steps: int, batch_size: int,
                    device: torch.device) -> dict[str, torch.Tensor]:
    seeds = list(range(first, first + count))
    inputs = [seed_inputs(s, teacher.image_shape, teacher.num_classes) for s in seeds]
    latent = torch.stack([z for z, _ in inputs])
    label = torch.tensor([y for _, y in inputs], dtype=torch.int64)
    images = []
    for i in range(0, count, batch_size):
        z = latent[i:i + batch_size].to(device)
        y = label[i:i + batch_size].to(device) if teacher.num_classes else None
        images.append(teacher.sample(z, y, num_steps=num_steps).to(torch.float32).cpu())
    return {"latent": latent, "image": torch.cat(images), "label": label,
            "seed": torch.tensor(seeds, dtype=torch.int64)}


def _write_manifest(out: Path, plan: dict, complete: bool) -> None:
    text = json.dumps({**plan, "complete": complete}, indent=1) + "\n"
    atomic_write(out / MANIFEST, lambda p: Path(p).write_text(text))


def write_pairs(teacher: Teacher, out_dir, *, num_pairs: int, first_seed: int = 0, shard_size: int = 1000,
                num_steps: int = 18, batch_size: int = 500, progress: bool = True) -> Path:
    """Generate (or finish generating) ``num_pairs`` pairs into ``out_dir``; returns the manifest path.

    Safe to call again with the same arguments: finished shards are kept. Different arguments on an
    existing directory raise PairFileError rather than mixing two pair sets. Under torchrun each rank
    writes its own shards and rank 0 writes the manifest once all ranks are done.
    """
    from tqdm import tqdm
    if num_pairs < 1 or shard_size < 1 or batch_size < 1:
        raise ValueError(f"num_pairs, shard_size and batch_size must be >= 1, got {num_pairs}, {shard_size}, {batch_size}")
    dist_info = init_distributed(str(next(teacher.denoiser.parameters()).device.type))
    out = Path(out_dir)
    plan = plan_manifest(teacher, num_pairs=num_pairs, first_seed=first_seed, shard_size=shard_size,
                         num_steps=num_steps)
    if (out / MANIFEST).is_file():
        old = read_manifest(out)
        differing = sorted(k for k in plan if old.get(k) != plan[k])
        if differing:
            raise PairFileError(f"{out / MANIFEST} describes a different pair set (differs in {differing}); "
                                "use another output directory")
    elif dist_info.is_main:  # the plan goes first, so a resumed run is checked against it
        _write_manifest(out, plan, complete=False)
    barrier()
    mine = plan["shards"][dist_info.rank::dist_info.world_size]
    todo = [s for s in mine if not shard_is_complete(out / s["file"], s["count"])]
    device = next(teacher.denoiser.parameters()).device
    bar = tqdm(total=sum(s["count"] for s in mine), initial=sum(s["count"] for s in mine) - sum(s["count"] for s in todo),
               desc=f"pairs (rank {dist_info.rank})", unit="pair", disable=not progress)
    for shard in todo:
        tensors = _generate_shard(teacher, shard["first_seed"], shard["count"], num_steps, batch_size, device)
        meta = {"first_seed": str(shard["first_seed"]), "count": str(shard["count"])}
        atomic_write(out / shard["file"], lambda p, t=tensors: save_file(t, p, metadata=meta))
        bar.update(shard["count"])
    bar.close()
    barrier()
    if dist_info.is_main:
        missing = [s["file"] for s in plan["shards"] if not shard_is_complete(out / s["file"], s["count"])]
        if missing:
            raise PairFileError(f"{out}: shards missing or incomplete after generation: {missing[:5]}")
        _write_manifest(out, plan, complete=True)
    barrier()
    return out / MANIFEST
