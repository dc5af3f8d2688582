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

The run folder belongs to one process at a time (getkern.runlock; under torchrun, rank 0 holds it).
``checkpoint.pt`` has its sha256 beside it (``checkpoint.pt.sha256``) and the one it replaced is kept
as ``checkpoint.prev.pt``, so a checkpoint found damaged on resume falls back to the one before. A
resume compares every setting with the checkpoint's (config.MAY_CHANGE_ON_RESUME lists those that may
differ) and the pair set by content (PairDataset.identity), and refuses naming each difference.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
import warnings
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from getkern.checkpoint import (
    DIGEST_SUFFIX,
    TRAIN_CHECKPOINT_FORMAT,
    CheckpointError,
    atomic_write,
    file_sha256,
    load_state_dict_checked,
    load_train_checkpoint,
)
from getkern.data import PairDataset, ReferencePairDataset
from getkern.data.pairs import describe_differences
from getkern.distill.config import MAY_CHANGE_ON_RESUME, TrainConfig, defaults, resume_differences
from getkern.distill.cpu_split import ThreadSplit
from getkern.distill.objectives import Objective, freeze_parameters, load_initial_weights
from getkern.distill.seeding import seeded_generator
from getkern.distributed import barrier, init_distributed, share_refusal
from getkern.errors import GetkernError, UsageError
from getkern.images import save_grid
from getkern.models import GET, ViT
from getkern.models.configs import GET_CONFIGS, VIT_CONFIGS, parse_model_name
from getkern.models.pretrained import check_arguments
from getkern.runlock import LOCK_FILE, hold_folder, remove_stale_temporaries

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"  # the one checkpoint.pt replaced, the fallback on resume
CORRUPT_CHECKPOINT = "checkpoint.corrupt.pt"  # a latest one that failed its check, set aside on resume
LOG = "log.jsonl"
TRAIN_CONFIG = "train_config.json"
LEGACY_CONFIG = "config.json"  # where runs wrote their settings before: the name save_pretrained folders use
CHECKPOINT_FORMAT = TRAIN_CHECKPOINT_FORMAT  # what getkern.checkpoint.load_train_checkpoint reads back


class ResumeError(UsageError, CheckpointError):
    """The run folder's checkpoint was trained with other settings or another pair set than asked for."""


class TrainingDiverged(GetkernError, FloatingPointError):
    """The loss became NaN or infinite (a learning rate too high, a broken pair set): the run stops before
    the diverged step is saved, so its checkpoints stay those of the last finite step."""


def build_model(
    model_cfg: dict,
    *,
    in_channels: int,
    input_size: int,
    cond: bool,
    num_classes: int,
    guidance_range: tuple[float, float] | None = None,
) -> GET | ViT:
    """GET from ``{"name": "GET-T/2", ...overrides}`` or plain GET keyword arguments; the one-pass ViT
    baseline for a name "ViT-..." or ``"arch": "vit"``. The pairs decide the image shape and the classes:
    a model config that contradicts them (or names no constructor argument) is refused (UsageError)
    before anything is built."""
    cfg = dict(model_cfg)
    name = cfg.pop("name", None)
    if name is not None and not isinstance(name, str):
        raise UsageError(f"model: name must be a model name string such as 'GET-T/2', got {name!r}")
    arch = cfg.pop("arch", "get")
    if arch not in ("get", "vit"):
        raise UsageError(f"model: arch must be 'get' or 'vit', got {arch!r}")
    cls = ViT if arch == "vit" or (name or "").startswith("ViT") else GET
    if name:  # an unknown name is the first thing to say
        parse_model_name(name, GET_CONFIGS if cls is GET else VIT_CONFIGS, cls.__name__)
    check_arguments(cls, cfg, "model", UsageError)
    shape = dict(in_channels=in_channels, input_size=input_size, cond=cond, num_classes=max(num_classes, 1))
    clashes = [f"{k}={cfg[k]!r}" for k in ("in_channels", "input_size", "cond") if k in cfg and cfg[k] != shape[k]]
    if (
        cond
        and "num_classes" in cfg
        and not (isinstance(cfg["num_classes"], int) and cfg["num_classes"] >= num_classes)
    ):
        clashes.append(f"num_classes={cfg['num_classes']!r}")
    if clashes:
        raise UsageError(
            f"model: {', '.join(clashes)} does not fit the pairs (images {in_channels}x{input_size}x"
            f"{input_size}, {f'{num_classes} classes' if cond else 'unconditional'}): drop "
            "the field, or train on pairs of that shape"
        )
    cfg["guidance_range"] = student_guidance_range(cfg, guidance_range)
    return cls.from_config(name, **{**shape, **cfg}) if name else cls(**{**shape, **cfg})


