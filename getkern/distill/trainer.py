"""Distill a teacher's noise/image pairs into a GET (the reference recipe by default).

One optimisation step at step s (0-based) with global batch B:
  1. indices: positions s*B .. s*B+B-1 of an endless stream of per-epoch permutations of the pairs
     (epoch e shuffled by a generator seeded with (seed, e)): the data position is the step itself;
  2. z0 (B, N, D) from a generator seeded with (seed, s), so a rank or micro-batch slice of the global
     batch sees the same numbers whatever the world size or accumulation;
  3. the model unrolls K = ``iters`` equilibrium iterations from z0 and decodes each iterate x_k;
     loss = sum_k w^(K-1-k) * L1(x_k, image) (fixed-point correction, not normalised, w = 0.8);
  4. AdamW step, then EMA update of every parameter.
Checkpoints hold model, EMA, optimiser, RNG states and the data position, written atomically, so a
run killed at any moment resumes from its last checkpoint and then reproduces the uninterrupted run's
losses exactly (same machine, same thread count).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from getkern.checkpoint import CheckpointError, atomic_write
from getkern.distill.distributed import barrier, init_distributed
from getkern.distill.grid import save_grid
from getkern.distill.objectives import (OBJECTIVE_FIELDS, Objective, check_objective_config, freeze_parameters,
                                        load_initial_weights)
from getkern.distill.objectives.regression import fpc_loss
from getkern.models import GET, ViT

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
CHECKPOINT_FORMAT = "getkern-train"


@dataclass
class TrainConfig:
    """Every setting of a run; saved in each checkpoint. Defaults: the reference's recipe."""
    pairs: str                         # a getkern pair directory, or a reference root (latent/, image/)
    out: str                           # run directory: checkpoint.pt, log.jsonl, samples/, ema/
    model: dict = field(default_factory=lambda: {"name": "GET-T/2"})  # {"name": ..} and/or GET kwargs
    batch_size: int = 128              # global batch, over all ranks and accumulation steps
    grad_accum: int = 1
    lr: float = 1e-4
    warmup_steps: int = 0              # linear learning-rate warm-up (the reference uses none)
    lr_schedule: str = "constant"      # "constant" (the reference) | "cosine" (to 0 at max_steps)
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    ema_warmup: bool = False           # decay min(ema_decay, (1 + s) / (10 + s)) at step s, so short runs
                                       # do not keep a share of the random init (the reference: False)
    iters: int = 6                     # K unrolled equilibrium iterations per training step
    fpc_weight: float = 0.8            # fixed-point-correction weight w: iterate k gets w^(K-1-k)
    loss: str = "l1"                   # regression distance: "l1" | "l2" | "perceptual"
    grad: str = "unrolled"             # gradient mode of getkern.deq: "unrolled" | "phantom" | "implicit"
    # Further objectives (getkern/distill/objectives/, docs/objectives.md); the defaults are the reference's.
    regression_weight: float = 1.0     # weight of the fixed-point-correction regression term
    adversarial_weight: float = 0.0    # weight of the discriminator's generator loss (0: no discriminator)
    disc_input: str = "pair"           # the discriminator sees "pair" (noise and image) | "image"
    disc_classes: bool = False         # class projection in the discriminator (conditional pairs only)
    disc_loss: str = "hinge"           # "hinge" | "nonsaturating"
    disc_lr: float = 2e-4              # discriminator Adam, betas (0.0, 0.99)
    disc_width: int = 32               # discriminator channels of its first conv
    perceptual_net: str = "digits"     # loss="perceptual": "digits" (the digits classifier) | "lpips"
    perceptual_ensemble: int = 4       # random augmentations the perceptual distance is averaged over
    init: str = ""                     # initial student weights: a training checkpoint or save_pretrained dir
    freeze: list = field(default_factory=list)  # parameter-name prefixes of the student left untrained
    max_steps: int = 800_000
    checkpoint_every: int = 1000
    sample_every: int = 5000
    log_every: int = 1
    seed: int = 0
    amp: str = "none"                  # "none" | "bf16" | "fp16" (CUDA autocast)
    device: str | None = None          # None: CUDA when available
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_model(model_cfg: dict, *, in_channels: int, input_size: int, cond: bool, num_classes: int,
                guidance_range: tuple[float, float] | None = None) -> GET | ViT:
    """GET from ``{"name": "GET-T/2", ...overrides}`` or plain GET keyword arguments; the one-pass ViT
    baseline for a name "ViT-..." or ``"arch": "vit"``."""
    cfg = dict(model_cfg)
    name = cfg.pop("name", None)
    cls = ViT if cfg.pop("arch", "get") == "vit" or (name or "").startswith("ViT") else GET
    shape = dict(in_channels=in_channels, input_size=input_size, cond=cond, num_classes=max(num_classes, 1))
    cfg["guidance_range"] = student_guidance_range(cfg, guidance_range)
    return cls.from_config(name, **{**shape, **cfg}) if name else cls(**{**shape, **cfg})


