"""Noise/image pair generation from a teacher, in sharded safetensors files plus a JSON manifest.

Layout of ``<out>/``::

    manifest.json                          the plan (teacher, sampler, shapes, dtypes, seeds, shards)
    pairs-000000000-000000999.safetensors  latent float32 (n, C, H, W), image float32 (n, C, H, W),
    ...                                    label int64 (n,) (-1: unconditional), seed int64 (n,)
                                           [guidance float32 (n,): guided pair sets only]

Pair ``s`` is (z, teacher(z * sigma_max, label)) with z and label drawn from
``torch.Generator().manual_seed(s)`` (z first, then the label), so any pair can be regenerated from its
seed alone. A guided pair set (``guidance_range=(wmin, wmax)``) draws the classifier-free guidance weight
w ~ U[wmin, wmax] third from the same generator and samples the guided teacher D_w; z and label are the
same as in an unguided set. Shard ``i`` holds seeds ``first_seed + i*shard_size ...``; each is written atomically, so a
killed run restarted with the same arguments skips finished shards and produces exactly the same set
(no duplicate, no missing seed). Under torchrun, rank r writes shards r, r + world, r + 2 world, ...
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from getkern.checkpoint import atomic_write, read_json
from getkern.distill.distributed import barrier, init_distributed
from getkern.teacher import Teacher
from getkern.teacher.edm import RHO, SIGMA_MAX, SIGMA_MIN, network_evaluations
from getkern.errors import GetkernError, UsageError

MANIFEST = "manifest.json"
FORMAT = "getkern-pairs"
FORMAT_VERSION = 1


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


def seed_guidance(seed: int, image_shape: tuple[int, ...], num_classes: int,
                  guidance_range: tuple[float, float]) -> float:
    """The guidance weight w of pair ``seed`` in a guided set: U[wmin, wmax], drawn after z and the label."""
    _, _, g = _seeded(seed, image_shape, num_classes)
    u = float(torch.rand((), generator=g, dtype=torch.float64))
    return guidance_range[0] + u * (guidance_range[1] - guidance_range[0])


def check_guidance_range(guidance_range, name: str = "guidance_range") -> tuple[float, float]:
    """(wmin, wmax) as floats, finite, wmin <= wmax; a ValueError naming ``name`` otherwise."""
    try:
        wmin, wmax = (float(w) for w in guidance_range)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be two numbers (wmin, wmax), got {guidance_range!r}") from None
    if not (math.isfinite(wmin) and math.isfinite(wmax) and wmin <= wmax):
        raise UsageError(f"{name} must be finite with wmin <= wmax, got ({wmin}, {wmax})")
    return wmin, wmax


def plan_manifest(teacher: Teacher, *, num_pairs: int, first_seed: int, shard_size: int, num_steps: int,
                  guidance_range: tuple[float, float] | None = None) -> dict:
    """Everything that determines the pair set (compared on resume) plus the shard list."""
    shards = [{"file": shard_name(first, min(shard_size, first_seed + num_pairs - first)), "first_seed": first,
               "count": min(shard_size, first_seed + num_pairs - first)}
              for first in range(first_seed, first_seed + num_pairs, shard_size)]
    sampler = {"name": "edm-heun", "num_steps": num_steps, "network_evaluations": network_evaluations(num_steps),
               "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "rho": RHO, "ode_dtype": "float64"}
    guided = {}
    if guidance_range is not None:  # keys only in guided sets: unguided manifests are unchanged
        sampler["guidance"] = "classifier-free: (1 + w) D(x, c) - w D(x, none), w ~ U[wmin, wmax] per seed"
        sampler["network_evaluations"] *= 2
        guided = {"guidance_range": list(guidance_range), "guidance_dtype": "float32"}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "teacher": teacher.meta, "sampler": sampler,
            "image_shape": list(teacher.image_shape), "num_classes": teacher.num_classes,
            "latent_dtype": "float32", "image_dtype": "float32", "label_dtype": "int64", **guided,
            "first_seed": first_seed, "num_pairs": num_pairs, "shard_size": shard_size, "shards": shards}


def shard_keys(guided: bool) -> set[str]:
    """The tensors a shard holds."""
    return {"latent", "image", "label", "seed"} | ({"guidance"} if guided else set())


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    manifest = read_json(path, PairFileError, "not a getkern pair directory")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PairFileError(f"{path} is not a getkern pair manifest (format != {FORMAT!r})")
    return manifest


def shard_is_complete(path: Path, count: int, guided: bool = False) -> bool:
    """True when ``path`` is a readable shard with ``count`` pairs (cheap: reads the header only)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys()) == shard_keys(guided) and f.get_slice("seed").get_shape() == [count]
    except (SafetensorError, OSError, ValueError):
        return False


