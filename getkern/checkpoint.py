"""Checkpoints: getkern's own (safetensors + JSON config) and the reference implementation's.

Nothing here unpickles arbitrary objects: reference checkpoints load with ``weights_only=True`` and
only ``argparse.Namespace`` allow-listed (the reference pickles its command-line args).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from getkern.models.configs import GET_CONFIGS, parse_model_name
from getkern.errors import GetkernError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


class CheckpointError(GetkernError, ValueError):
    """A checkpoint file is missing, corrupt, foreign or does not fit the model."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: Path, error: type[Exception], expected: str):
    """Parse the JSON file ``path``; a missing or malformed file raises ``error`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist ({expected})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON: {e}") from None


# ---------------------------------------------------------------- getkern's own format

def save_pretrained(model: torch.nn.Module, directory) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically, each)."""
    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": "getkern", "format_version": FORMAT_VERSION,
            "architecture": type(model).__name__, "config": model.config}
    atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(state, p, metadata={"format": "pt"}))
    atomic_write(directory / CONFIG_FILE, lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))


def load_pretrained(cls, directory, **overrides):
    """Build ``cls`` from ``directory/config.json`` and load ``directory/model.safetensors``."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    expected = "expected a directory written by save_pretrained"
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path} does not exist ({expected})")
    meta = read_json(config_path, CheckpointError, expected)
    if not isinstance(meta, dict) or meta.get("format") != "getkern" or "config" not in meta:
        raise CheckpointError(f"{config_path} is not a getkern config (no format='getkern' / config)")
    if meta.get("architecture") != cls.__name__:
        raise CheckpointError(f"{config_path} holds a {meta.get('architecture')!r}, not a {cls.__name__}")
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {e}") from None
    model = cls(**{**meta["config"], **overrides})
    load_state_dict_checked(model, state, str(weights_path))
    return model


# ---------------------------------------------------------------- the reference's format

def _torch_load_safely(path: Path):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: it pickles objects other than tensors and argparse.Namespace "
            f"(weights_only=True). Details: {str(e).splitlines()[0]}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {e}") from None


def load_official(cls, path, ema: bool = True, **overrides):
    """Load ``torch.save({'args': Namespace, 'model': sd, 'ema': sd, 'opt': ...})`` from the reference.

    The configuration comes from the checkpoint's own args (model, cond, input_size, num_classes); the
    channel count from the patch-embedding weight. ``ema=False`` loads the online weights instead.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    ckpt = _torch_load_safely(path)
    key = "ema" if ema else "model"
    if not isinstance(ckpt, dict) or "args" not in ckpt or key not in ckpt:
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a reference GET checkpoint: need keys 'args' and {key!r}, "
                              f"found {found}")
    args = ckpt["args"]
    if not isinstance(args, argparse.Namespace) or not hasattr(args, "model"):
        raise CheckpointError(f"{path}: 'args' is not the reference's argparse.Namespace with a 'model' name")
    try:
        family, patch = parse_model_name(args.model, GET_CONFIGS, "GET")
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    state = ckpt[key]
    if not isinstance(state, dict) or "x_embedder.proj.weight" not in state:
        raise CheckpointError(f"{path}: {key!r} is not a GET state dict (no x_embedder.proj.weight)")
    config = {**GET_CONFIGS[family], "patch_size": patch,
              "input_size": int(getattr(args, "input_size", 32)),
              "cond": bool(getattr(args, "cond", False)),
              "num_classes": int(getattr(args, "num_classes", 10)),
              "in_channels": int(state["x_embedder.proj.weight"].shape[1])}
    model = cls(**{**config, **overrides})
    load_state_dict_checked(model, state, f"{path}[{key!r}]")
    return model


def load_state_dict_checked(model: torch.nn.Module, state: dict, where: str) -> None:
    """load_state_dict with every missing, unexpected and mis-shaped key named in one error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    not_tensor = [k for k in state if not isinstance(state[k], torch.Tensor)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    if bad_shape:
        problems.append(f"shape mismatch {bad_shape[:8]}")
    if not_tensor:
        problems.append(f"non-tensor values {not_tensor[:8]}")
    if problems:
        raise CheckpointError(f"{where} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state)
