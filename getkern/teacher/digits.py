"""A small EDM teacher getkern trains itself on scikit-learn's bundled digits (no download), and that data
set: the 1797 8x8 grayscale digits and their fixed train / held-out split, which the digits metric
(getkern.metrics.digits) scores against, so that the teacher never sees a held-out image.

Images: values 0..16, scaled to [-1, 1] as x/8 - 1, shape (B, 1, 8, 8).
The raw network is a residual MLP over the 64 pixels, conditioned on the EDM noise level (sinusoidal
embedding of c_noise) and on the class label; :class:`~getkern.teacher.edm.EDMPrecond` turns it into
the denoiser D(x, sigma, labels). A network built with ``null_class=True`` has one more class row, the
"no class" condition (label ``num_classes``, or ``class_labels=None``) that label dropout trains and
classifier-free guidance needs (:mod:`getkern.teacher.guidance`).
"""

from __future__ import annotations

import copy
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from getkern.checkpoint import (
    CheckpointError,
    atomic_write,
    file_sha256,
    key_problems,
    load_state_dict_checked,
    read_json,
    read_safetensors_shapes,
)
from getkern.teacher.edm import EDMPrecond, edm_loss, fourier_embedding

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)
TEACHER_FORMAT = "getkern-teacher"
HELDOUT_SIZE = 600  # real images the teacher, the metric's classifier and its reference never see
SPLIT_SEED = 0


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits, scaled x/8 - 1 to [-1, 1], split by a fixed stratified permutation.

    Returns (train_images (1197, 1, 8, 8) float32, train_labels (1197,) int64,
             heldout_images (600, 1, 8, 8), heldout_labels (600,)): fresh copies, safe to modify.
    """
    return tuple(t.clone() for t in _digits_split_cached())


@functools.lru_cache(maxsize=1)
def _digits_split_cached() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.float32) / 8.0 - 1.0
    tr_x, ho_x, tr_y, ho_y = train_test_split(
        images, data.target, test_size=HELDOUT_SIZE, random_state=SPLIT_SEED, stratify=data.target
    )
    as_images = lambda a: torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1)  # noqa: E731
    return as_images(tr_x), torch.from_numpy(tr_y).long(), as_images(ho_x), torch.from_numpy(ho_y).long()


def load_digits_images(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as (images float32 (n, 1, 8, 8) in [-1, 1], labels int64 (n,)).

    ``split``: "train" (1197 images, what the teacher learns from), "heldout" (600 images nothing
    trains on; the metric's floor) or "all" (1797). The split is the digits metric's own
    (:func:`digits_split`), so the teacher never sees held-out images.
    """
    tr_x, tr_y, ho_x, ho_y = digits_split()
    if split == "train":
        return tr_x, tr_y
    if split == "heldout":
        return ho_x, ho_y
    if split == "all":
        return torch.cat([tr_x, ho_x]), torch.cat([tr_y, ho_y])
    raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")


class DigitsMLP(nn.Module):
    """Raw EDM network F(x_in, c_noise, labels) for (B, 1, 8, 8) digits: a residual MLP, width ``hidden``."""

    def __init__(
        self,
        hidden: int = 192,
        layers: int = 4,
        emb_dim: int = 64,
        num_classes: int = NUM_CLASSES,
        null_class: bool = False,
    ):
        super().__init__()
        if null_class and not num_classes:
            raise ValueError("null_class=True needs a class-conditional network (num_classes > 0)")
        self.config = dict(hidden=hidden, layers=layers, emb_dim=emb_dim, num_classes=num_classes)
        if null_class:  # only written when set, so configs of teachers without it stay as they were
            self.config["null_class"] = True
        self.num_classes, self.null_class = num_classes, null_class
        pixels = int(np.prod(IMAGE_SHAPE))
        self.emb_dim = emb_dim
        self.noise_mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.class_emb = nn.Embedding(num_classes + int(null_class), hidden) if num_classes else None
        self.inp = nn.Linear(pixels, hidden)
        self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(layers)])
        self.fc1 = nn.ModuleList([nn.Linear(hidden, 2 * hidden) for _ in range(layers)])
        self.cond = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(layers)])
        self.fc2 = nn.ModuleList([nn.Linear(2 * hidden, hidden) for _ in range(layers)])
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, pixels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.noise_mlp(fourier_embedding(c_noise, self.emb_dim))  # (B, hidden)
        if self.class_emb is not None:
            if class_labels is None:
                if not self.null_class:
                    raise ValueError("this digits teacher is class-conditional: class_labels are required")
                class_labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.int64, device=x.device)
            emb = emb + self.class_emb(class_labels)
        emb = torch.nn.functional.silu(emb)
        h = self.inp(x.flatten(1))
        for norm, fc1, cond, fc2 in zip(self.norms, self.fc1, self.cond, self.fc2):
            h = h + fc2(torch.nn.functional.silu(fc1(norm(h) + cond(emb))))
        return self.out(self.out_norm(h)).view(x.shape)