def student_guidance_range(model_cfg: dict, pairs_range: tuple[float, float] | None):
    """The student's w range for pairs with ``pairs_range`` (None: unguided pairs): the pairs' own,
    unless the model config names one, which must then cover the pairs' weights."""
    asked = model_cfg.get("guidance_range", pairs_range)
    if pairs_range is None and asked is not None:
        raise ValueError(f"the model config asks for guidance_range={asked}, but these pairs carry no guidance "
                         "weights (written without --guidance-range)")
    if pairs_range is not None and (asked is None or not asked[0] <= pairs_range[0] <= pairs_range[1] <= asked[1]):
        raise ValueError(f"the pairs are guided (w in {list(pairs_range)}): the student needs a guidance_range "
                         f"covering it, got guidance_range={asked}")
    return asked


def load_pairs(path):
    """PairDataset for a getkern directory (has manifest.json), else ReferencePairDataset."""
    from getkern.data import PairDataset, ReferencePairDataset
    return PairDataset(path) if (Path(path) / "manifest.json").is_file() else ReferencePairDataset(path)


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of config.lr at optimiser step ``step``: linear warm-up, then the schedule."""
    warm = min(1.0, (step + 1) / (config.warmup_steps + 1))
    if config.lr_schedule == "constant":
        return warm
    progress = min(1.0, max(0, step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


def _generator(*seeds: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(hash_seeds(*seeds))
    return g


def hash_seeds(*seeds: int) -> int:
    """A 63-bit seed from a tuple of ints (so (seed, epoch) and (seed, step) streams never collide)."""
    h = 1469598103934665603
    for s in seeds:
        h = ((h ^ (s & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


class Trainer:
    """``Trainer(TrainConfig(pairs=..., out=...)).fit()``; resumes from ``out/checkpoint.pt`` if present."""

    def __init__(self, config: TrainConfig):
        self.config = c = config
        if c.batch_size < 1 or c.grad_accum < 1 or c.iters < 1:
            raise ValueError(f"batch_size, grad_accum and iters must be >= 1, "
                             f"got {c.batch_size}, {c.grad_accum}, {c.iters}")
        check_objective_config(c)
        if c.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {c.lr_schedule!r}")
        if c.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {c.amp!r}")
        self.dist = init_distributed(c.device)
        self.device = self.dist.device
        if c.batch_size % (self.dist.world_size * c.grad_accum):
            raise ValueError(f"batch_size={c.batch_size} must be divisible by world_size*grad_accum="
                             f"{self.dist.world_size * c.grad_accum}")
        self.micro = c.batch_size // (self.dist.world_size * c.grad_accum)
        self.out = Path(c.out)
        self.dataset = load_pairs(c.pairs)
        self.latents, self.images, self.labels = self.dataset.tensors()
        self.guidance = self.dataset.guidance() if hasattr(self.dataset, "guidance") else None  # (n,) or None
        n, C, H, W = self.latents.shape
        self.cond = self.dataset.num_classes > 0
        torch.manual_seed(c.seed)  # the initial weights are part of what the seed determines
        self.model = build_model(c.model, in_channels=C, input_size=H, cond=self.cond,
                                 num_classes=self.dataset.num_classes,
                                 guidance_range=getattr(self.dataset, "guidance_range", None)).to(self.device)
        if c.init:
            load_initial_weights(self.model, c.init)
        freeze_parameters(self.model, c.freeze)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=c.lr,
                                     weight_decay=c.weight_decay)
        self.net = self.model
        if self.dist.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, partial(lr_factor, config=c))
        self.scaler = torch.amp.GradScaler("cuda", enabled=c.amp == "fp16" and self.device.type == "cuda")
        self.objective = Objective(c, image_shape=(C, H, W), num_classes=self.dataset.num_classes, device=self.device)
        self.step = 0
        self._perm_cache: dict[int, torch.Tensor] = {}
        self._sample_noise = torch.randn((min(100, 10 * max(1, self.dataset.num_classes)), C, H, W),
                                         generator=_generator(c.seed, -1))

    # ---------------------------------------------------------------- data order

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm_cache:
            self._perm_cache = {epoch: torch.randperm(len(self.latents), generator=_generator(self.config.seed, epoch))}
        return self._perm_cache[epoch]

    def batch_indices(self, step: int) -> torch.Tensor:
        """Global batch of pair indices for ``step`` (positions step*B .. step*B+B-1 of the stream)."""
        n, B = len(self.latents), self.config.batch_size
        pos = torch.arange(step * B, step * B + B)
        epochs = pos // n
        return torch.cat([self._perm(int(e))[pos[epochs == e] % n] for e in torch.unique(epochs)])

    # ---------------------------------------------------------------- one step

    def train_step(self) -> dict:
        c, step = self.config, self.step
        idx = self.batch_indices(step)
        N, D = self.model.x_embedder.num_patches, self.model.hidden_size
        z0_all = torch.randn((c.batch_size, N, D), generator=_generator(c.seed, step))
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        for a in range(c.grad_accum):
            chunk = (a * self.dist.world_size + self.dist.rank) * self.micro
            sl = slice(chunk, chunk + self.micro)
            i = idx[sl]
            noise, target = self.latents[i].to(self.device), self.images[i].to(self.device)
            y = self.labels[i].to(self.device) if self.cond else None
            w = self.guidance[i].to(self.device) if self.guidance is not None else None
            z0 = z0_all[sl].to(self.device)
            sync = a == c.grad_accum - 1 or self.dist.world_size == 1
            with (self.net.no_sync() if not sync else contextlib.nullcontext()):
                with torch.autocast(self.device.type, dtype=torch.bfloat16 if c.amp == "bf16" else torch.float16,
                                    enabled=c.amp != "none" and self.device.type == "cuda"):
                    if isinstance(self.model, GET):
                        iterates = self.net(noise, y, iters=c.iters, z0=z0, return_iterates=True, grad=c.grad,
                                            guidance=w)
                    else:  # the one-pass ViT baseline
                        iterates = [self.net(noise, y, guidance=w)]
                    loss = self.objective.loss(iterates, target, noise, y, step, rows=sl)
                self.scaler.scale(loss / c.grad_accum).backward()
            total += loss.detach().double().cpu() / c.grad_accum
        self.scaler.step(self.opt)
        self.scaler.update()
        self.objective.step()
        self.sched.step()
        with torch.no_grad():
            decay = min(c.ema_decay, (1 + step) / (10 + step)) if c.ema_warmup else c.ema_decay
            for p_ema, p in zip(self.ema.parameters(), self.model.parameters()):
                p_ema.lerp_(p, 1 - decay)
        if self.dist.world_size > 1:
            dist.all_reduce(total)
            total /= self.dist.world_size
        self.step += 1
        return {"step": self.step, "loss": float(total), **self.objective.stats()}

    # ---------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        B, n = self.config.batch_size, len(self.latents)
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "model": self.model.state_dict(),
                "ema": self.ema.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(), "objective": self.objective.state_dict(),
                "model_class": type(self.model).__name__, "rng": rng, "data": {"epoch": self.step * B // n, "offset": self.step * B % n, "num_pairs": n},
                "config": json.dumps(self.config.to_dict()), "model_config": json.dumps(self.model.config)}

    def save_checkpoint(self) -> None:
        if self.dist.is_main:
            state = self.state_dict()
            atomic_write(self.out / CHECKPOINT, lambda p: torch.save(state, p))
        barrier()

    def load_checkpoint(self, path) -> None:
        state = load_train_checkpoint(path)
        if json.loads(state["model_config"]) != self.model.config:
            raise CheckpointError(f"{path}: model config {state['model_config']} differs from this run's "
                                  f"{json.dumps(self.model.config)}")
        saved = json.loads(state["config"])
        keys = ["batch_size", "seed", "iters", "pairs", "lr", "warmup_steps", "lr_schedule", "grad",
                *OBJECTIVE_FIELDS]
        if self.config.lr_schedule != "constant":
            keys.append("max_steps")  # the schedule's length
        defaults = TrainConfig(pairs="", out="").to_dict()  # for checkpoints older than a field
        for key in keys:
            ours = json.loads(json.dumps(getattr(self.config, key)))
            if saved.get(key, defaults[key]) != ours:
                raise CheckpointError(f"{path}: cannot resume with {key}={ours!r}, "
                                      f"the checkpoint was trained with {saved.get(key, defaults[key])!r}")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.scaler.load_state_dict(state["scaler"])
        self.objective.load_state_dict(state.get("objective", {}))
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])

    # ---------------------------------------------------------------- loop

    @torch.no_grad()
    def save_samples(self) -> Path:
        """Grid of EMA samples from fixed noise (one row per class when conditional)."""
        noise = self._sample_noise.to(self.device)
        y = None
        if self.cond:
            k = self.dataset.num_classes
            y = torch.arange(len(noise), device=self.device) // (len(noise) // k) % k
        w = None
        if self.ema.guidance_range is not None:  # columns sweep the guidance range
            (lo, hi), col = self.ema.guidance_range, torch.arange(len(noise), device=self.device) % 10
            w = lo + (hi - lo) * col / 9
        images = (self.ema(noise, y, iters=self.config.iters, generator=_generator(self.config.seed, -2), guidance=w)
                  if isinstance(self.ema, GET) else self.ema(noise, y, guidance=w))
        return save_grid(images, self.out / "samples" / f"step-{self.step:07d}.png", nrow=10,
                         scale=max(1, 32 // images.shape[-1]))

    def fit(self) -> list[dict]:
        """Train to ``max_steps`` (resuming if a checkpoint exists); returns this call's log records."""
        from tqdm import tqdm
        c = self.config
        ckpt = self.out / CHECKPOINT
        if ckpt.is_file():
            self.load_checkpoint(ckpt)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            _truncate_log(self.out / LOG, self.step)
            (self.out / "config.json").write_text(json.dumps(c.to_dict(), indent=2) + "\n")
        records = []
        bar = tqdm(total=c.max_steps, initial=self.step, desc="distill", disable=not (c.progress and self.dist.is_main))
        t0, seen = time.perf_counter(), 0
        while self.step < c.max_steps:
            rec = self.train_step()
            seen += c.batch_size
            rec["pairs_per_s"] = round(seen / (time.perf_counter() - t0), 1)
            if not math.isfinite(rec["loss"]):
                raise FloatingPointError(f"loss became {rec['loss']} at step {self.step}")
            records.append(rec)
            if self.dist.is_main and (self.step % c.log_every == 0 or self.step == c.max_steps):
                with open(self.out / LOG, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", pairs_s=rec["pairs_per_s"])
            if self.step % c.checkpoint_every == 0 or self.step == c.max_steps:
                self.save_checkpoint()
            if self.dist.is_main and c.sample_every and (self.step % c.sample_every == 0 or self.step == c.max_steps):
                self.save_samples()
        bar.close()
        if self.dist.is_main:
            self.ema.save_pretrained(self.out / "ema")
        barrier()
        return records


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records after ``step`` (written after the checkpoint a resumed run restarts from)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    atomic_write(path, lambda p: Path(p).write_text("".join(line + "\n" for line in keep)))


def load_train_checkpoint(path) -> dict:
    """A checkpoint written by :class:`Trainer` (torch.load with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling/zip failure means the same thing here
        raise CheckpointError(f"{path} is not a readable training checkpoint (corrupt or truncated): "
                              f"{str(e).splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a getkern training checkpoint (format != {CHECKPOINT_FORMAT!r})")
    return state


def load_ema_model(path) -> GET | ViT:
    """The EMA GET (or ViT) of a training checkpoint file, ready for sampling (eval mode)."""
    state = load_train_checkpoint(path)
    model = (ViT if state.get("model_class") == "ViT" else GET)(**json.loads(state["model_config"]))
    from getkern.checkpoint import load_state_dict_checked
    load_state_dict_checked(model, state["ema"], f"{path}['ema']")
    return model.eval()
