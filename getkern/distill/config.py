"""Every setting of a training run: :class:`TrainConfig`, each field with its help text and allowed
values, and which settings a resumed run may change. Torch-free: ``getkern train``'s options are
generated from these fields, so the parser stays fast and the CLI, the API and saved configs share one
definition and one validation (``TrainConfig(...)`` checks itself; a bad value raises
:class:`~getkern.errors.SettingError` naming the field, the value and what is allowed).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

from getkern.errors import SettingError, UsageError

LOSSES = ("l1", "l2", "perceptual")  # regression distance (objectives/)
GRADS = ("unrolled", "phantom", "implicit")  # = getkern.deq.GRADS (torch-free copy; tests/test_cli.py)
LR_SCHEDULES = ("constant", "cosine")
AMP_MODES = ("none", "bf16", "fp16")
CPU_SPLITS = ("off", "threads")  # distill/cpu_split.py
DISC_INPUTS = ("image", "pair")  # what the discriminator sees (objectives/adversarial.py)
DISC_LOSSES = ("hinge", "nonsaturating")
PERCEPTUAL_NETS = ("digits", "lpips")  # objectives/perceptual.py
MAX_SEED = 2**63 - 1

# Settings a resumed run may give new values: they change how long it runs, how often it reports and
# where it runs, not what a step computes. Every other setting must equal the checkpoint's.
MAY_CHANGE_ON_RESUME = {
    "out": "the run folder may have been moved or be spelled differently",
    "max_steps": "to extend (or end) a run; not with lr_schedule='cosine', whose length it is",
    "checkpoint_every": "reporting only",
    "sample_every": "reporting only",
    "log_every": "reporting only",
    "progress": "reporting only",
    "device": "where it runs",
    "grad_accum": "memory only: changes the float summation order, as the number of ranks does",
    "cpu_split": "where it runs: changes the float summation order, as grad_accum does",
}
# Compared by what they denote, not by how they are spelled: the pair set by its content
# (PairDataset.identity), the model by the configuration of the model it builds.
COMPARED_BY_CONTENT = ("pairs", "model")


def _setting(
    default, help: str, *, low=None, high=None, above=None, choices=None, group: str = "", metavar: str | None = None
):
    """A field with its help text and allowed values (``low``/``high`` inclusive, ``above`` exclusive)."""
    meta = {
        "help": help,
        "low": low,
        "high": high,
        "above": above,
        "choices": choices,
        "group": group,
        "metavar": metavar,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a run; saved in each checkpoint. Defaults: the reference's recipe."""

    pairs: str = _setting("", "getkern pair folder, or a reference root (latent/, image/)")
    out: str = _setting("", "run folder: checkpoint.pt, log.jsonl, train_config.json, samples/, ema/")
    model: dict = _setting(
        {"name": "GET-T/2"},
        '{"name": "GET-T/2", ...overrides} and/or GET keyword arguments; '
        'a name "ViT-..." or "arch": "vit" for the one-pass baseline',
    )
    batch_size: int = _setting(128, "global batch, over all ranks and accumulation steps", low=1)
    grad_accum: int = _setting(1, "micro-batches per step (divides the batch)", low=1)
    lr: float = _setting(1e-4, "AdamW learning rate", above=0)
    warmup_steps: int = _setting(0, "linear learning-rate warm-up steps (the reference uses none)", low=0)
    lr_schedule: str = _setting(
        "constant", "after warm-up: constant (the reference) or cosine decay to 0 at --max-steps", choices=LR_SCHEDULES
    )
    weight_decay: float = _setting(0.0, "AdamW weight decay", low=0)
    ema_decay: float = _setting(0.9999, "EMA decay per step", low=0, high=1)
    ema_warmup: bool = _setting(
        False,
        "EMA decay min(--ema-decay, (1+s)/(10+s)) at step s, so short runs do "
        "not keep a share of the random init (the reference: off)",
    )
    iters: int = _setting(6, "K unrolled equilibrium iterations per training step", low=1)
    fpc_weight: float = _setting(0.8, "fixed-point-correction weight w: iterate k gets w^(K-1-k)", low=0)
    loss: str = _setting("l1", "regression distance (docs/objectives.md)", choices=LOSSES)
    grad: str = _setting("unrolled", "gradient mode of getkern.deq", choices=GRADS)
    regression_weight: float = _setting(
        1.0, "weight of the fixed-point-correction regression term (0: adversarial alone)", low=0, group="objectives"
    )
    adversarial_weight: float = _setting(
        0.0, "weight of the discriminator's generator loss (0: no discriminator)", low=0, group="objectives"
    )
    disc_input: str = _setting(
        "pair", "the discriminator sees (noise, image) pairs or images alone", choices=DISC_INPUTS, group="objectives"
    )
    disc_classes: bool = _setting(
        False, "class projection in the discriminator (conditional pairs only)", group="objectives"
    )
    disc_loss: str = _setting("hinge", "discriminator loss", choices=DISC_LOSSES, group="objectives")
    disc_lr: float = _setting(2e-4, "discriminator Adam lr (betas 0.0, 0.99)", above=0, group="objectives")
    disc_width: int = _setting(32, "discriminator channels of its first conv", low=1, group="objectives")
    perceptual_net: str = _setting(
        "digits",
        "--loss perceptual: the digits classifier, or LPIPS (optional `lpips` package)",
        choices=PERCEPTUAL_NETS,
        group="objectives",
    )
    perceptual_ensemble: int = _setting(
        4, "random augmentations per step the perceptual distance is averaged over", low=1, group="objectives"
    )
    init: str = _setting(
        "",
        "start the student from a training checkpoint's EMA weights or a save_pretrained "
        "folder (fine-tuning); '': fresh weights",
        group="objectives",
    )
    freeze: list = _setting(
        [],
        "student parameter-name prefixes left untrained, e.g. x_embedder y_embedder blocks qkv_inj",
        group="objectives",
        metavar="PREFIX",
    )
    max_steps: int = _setting(800_000, "train until this step (a resumed run may raise it)", low=1)
    checkpoint_every: int = _setting(1000, "steps between checkpoints", low=1)
    sample_every: int = _setting(5000, "steps between sample grids (0: none)", low=0)
    log_every: int = _setting(1, "steps between log.jsonl records", low=1)
    seed: int = _setting(0, "seeds the initial weights, data order and z0", low=0, high=MAX_SEED)
    amp: str = _setting("none", "CUDA autocast dtype", choices=AMP_MODES)
    device: str | None = _setting(None, "None or 'auto': CUDA when available; else a torch device")
    cpu_split: str = _setting(
        "off",
        "on a CPU, one process: 'threads' runs each micro-batch as one part per thread side by side (faster "
        "when other processes share the cores, slower on a quiet machine: docs/results/cpu-speed.md)",
        choices=CPU_SPLITS,
    )
    progress: bool = _setting(True, "progress bar")

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check (and normalise: paths to str, freeze to a list) every field; also called by the Trainer,
        so a field changed after construction is checked too."""
        for name in ("pairs", "out", "init"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))
        if isinstance(self.freeze, tuple):
            self.freeze = list(self.freeze)
        for f in dataclasses.fields(self):
            check_setting(f, getattr(self, f.name))
        if self.regression_weight == 0 and self.adversarial_weight == 0:
            raise UsageError("regression_weight and adversarial_weight are both 0: nothing to train")
        if self.batch_size % self.grad_accum:
            raise UsageError(f"batch_size={self.batch_size} must be divisible by grad_accum={self.grad_accum}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, settings: dict) -> TrainConfig:
        """A config from saved settings (train_config.json, a checkpoint); unknown keys are refused."""
        unknown = sorted(set(settings) - set(defaults()))
        if unknown:
            raise UsageError(f"unknown training settings {unknown} (known: {sorted(defaults())})")
        return cls(**settings)


def defaults() -> dict:
    """Every field's default."""
    return {f.name: _default(f) for f in dataclasses.fields(TrainConfig)}


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def allowed(f: dataclasses.Field) -> str:
    """What field ``f`` accepts, in words (for error messages and --help)."""
    m, default = f.metadata, _default(f)
    if m["choices"]:
        return f"one of {m['choices']}"
    if isinstance(default, bool):
        return "True or False"
    if f.name == "model":
        return "a JSON object of model settings (a 'name' string and/or GET keyword arguments)"
    if f.name == "device":
        return "None or a device name ('auto', 'cpu', 'cuda', 'cuda:N')"
    if isinstance(default, list):
        return "a list of non-empty strings"
    if isinstance(default, str):
        return "a path (a string; '' for none)"
    kind = "an integer" if isinstance(default, int) else "a finite number"
    lo, hi, above = m["low"], m["high"], m["above"]
    if lo is not None and hi is not None:
        return f"{kind} in [{lo}, {hi}]"
    return f"{kind} > {above}" if above is not None else f"{kind} >= {lo}"