def _generate_shard(teacher: Teacher, first: int, count: int, num_steps: int, batch_size: int,
                    device: torch.device, guidance_range: tuple[float, float] | None = None) -> dict[str, torch.Tensor]:
    seeds = list(range(first, first + count))
    inputs = [seed_inputs(s, teacher.image_shape, teacher.num_classes) for s in seeds]
    latent = torch.stack([z for z, _ in inputs])
    label = torch.tensor([y for _, y in inputs], dtype=torch.int64)
    guidance = None
    if guidance_range is not None:
        guidance = torch.tensor([seed_guidance(s, teacher.image_shape, teacher.num_classes, guidance_range)
                                 for s in seeds], dtype=torch.float64)
    images = []
    for i in range(0, count, batch_size):
        z = latent[i:i + batch_size].to(device)
        y = label[i:i + batch_size].to(device) if teacher.num_classes else None
        w = guidance[i:i + batch_size].to(device) if guidance is not None else None
        images.append(teacher.sample(z, y, num_steps=num_steps, guidance=w).to(torch.float32).cpu())
    out = {"latent": latent, "image": torch.cat(images), "label": label,
           "seed": torch.tensor(seeds, dtype=torch.int64)}
    if guidance is not None:
        out["guidance"] = guidance.to(torch.float32)
    return out


def _write_manifest(out: Path, plan: dict, complete: bool) -> None:
    text = json.dumps({**plan, "complete": complete}, indent=1) + "\n"
    atomic_write(out / MANIFEST, lambda p: Path(p).write_text(text))


def write_pairs(teacher: Teacher, out_dir, *, num_pairs: int, first_seed: int = 0, shard_size: int = 1000,
                num_steps: int = 18, batch_size: int = 500, guidance_range: tuple[float, float] | None = None,
                progress: bool = True) -> Path:
    """Generate (or finish generating) ``num_pairs`` pairs into ``out_dir``; returns the manifest path.

    ``guidance_range=(wmin, wmax)``: a guided set for guidance distillation; pair s gets its own
    w ~ U[wmin, wmax] (:func:`seed_guidance`) and the image is the classifier-free-guided teacher's
    sample at that w (the teacher needs a null class, e.g. ``load_teacher("digits-guided")``).
    Safe to call again with the same arguments: finished shards are kept. Different arguments on an
    existing directory raise PairFileError rather than mixing two pair sets. Under torchrun each rank
    writes its own shards and rank 0 writes the manifest once all ranks are done.
    """
    from tqdm import tqdm
    if num_pairs < 1 or shard_size < 1 or batch_size < 1:
        raise ValueError(f"num_pairs, shard_size and batch_size must be >= 1, got {num_pairs}, {shard_size}, {batch_size}")
    if guidance_range is not None:
        guidance_range = check_guidance_range(guidance_range)
        teacher.guided(0.0)  # raises now, with the reason, if the teacher cannot be guided
    dist_info = init_distributed(str(next(teacher.denoiser.parameters()).device.type))
    out = Path(out_dir)
    plan = plan_manifest(teacher, num_pairs=num_pairs, first_seed=first_seed, shard_size=shard_size,
                         num_steps=num_steps, guidance_range=guidance_range)
    guided = guidance_range is not None
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
    todo = [s for s in mine if not shard_is_complete(out / s["file"], s["count"], guided)]
    device = next(teacher.denoiser.parameters()).device
    bar = tqdm(total=sum(s["count"] for s in mine), initial=sum(s["count"] for s in mine) - sum(s["count"] for s in todo),
               desc=f"pairs (rank {dist_info.rank})", unit="pair", disable=not progress)
    for shard in todo:
        tensors = _generate_shard(teacher, shard["first_seed"], shard["count"], num_steps, batch_size, device,
                                  guidance_range)
        meta = {"first_seed": str(shard["first_seed"]), "count": str(shard["count"])}
        atomic_write(out / shard["file"], lambda p, t=tensors: save_file(t, p, metadata=meta))
        bar.update(shard["count"])
    bar.close()
    barrier()
    if dist_info.is_main:
        missing = [s["file"] for s in plan["shards"] if not shard_is_complete(out / s["file"], s["count"], guided)]
        if missing:
            raise PairFileError(f"{out}: shards missing or incomplete after generation: {missing[:5]}")
        _write_manifest(out, plan, complete=True)
    barrier()
    return out / MANIFEST
