"""``getkern.load``: one loader for every kind of checkpoint getkern reads.

- a ``save_pretrained`` folder (config.json + model.safetensors; current, first and Hub-mixin formats),
  or its config.json / model.safetensors file;
- a ``getkern train`` run folder: recognised by its ``checkpoint.pt`` or ``ema/`` (never by a config
  file, since the trainer writes its own there); loads checkpoint.pt (the latest state) when present,
  else the ``ema/`` folder;
- a training checkpoint file (``checkpoint.pt``, format "getkern-train"): its EMA weights (``ema=False``:
  the online ones);
- the reference implementation's ``.pth`` (``{'args', 'model', 'ema', ...}``): its EMA weights;
- a Hugging Face Hub model id ("owner/name"), when huggingface_hub is installed.

Above getkern.models in the layers (docs/architecture.md): the registry of model classes by the name a
file records ("_class_name", "model_class") lives here, so neither the checkpoint files nor the models
need to know every class.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch

from getkern._backend import BACKENDS
from getkern.checkpoint import (
    CONFIG_FILE,
    TRAIN_CHECKPOINT_FORMAT,
    WEIGHTS_FILE,
    CheckpointError,
    hub_snapshot,
    is_train_checkpoint,
    load_state_dict_checked,
    looks_like_hub_id,
    place,
    read_pretrained,
    read_torch_checkpoint,
    resolve_device,
    resolve_dtype,
)
from getkern.errors import UsageError
from getkern.models import GET, ViT
from getkern.models.pretrained import build_pretrained, check_config_fits, check_overrides, load_official

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")
TRAIN_CHECKPOINT = "checkpoint.pt"
RUN_EMA = "ema"


def load(
    path_or_id,
    *,
    device=None,
    torch_dtype=None,
    ema: bool = True,
    backend: str = "auto",
    verify: bool = True,
    **overrides,
):
    """A GET or ViT in eval mode from any checkpoint kind (see the module docstring).

    Args:
        path_or_id: a folder, a file, or a Hub id "owner/name" (needs huggingface_hub).
        device: where to put the model (default: CPU).
        torch_dtype: a floating torch.dtype or its name, "auto" (the dtype the weights were saved in;
            save_pretrained folders) or None (default: float32).
        ema: training checkpoints and reference .pth hold EMA and online weights: True (default) loads
            the EMA ones, False the online ones. A save_pretrained folder holds one set: ema=False is refused.
        backend: block kernels, "auto" (default), "triton" or "torch".
        verify: check a save_pretrained folder's model.safetensors against the SHA-256 in its config.json,
            and a training checkpoint against its ``.sha256`` sidecar (where they have one).
        overrides: further constructor arguments (e.g. ``solver_backend="cpp"``).

    Raises CheckpointError (missing, corrupt, foreign or mismatched files) or UsageError (arguments).
    """
    return load_with_origin(
        path_or_id, device=device, torch_dtype=torch_dtype, ema=ema, backend=backend, verify=verify, **overrides
    )[0]


def load_with_origin(
    path_or_id,
    *,
    device=None,
    torch_dtype=None,
    ema: bool = True,
    backend: str = "auto",
    verify: bool = True,
    **overrides,
):
    """:func:`load`, and a one-line description of what was loaded (for command output)."""
    if not isinstance(ema, bool):
        raise UsageError(f"ema must be True or False, got {ema!r}")
    if backend not in BACKENDS:
        raise UsageError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    resolve_device(device)  # a device that does not exist here, or a dtype that is none, before any reading
    if torch_dtype != "auto":
        resolve_dtype(torch_dtype)
    overrides = {"backend": backend, **overrides}
    path = Path(path_or_id)
    if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent
    if path.is_dir():
        if (path / TRAIN_CHECKPOINT).is_file() or (path / RUN_EMA).is_dir():  # a `getkern train` run
            if (path / TRAIN_CHECKPOINT).is_file():
                model, step = _from_torch_file(path / TRAIN_CHECKPOINT, ema, overrides, verify, expect_train=True)
                return (
                    place(model, device=device, torch_dtype=torch_dtype),
                    f"getkern training run {path} ({'EMA' if ema else 'online'} weights, step {step})",
                )
            if not ema:
                raise CheckpointError(
                    f"{path}: ema=False needs the run's {TRAIN_CHECKPOINT} (the online weights); "
                    f"this run folder has only {RUN_EMA}/ (EMA weights)"
                )
            model = load_pretrained(path / RUN_EMA, device=device, torch_dtype=torch_dtype, verify=verify, **overrides)
            return model, f"getkern training run {path} (EMA weights)"
        if (path / CONFIG_FILE).is_file() or (path / WEIGHTS_FILE).is_file():
            _refuse_ema_choice(ema, path)
            model = load_pretrained(path, device=device, torch_dtype=torch_dtype, verify=verify, **overrides)
            return model, f"getkern checkpoint {path}"
        raise CheckpointError(
            f"unknown checkpoint format: {path} is a folder with neither {CONFIG_FILE} + "
            f"{WEIGHTS_FILE} (save_pretrained) nor {TRAIN_CHECKPOINT} / {RUN_EMA}/ (a training run)"
        )
    if path.is_file():
        if path.suffix not in TORCH_SUFFIXES and not zipfile.is_zipfile(path):
            raise CheckpointError(
                f"unknown checkpoint format: {path} is neither a save_pretrained folder, a "
                f"training run folder, a training checkpoint nor a reference checkpoint "
                f"({', '.join(TORCH_SUFFIXES[:3])})"
            )
        model, step = _from_torch_file(path, ema, overrides, verify)
        kind = (
            f"getkern training checkpoint {path} ({'EMA' if ema else 'online'} weights, step {step})"
            if step is not None
            else f"reference checkpoint {path} ({'EMA' if ema else 'online'} weights)"
        )
        return place(model, device=device, torch_dtype=torch_dtype), kind
    if looks_like_hub_id(path_or_id):
        _refuse_ema_choice(ema, path_or_id)
        folder = hub_snapshot(str(path_or_id))
        model = load_pretrained(folder, device=device, torch_dtype=torch_dtype, verify=verify, **overrides)
        return model, f"Hugging Face Hub model {path_or_id}"
    raise CheckpointError(f"checkpoint {path} does not exist")


def _refuse_ema_choice(ema: bool, where) -> None:
    if not ema:
        raise UsageError(
            f"ema=False: {where} is a save_pretrained folder, which holds one set of weights "
            "(the EMA/online choice is for training and reference checkpoints)"
        )


def _from_torch_file(path: Path, ema: bool, overrides: dict, verify: bool, *, expect_train: bool = False):
    """(model, training step or None for a reference checkpoint) from a torch.save file."""
    state = read_torch_checkpoint(path, verify=verify)
    if is_train_checkpoint(state):
        return load_train_model(path, state, ema=ema, **overrides), int(state.get("step", 0))
    if expect_train or not (isinstance(state, dict) and "args" in state):
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"unknown checkpoint format: {path} is neither a getkern training checkpoint "
            f"(format {TRAIN_CHECKPOINT_FORMAT!r}) nor a reference checkpoint ('args', 'ema', "
            f"'model'); found {found[:8] if isinstance(found, list) else found}"
        )
    return load_official(GET, path, ema=ema, state=state, **overrides), None


# ---------------------------------------------------------------- the classes, by the names files record

MODEL_CLASSES = {"GET": GET, "ViT": ViT}


def resolve_model_class(name: str | None, shapes: dict, where: str):
    """The class a file names (``_class_name``), else GET or ViT by the weights' keys (only a GET has
    ``qkv_inj``)."""
    if name is None:
        return MODEL_CLASSES["GET" if "qkv_inj.weight" in shapes else "ViT"]
    if name not in MODEL_CLASSES:
        raise CheckpointError(f"{where} holds a {name!r}, not a getkern GET or ViT")
    return MODEL_CLASSES[name]


def load_pretrained(directory, *, device=None, torch_dtype=None, verify: bool = True, **overrides):
    """Build and load a ``save_pretrained`` folder as the class it names (or its weights imply). Checks, in
    order: the config's fields, the weights' SHA-256 (unless ``verify=False`` or the folder has none), the
    config against the weights' shapes (read from the header, before anything is allocated). Returns the
    model in eval mode on ``device`` in ``torch_dtype``."""
    files = read_pretrained(directory, verify=verify)
    cls = resolve_model_class(files.class_name, files.shapes, str(files.config_path))
    return build_pretrained(cls, files, device=device, torch_dtype=torch_dtype, **overrides)


def load_train_model(path, state: dict | None = None, *, ema: bool = True, **overrides):
    """The EMA (or, ``ema=False``, the online) GET or ViT of a ``getkern train`` checkpoint.pt, eval mode.
    ``state``: the already-read checkpoint (else it is read)."""
    path = Path(path)
    state = read_torch_checkpoint(path) if state is None else state
    if not is_train_checkpoint(state):
        raise CheckpointError(f"{path} is not a getkern training checkpoint (format != {TRAIN_CHECKPOINT_FORMAT!r})")
    key = "ema" if ema else "model"
    name = state.get("model_class", "GET")
    if name not in MODEL_CLASSES or key not in state or not isinstance(state.get("model_config"), str):
        raise CheckpointError(
            f"{path}: not a getkern training checkpoint of a GET or ViT (model_class={name!r}, keys {sorted(state)})"
        )
    cls = MODEL_CLASSES[name]
    try:
        config = json.loads(state["model_config"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: model_config is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: model_config is not a JSON object of {name} arguments")
    check_overrides(cls, overrides, "load")
    config = {**config, **overrides}
    weights = state[key]
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}[{key!r}] is not a state dict")
    shapes = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    check_config_fits(cls, config, shapes, config_where=f"{path}['model_config']", weights_where=f"{path}[{key!r}]")
    model = cls(**config)
    load_state_dict_checked(model, weights, f"{path}[{key!r}]")
    return model.eval()