def check_setting(f: dataclasses.Field, value) -> None:
    """Raise SettingError unless ``value`` is allowed for field ``f``."""
    m, default = f.metadata, _default(f)
    if m["choices"]:
        ok = value in m["choices"]
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif f.name == "model":
        ok = isinstance(value, dict) and isinstance(value.get("name", ""), str) and _is_json(value)
    elif f.name == "device":
        ok = value is None or (isinstance(value, str) and bool(value))
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        number = isinstance(value, int) if isinstance(default, int) else isinstance(value, (int, float))
        ok = (
            number
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (m["low"] is None or value >= m["low"])
            and (m["high"] is None or value <= m["high"])
            and (m["above"] is None or value > m["above"])
        )
    if not ok:
        raise SettingError(f.name, value, allowed(f))


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def resume_differences(saved: dict, config: TrainConfig) -> list[str]:
    """``"field: <value in the run> in the run, <value> now"`` for every setting of ``config`` that differs
    from ``saved`` (the run's settings) and may not change on resume; fields older runs lack count as their
    defaults. The pairs and the model are compared by content elsewhere (COMPARED_BY_CONTENT)."""
    old = {**defaults(), **saved}
    now = json.loads(json.dumps(config.to_dict()))
    may_change = set(MAY_CHANGE_ON_RESUME) - ({"max_steps"} if config.lr_schedule == "cosine" else set())
    return [
        f"{name}: {old.get(name)!r} in the run, {now[name]!r} now"
        for name in now
        if name not in may_change and name not in COMPARED_BY_CONTENT and old.get(name) != now[name]
    ]
