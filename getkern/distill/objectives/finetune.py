"""Fine-tuning a student as Zheng & Yang (2024) do: start from trained weights and freeze most layers."""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn
from safetensors.torch import load_file

from getkern.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    file_sha256,
    load_state_dict_checked,
    load_train_checkpoint,
    read_pretrained_config,
)
from getkern.errors import UsageError


def load_initial_weights(model: nn.Module, path: str | Path) -> None:
    """Load ``model``'s weights from a training checkpoint (its EMA weights) or a ``save_pretrained``
    directory (``model.safetensors``, checked against the SHA-256 its config.json records, as
    :func:`getkern.load` does); every missing or mis-shaped tensor is named in the error. The folder's
    config.json is otherwise not used: the run's model config decides the architecture."""
    path = Path(path)
    if path.is_dir():
        file = path / WEIGHTS_FILE
        if not file.is_file():
            raise CheckpointError(f"init: {path} holds no model.safetensors (not a save_pretrained directory)")
        digest = read_pretrained_config(path)[2] if (path / CONFIG_FILE).is_file() else None
        if digest is not None and file_sha256(file) != digest:
            raise CheckpointError(
                f"init: {file} does not match the SHA-256 recorded in {path / CONFIG_FILE} (the "
                "file is corrupt or was changed after saving)"
            )
        try:
            state = load_file(file)
        except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...: the file does not parse
            raise CheckpointError(f"init: {file} is not a readable safetensors file: {e}") from None
        load_state_dict_checked(model, state, f"init: {file}")
    else:
        load_state_dict_checked(model, load_train_checkpoint(path)["ema"], f"init: {path}['ema']")


def freeze_parameters(model: nn.Module, prefixes: list[str]) -> int:
    """Set ``requires_grad=False`` on every parameter whose dotted name starts with one of ``prefixes``
    (a whole module: ``"blocks"`` freezes ``blocks.*``, ``"blocks.0"`` only the first block) and return
    how many parameters (elements) were frozen. For a GET, ``["x_embedder", "y_embedder", "blocks",
    "qkv_inj"]`` freezes the injection transformer and trains the equilibrium blocks and the decoder."""
    names = [n for n, _ in model.named_parameters()]
    roots = sorted({n.split(".")[0] for n in names})
    for prefix in prefixes:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            raise UsageError(
                f"freeze: {prefix!r} names no parameter of the {type(model).__name__} "
                f"(its top-level parameter names: {roots})"
            )
    frozen = 0
    for name, p in model.named_parameters():
        if any(name == q or name.startswith(q + ".") for q in prefixes) and p.requires_grad:
            p.requires_grad_(False)
            frozen += p.numel()
    if prefixes and not any(p.requires_grad for p in model.parameters()):
        raise UsageError(f"freeze={prefixes} freezes every trainable parameter of the {type(model).__name__}")
    return frozen