def train_digits_teacher(
    *,
    steps: int = 6000,
    batch_size: int = 256,
    lr: float = 1e-3,
    ema_decay: float = 0.999,
    seed: int = 0,
    hidden: int = 192,
    layers: int = 4,
    log_every: int = 500,
    label_dropout: float = 0.0,
    init: EDMPrecond | None = None,
    progress: bool = True,
) -> tuple[EDMPrecond, dict]:
    """Train the digits teacher with the EDM loss on the 1197 training digits; returns (EMA denoiser, info).

    ``label_dropout`` > 0 replaces each label by the null class with that probability (the network
    gets a null-class row; classifier-free guidance needs it). ``init``: start from these weights
    (a copy; its network must have the null row when ``label_dropout`` > 0) instead of a fresh network.
    """
    if not 0.0 <= label_dropout < 1.0:
        raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
    if label_dropout > 0 and init is not None and not init.net.null_class:
        raise ValueError("label_dropout > 0 needs a network with a null class (DigitsMLP(null_class=True))")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images, labels = load_digits_images("train")
    if init is None:
        model = EDMPrecond(DigitsMLP(hidden=hidden, layers=layers, null_class=label_dropout > 0))
    else:
        model = copy.deepcopy(init).train().requires_grad_(True)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (steps - s) / (0.3 * steps)))  # linear tail
    t0, losses = time.perf_counter(), []
    bar = tqdm(range(steps), desc="digits teacher", disable=not progress)
    for step in bar:
        idx = torch.randint(len(images), (batch_size,), generator=g)
        y = labels[idx]
        if label_dropout > 0:  # drawn only then, so runs without dropout keep their random stream
            y = torch.where(torch.rand(batch_size, generator=g) < label_dropout, model.net.num_classes, y)
        loss = edm_loss(model, images[idx], y, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - ema_decay)
        losses.append(loss.item())
        if (step + 1) % log_every == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-log_every:]):.4f}")
    info = dict(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        ema_decay=ema_decay,
        seed=seed,
        **({"label_dropout": label_dropout} if label_dropout > 0 else {}),
        final_loss=float(np.mean(losses[-min(len(losses), log_every) :])),
        seconds=round(time.perf_counter() - t0, 1),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    return ema.eval(), info


def save_teacher(
    denoiser: EDMPrecond, directory, info: dict | None = None, storage_dtype: torch.dtype = torch.float32
) -> None:
    """Write ``config.json`` + ``model.safetensors`` (the raw network's weights) atomically.

    ``storage_dtype=torch.float16`` halves the file (the shipped teacher uses it); loading computes in
    float32 from the stored values, so the stored file *is* the teacher.
    """
    directory = Path(directory)
    state = {k: v.detach().to(storage_dtype).contiguous().cpu() for k, v in denoiser.net.state_dict().items()}
    meta = {
        "format": TEACHER_FORMAT,
        "kind": "digits-mlp",
        "config": denoiser.net.config,
        "sigma_data": denoiser.sigma_data,
        "image_shape": list(IMAGE_SHAPE),
        "training": info or {},
    }
    digest = {}

    def write_weights(p):
        save_file(state, p)
        digest["sha256"] = file_sha256(p)

    atomic_write(directory / "model.safetensors", write_weights)
    meta["weights_sha256"] = digest["sha256"]  # checked on load (as a save_pretrained folder's)
    atomic_write(directory / "config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))


def _check_teacher_config(meta: dict, config_path: Path, weights_path: Path) -> None:
    """Refuse, before anything is built, a config.json whose fields are not what DigitsMLP takes or that
    the weights' shapes (read from the safetensors header) contradict: a config asking for hidden 40000
    or 100000 layers next to small weights must not allocate them first."""
    config = meta.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: 'config' is not an object of DigitsMLP arguments")
    known = {"hidden": 1, "layers": 1, "emb_dim": 2, "num_classes": 0}
    unknown = sorted(set(config) - set(known) - {"null_class"})
    if unknown:
        raise CheckpointError(
            f"{config_path}: unknown teacher config fields {unknown} (known: {sorted(known) + ['null_class']})"
        )
    for field, low in known.items():
        value = config.get(field, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise CheckpointError(f"{config_path}: config.{field}={value!r} is invalid: expected an integer >= {low}")
    if not isinstance(config.get("null_class", False), bool):
        raise CheckpointError(f"{config_path}: config.null_class must be true or false, got {config['null_class']!r}")
    sigma = meta.get("sigma_data")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < float("inf"):
        raise CheckpointError(f"{config_path}: sigma_data={sigma!r} is invalid: expected a finite number > 0")
    shapes, _ = read_safetensors_shapes(weights_path)
    c = {"emb_dim": 64, "num_classes": NUM_CLASSES, "null_class": False, **config}
    problems = []
    inp = shapes.get("inp.weight")
    if inp is not None and inp[0] != c.get("hidden"):
        problems.append(f"hidden={c.get('hidden')}, but the weights have {inp[0]} (inp.weight {inp})")
    layers = len({k.split(".")[1] for k in shapes if k.startswith("fc1.")})
    if layers != c.get("layers"):
        problems.append(f"layers={c.get('layers')}, but the weights hold {layers} (fc1.0 .. fc1.{layers - 1})")
    noise = shapes.get("noise_mlp.0.weight")
    if noise is not None and noise[1] != c["emb_dim"]:
        problems.append(f"emb_dim={c['emb_dim']}, but the weights have {noise[1]} (noise_mlp.0.weight {noise})")
    table = shapes.get("class_emb.weight")
    rows = c["num_classes"] + int(c["null_class"]) if c["num_classes"] else 0
    if (table[0] if table is not None else 0) != rows:
        problems.append(
            f"num_classes={c['num_classes']}, null_class={c['null_class']}, but the weights' class table is {table}"
        )
    if not problems:
        try:
            with torch.device("meta"):
                own = {k: tuple(v.shape) for k, v in DigitsMLP(**config).state_dict().items()}
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{config_path}: {e}") from None
        problems = key_problems(own, shapes)
    if problems:
        raise CheckpointError(f"{config_path} does not fit {weights_path} (shape mismatch): " + "; ".join(problems))


def load_teacher_dir(directory) -> tuple[EDMPrecond, dict]:
    """Load a teacher written by :func:`save_teacher`; returns (denoiser in eval mode, metadata)."""
    directory = Path(directory)
    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    expected = "expected a teacher directory written by save_teacher"
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path} does not exist ({expected})")
    meta = read_json(config_path, CheckpointError, expected)
    if not isinstance(meta, dict) or meta.get("format") != TEACHER_FORMAT or meta.get("kind") != "digits-mlp":
        raise CheckpointError(f"{config_path} is not a getkern digits teacher (format/kind)")
    digest = meta.get("weights_sha256")  # teachers saved before digests have none
    if digest is not None and file_sha256(weights_path) != digest:
        raise CheckpointError(
            f"{weights_path} does not match the SHA-256 recorded in {config_path} (the file is "
            "corrupt or was changed after saving)"
        )
    _check_teacher_config(meta, config_path, weights_path)
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {e}") from None
    net = DigitsMLP(**meta["config"])
    load_state_dict_checked(net, state, str(weights_path))
    return EDMPrecond(net, sigma_data=meta["sigma_data"]).eval().requires_grad_(False), meta