def student_guidance_range(model_cfg: dict, pairs_range: tuple[float, float] | None):
    """The student's w range for pairs with ``pairs_range`` (None: unguided pairs): the pairs' own,
    unless the model config names one, which must then cover the pairs' weights."""
    asked = model_cfg.get("guidance_range", pairs_range)
    if pairs_range is None and asked is not None:
        raise UsageError(
            f"the model config asks for guidance_range={asked}, but these pairs carry no guidance "
            "weights (written without --guidance-range)"
        )
    if pairs_range is not None and (asked is None or not asked[0] <= pairs_range[0] <= pairs_range[1] <= asked[1]):
        raise UsageError(
            f"the pairs are guided (w in {list(pairs_range)}): the student needs a guidance_range "
            f"covering it, got guidance_range={asked}"
        )
    return asked


def load_pairs(path):
    """PairDataset for a getkern directory (has manifest.json), else ReferencePairDataset."""
    return PairDataset(path) if (Path(path) / "manifest.json").is_file() else ReferencePairDataset(path)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of config.lr at optimiser step ``step``: linear warm-up, then the schedule."""
    warm = min(1.0, (step + 1) / (config.warmup_steps + 1))
    if config.lr_schedule == "constant":
        return warm
    progress = min(1.0, max(0, step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


class Trainer:
    """``Trainer(TrainConfig(pairs=..., out=...)).fit()``; resumes from ``out/checkpoint.pt`` if present."""

    def __init__(self, config: TrainConfig):
        self.config = c = config
        c.validate()  # again: a field may have been set after construction
        if not c.pairs or not c.out:
            raise UsageError(
                f"a run needs pairs (a pair folder) and out (its run folder), got pairs={c.pairs!r}, out={c.out!r}"
            )
        self.dist = init_distributed(c.device)
        self.device = self.dist.device
        if c.batch_size % (self.dist.world_size * c.grad_accum):
            raise UsageError(
                f"batch_size={c.batch_size} must be divisible by world_size*grad_accum="
                f"{self.dist.world_size * c.grad_accum}"
            )
        self.micro = c.batch_size // (self.dist.world_size * c.grad_accum)
        self.out = Path(c.out)
        check_run_folder(self.out, "out")
        self.dataset = load_pairs(c.pairs)
        self.latents, self.images, self.labels = self.dataset.tensors()
        self.pairs_identity = self.dataset.identity()  # after tensors(): every shard has been read and checked
        self.guidance = self.dataset.guidance() if hasattr(self.dataset, "guidance") else None  # (n,) or None
        n, C, H, W = self.latents.shape
        self.cond = self.dataset.num_classes > 0
        torch.manual_seed(c.seed)  # the initial weights are part of what the seed determines
        self.model = build_model(
            c.model,
            in_channels=C,
            input_size=H,
            cond=self.cond,
            num_classes=self.dataset.num_classes,
            guidance_range=getattr(self.dataset, "guidance_range", None),
        ).to(self.device)
        if c.init:
            load_initial_weights(self.model, c.init)
        freeze_parameters(self.model, c.freeze)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        # fused: one kernel over all parameters instead of about ten small ops per tensor (on CPU the
        # per-tensor loop was a third of a digits-demo step); same update to float rounding.
        self.opt = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=c.lr,
            weight_decay=c.weight_decay,
            fused=fused_optimizer(self.device),
        )
        self.net = self.model
        if self.dist.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, partial(lr_factor, config=c))
        self.scaler = torch.amp.GradScaler("cuda", enabled=c.amp == "fp16" and self.device.type == "cuda")
        self.objective = Objective(c, image_shape=(C, H, W), num_classes=self.dataset.num_classes, device=self.device)
        self.split = self._thread_split()
        self.step = 0
        self._saved_step: int | None = None  # the step checkpoint.pt holds (None: no checkpoint yet)
        self._perm_cache: dict[int, torch.Tensor] = {}
        self._sample_noise = torch.randn(
            (min(100, 10 * max(1, self.dataset.num_classes)), C, H, W), generator=seeded_generator(c.seed, -1)
        )

    # ---------------------------------------------------------------- data order

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm_cache:
            self._perm_cache = {
                epoch: torch.randperm(len(self.latents), generator=seeded_generator(self.config.seed, epoch))
            }
        return self._perm_cache[epoch]

    def batch_indices(self, step: int) -> torch.Tensor:
        """Global batch of pair indices for ``step`` (positions step*B .. step*B+B-1 of the stream)."""
        n, B = len(self.latents), self.config.batch_size
        pos = torch.arange(step * B, step * B + B)
        epochs = pos // n
        return torch.cat([self._perm(int(e))[pos[epochs == e] % n] for e in torch.unique(epochs)])

    # ---------------------------------------------------------------- one step

    def _thread_split(self) -> ThreadSplit | None:
        """The CPU split of each micro-batch (distill/cpu_split.py), where it applies: one process on a
        CPU with several threads, fp32, and a forward whose rows are independent (GET's unrolled
        iterations: the phantom and implicit solvers stop on the whole batch's residual; the ViT)."""
        c, threads = self.config, torch.get_num_threads()
        rows_independent = c.grad == "unrolled" or not isinstance(self.model, GET)
        if c.cpu_split != "threads" or self.device.type != "cpu" or self.dist.world_size > 1 or c.amp != "none":
            return None
        if threads < 2 or self.micro < 2 or not rows_independent:
            return None
        return ThreadSplit(min(threads, self.micro))

    def _student(self, noise, y, z0, w) -> list[torch.Tensor]:
        """The student's outputs the objective scores: GET's decoded iterates, or the ViT's one image."""
        c = self.config
        if isinstance(self.model, GET):
            return self.net(noise, y, iters=c.iters, z0=z0, return_iterates=True, grad=c.grad, guidance=w)
        return [self.net(noise, y, guidance=w)]  # the one-pass ViT baseline

    def _split_micro_batch(self, noise, target, y, w, z0, rows, step) -> torch.Tensor:
        def pick(t, part):
            return None if t is None else t[part]

        return self.split.step(
            lambda part: self._student(pick(noise, part), pick(y, part), pick(z0, part), pick(w, part)),
            lambda iterates: self.objective.loss(iterates, target, noise, y, step, rows=rows),
            len(noise),
            self.opt.param_groups[0]["params"],
            scale=1.0 / self.config.grad_accum,
        )

    def train_step(self) -> dict:
        c, step = self.config, self.step
        idx = self.batch_indices(step)
        N, D = self.model.x_embedder.num_patches, self.model.hidden_size
        z0_all = torch.randn((c.batch_size, N, D), generator=seeded_generator(c.seed, step))
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
            if self.split is not None:  # CPU: the micro-batch as one part per thread (distill/cpu_split.py)
                loss = self._split_micro_batch(noise, target, y, w, z0, sl, step)
            else:
                sync = a == c.grad_accum - 1 or self.dist.world_size == 1
                with self.net.no_sync() if not sync else contextlib.nullcontext():
                    with torch.autocast(
                        self.device.type,
                        dtype=torch.bfloat16 if c.amp == "bf16" else torch.float16,
                        enabled=c.amp != "none" and self.device.type == "cuda",
                    ):
                        iterates = self._student(noise, y, z0, w)
                        loss = self.objective.loss(iterates, target, noise, y, step, rows=sl)
                    self.scaler.scale(loss / c.grad_accum).backward()
            total += loss.detach().double().cpu() / c.grad_accum
        self.scaler.step(self.opt)
        self.scaler.update()
        self.objective.step()
        self.sched.step()
        with torch.no_grad():
            decay = min(c.ema_decay, (1 + step) / (10 + step)) if c.ema_warmup else c.ema_decay
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.model.parameters()), 1 - decay)
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
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "objective": self.objective.state_dict(),
            "model_class": type(self.model).__name__,
            "rng": rng,
            "data": {
                "epoch": self.step * B // n,
                "offset": self.step * B % n,
                "num_pairs": n,
                "pairs": self.pairs_identity,
            },
            "config": json.dumps(self.config.to_dict()),
            "model_config": json.dumps(self.model.config),
        }

    def save_checkpoint(self) -> None:
        """Write checkpoint.pt whole before it replaces anything, keep the one it replaces as
        checkpoint.prev.pt, then record its sha256 beside it."""
        if self.dist.is_main:
            state, latest, digest = self.state_dict(), self.out / CHECKPOINT, {}

            def write(tmp):
                torch.save(state, tmp)
                digest["sha256"] = file_sha256(tmp)
                _keep_as_previous(latest, self.out / PREVIOUS_CHECKPOINT)

            atomic_write(latest, write)
            atomic_write(_sidecar(latest), lambda p: Path(p).write_text(digest["sha256"] + "\n"))
        self._saved_step = self.step
        barrier()

    def find_checkpoint(self) -> tuple[Path | None, dict | None]:
        """(path, state) of the checkpoint to resume from: checkpoint.pt, or checkpoint.prev.pt when the
        latest is missing or fails its check (with a warning saying why); (None, None) for a new run.
        Raises CheckpointError when checkpoints exist but none is readable."""
        problems = []
        for path in (self.out / CHECKPOINT, self.out / PREVIOUS_CHECKPOINT):
            if not path.is_file():
                continue
            try:
                state = load_train_checkpoint(path)
            except CheckpointError as e:
                problems.append(str(e))
                continue
            if problems:
                warnings.warn(f"{problems[0]}; resuming from the previous checkpoint {path} instead", stacklevel=3)
            return path, state
        if problems:
            raise CheckpointError("; ".join(problems) + "; no earlier checkpoint is kept to resume from")
        return None, None

    def load_checkpoint(self, path, state: dict | None = None) -> None:
        """Restore the run from ``path`` (``state``: what was already read from it). Refuses (ResumeError) a
        checkpoint trained with other settings or another pair set, naming every difference."""
        state = load_train_checkpoint(path) if state is None else state
        differences = resume_differences(json.loads(state["config"]), self.config)
        saved_model = json.loads(state["model_config"])
        if saved_model != self.model.config:
            differences.append(f"model (as built): {saved_model} in the run, {self.model.config} now")
        differences += self._pairs_differences(json.loads(state["config"]), state.get("data", {}))
        if differences:
            raise ResumeError(
                f"{path} was trained with other settings than asked for now: {'; '.join(differences)}. "
                "Resume with the run's values or start another run folder (a resume may change only "
                f"{', '.join(MAY_CHANGE_ON_RESUME)})"
            )
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
        self._saved_step = self.step

    def _pairs_differences(self, saved: dict, data: dict) -> list[str]:
        """The pair set compared by content, so the same set at another path (or spelled otherwise) resumes
        and another set regenerated at the same path does not."""
        old = data.get("pairs")
        if old is None:  # a checkpoint from before pair identities recorded only the path
            same = Path(saved.get("pairs", "")).resolve() == Path(self.config.pairs).resolve()
            return [] if same else [f"pairs: {saved.get('pairs')!r} in the run, {self.config.pairs!r} now"]
        shown = describe_differences(old, self.pairs_identity, "in the run", "now")
        return [f"pairs: {self.config.pairs} is another pair set than the run's ({'; '.join(shown)})"] if shown else []

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
        images = (
            self.ema(noise, y, iters=self.config.iters, generator=seeded_generator(self.config.seed, -2), guidance=w)
            if isinstance(self.ema, GET)
            else self.ema(noise, y, guidance=w)
        )
        return save_grid(
            images, self.out / "samples" / f"step-{self.step:07d}.png", nrow=10, scale=max(1, 32 // images.shape[-1])
        )

    def fit(self) -> list[dict]:
        """Train to ``max_steps`` (resuming if a checkpoint exists); returns this call's log records.
        Holds the run folder for the whole call; another process holding it raises FolderBusy."""
        lock, refusal = None, None
        if self.dist.is_main:
            try:
                lock = hold_folder(self.out, "getkern train")
                remove_stale_temporaries(self.out, ("ema", "samples"))
            except (GetkernError, OSError) as e:
                refusal = e
        try:
            share_refusal(refusal)
            self._resume()
            return self._train()
        finally:
            if lock is not None:
                lock.release()

    def _resume(self) -> None:
        path, state = self.find_checkpoint()
        if state is not None:
            self.load_checkpoint(path, state)
        barrier()  # every rank has read its checkpoint before rank 0 moves files
        refusal = None
        if self.dist.is_main:
            try:
                latest = self.out / CHECKPOINT
                if path is not None and path != latest and latest.is_file():  # the latest failed its check
                    _set_aside(latest, self.out / CORRUPT_CHECKPOINT)
                _truncate_log(self.out / LOG, self.step)
                text = json.dumps(self.config.to_dict(), indent=2) + "\n"
                atomic_write(self.out / TRAIN_CONFIG, lambda p: Path(p).write_text(text))
                _drop_legacy_config(self.out)
            except (GetkernError, OSError) as e:
                refusal = e
        share_refusal(refusal)

    def _train(self) -> list[dict]:
        c = self.config
        records = []
        bar = tqdm(total=c.max_steps, initial=self.step, desc="distill", disable=not (c.progress and self.dist.is_main))
        t0, seen = time.perf_counter(), 0
        while self.step < c.max_steps:
            rec = self.train_step()
            seen += c.batch_size
            rec["pairs_per_s"] = round(seen / (time.perf_counter() - t0), 1)
            if not math.isfinite(rec["loss"]):
                kept = (
                    f"{self.out / CHECKPOINT} keeps step {self._saved_step}"
                    if self._saved_step is not None
                    else "no checkpoint was written"
                )
                raise TrainingDiverged(
                    f"the loss became {rec['loss']} at step {self.step}: the run diverged "
                    f"(lower lr / --lr, now {c.lr:g}); nothing of that step was saved, "
                    f"{kept}"
                )
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


RUN_MARKERS = (TRAIN_CONFIG, CHECKPOINT, PREVIOUS_CHECKPOINT)  # files only a run folder holds


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a `getkern train` run: it holds train_config.json or a checkpoint, or (runs
    from before train_config.json) a config.json of training settings."""
    folder = Path(folder)
    return any((folder / name).is_file() for name in RUN_MARKERS) or _is_legacy_run_config(folder / LEGACY_CONFIG)


def _is_legacy_run_config(path: Path) -> bool:
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(settings, dict) and {"pairs", "out"} <= set(settings) <= set(defaults())


def check_run_folder(out, what: str = "out") -> None:
    """Refuse (UsageError naming ``what``) a run folder that is another kind of folder: a pair set, or a
    folder of files that are not a run's (the user's own log.jsonl or config.json would be taken for the
    run's and rewritten). A missing or empty folder (subfolders aside) starts a run; a run folder resumes."""
    out = Path(out)
    if not out.is_dir():
        return
    if (out / "manifest.json").is_file():
        raise UsageError(f"{what} {out} is a pair folder (it holds manifest.json): give the run its own folder")
    if is_run_folder(out):
        return
    # Files only: a run writes files at the top (and into ema/ and samples/), never into other folders.
    foreign = sorted(p.name for p in out.iterdir() if not p.is_dir() and p.name != LOCK_FILE and not p.match(".*.tmp"))
    if foreign:
        raise UsageError(
            f"{what} {out} holds files that are not a getkern run's ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}) and no {TRAIN_CONFIG} or {CHECKPOINT}: use an "
            "empty or new folder for a new run"
        )


def _sidecar(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + DIGEST_SUFFIX)


def _keep_as_previous(latest: Path, previous: Path) -> None:
    """Make ``previous`` what ``latest`` is now, digest sidecar first (a crash between the steps never pairs
    a file with another's digest), while ``latest`` stays until the caller replaces it: a hard link where
    the file system has them, so some checkpoint.pt exists at every moment."""
    if not latest.is_file():
        return
    if _sidecar(latest).is_file():
        os.replace(_sidecar(latest), _sidecar(previous))
    else:
        _sidecar(previous).unlink(missing_ok=True)
    link = previous.with_name(f".{previous.name}.{os.urandom(6).hex()}.tmp")
    try:
        os.link(latest, link)
    except OSError:  # no hard links on this file system: for a moment only checkpoint.prev.pt exists
        os.replace(latest, previous)
        return
    os.replace(link, previous)


def _set_aside(checkpoint: Path, target: Path) -> None:
    """Move a damaged checkpoint (and its sidecar) out of the way, kept for inspection, so the next save
    does not push the good previous checkpoint out."""
    if _sidecar(checkpoint).is_file():
        os.replace(_sidecar(checkpoint), _sidecar(target))
    os.replace(checkpoint, target)


def _drop_legacy_config(out: Path) -> None:
    """An older run's settings file (config.json, now train_config.json) is removed once train_config.json
    holds them, so the run folder is not mistaken for a save_pretrained one; a config.json that does not
    parse as TrainConfig settings is someone else's and stays."""
    legacy = out / LEGACY_CONFIG
    try:
        TrainConfig.from_dict(json.loads(legacy.read_text()))
    except (OSError, ValueError, TypeError):
        return
    legacy.unlink()


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records after ``step`` (written after the checkpoint a resumed run restarts from) and a torn
    last record (a run killed while writing it), with a warning; a damaged record elsewhere is an error."""
    if not path.is_file():
        return
    lines = path.read_text(errors="replace").splitlines()
    keep = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record_step = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                warnings.warn(
                    f"{path}: dropped its torn last line {number} ({line[:40]!r}...): the run was killed "
                    "while writing it",
                    stacklevel=4,
                )
                continue
            raise GetkernError(
                f"{path}: line {number} is not a log record ({line[:60]!r}); repair or remove that line to resume"
            ) from None
        if record_step <= step:
            keep.append(line)
    atomic_write(path, lambda p: Path(p).write_text("".join(line + "\n" for line in keep)))


def fused_optimizer(device: torch.device) -> bool | None:
    """Whether torch's fused Adam/AdamW implementation runs on ``device`` (None: torch's default)."""
    return True if device.type in ("cpu", "cuda") else None


def load_ema_model(path) -> GET | ViT:
    """The EMA GET (or ViT) of a training checkpoint file, ready for sampling (eval mode)."""
    state = load_train_checkpoint(path)
    model = (ViT if state.get("model_class") == "ViT" else GET)(**json.loads(state["model_config"]))
    load_state_dict_checked(model, state["ema"], f"{path}['ema']")
    return model.eval()
