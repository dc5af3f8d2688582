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
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from getkern.errors import UsageError

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")
TRAIN_CHECKPOINT = "checkpoint.pt"
RUN_EMA = "ema"


def load(path_or_id, *, device=None, torch_dtype=None, ema: bool = True, backend: str = "auto",
         verify: bool = True, **overrides):
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
    return load_with_origin(path_or_id, device=device, torch_dtype=torch_dtype, ema=ema, backend=backend,
                            verify=verify, **overrides)[0]


def load_with_origin(path_or_id, *, device=None, torch_dtype=None, ema: bool = True, backend: str = "auto",
                     verify: bool = True, **overrides):
    """:func:`load`, and a one-line description of what was loaded (for command output)."""
    from getkern.checkpoint import (CONFIG_FILE, WEIGHTS_FILE, CheckpointError, hub_snapshot, load_pretrained,
                                    looks_like_hub_id, place, resolve_device, resolve_dtype)
    from getkern._backend import BACKENDS
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
                return (place(model, device=device, torch_dtype=torch_dtype),
                        f"getkern training run {path} ({'EMA' if ema else 'online'} weights, step {step})")
            if not ema:
                raise CheckpointError(f"{path}: ema=False needs the run's {TRAIN_CHECKPOINT} (the online weights); "
                                      f"this run folder has only {RUN_EMA}/ (EMA weights)")
            model = load_pretrained(None, path / RUN_EMA, device=device, torch_dtype=torch_dtype, verify=verify,
                                    **overrides)
            return model, f"getkern training run {path} (EMA weights)"
        if (path / CONFIG_FILE).is_file() or (path / WEIGHTS_FILE).is_file():
            _refuse_ema_choice(ema, path)
            model = load_pretrained(None, path, device=device, torch_dtype=torch_dtype, verify=verify, **overrides)
            return model, f"getkern checkpoint {path}"
        raise CheckpointError(f"unknown checkpoint format: {path} is a folder with neither {CONFIG_FILE} + "
                              f"{WEIGHTS_FILE} (save_pretrained) nor {TRAIN_CHECKPOINT} / {RUN_EMA}/ (a training run)")
    if path.is_file():
        if path.suffix not in TORCH_SUFFIXES and not zipfile.is_zipfile(path):
            raise CheckpointError(f"unknown checkpoint format: {path} is neither a save_pretrained folder, a "
                                  f"training run folder, a training checkpoint nor a reference checkpoint "
                                  f"({', '.join(TORCH_SUFFIXES[:3])})")
        model, step = _from_torch_file(path, ema, overrides, verify)
        kind = (f"getkern training checkpoint {path} ({'EMA' if ema else 'online'} weights, step {step})"
                if step is not None else f"reference checkpoint {path} ({'EMA' if ema else 'online'} weights)")
        return place(model, device=device, torch_dtype=torch_dtype), kind
    if looks_like_hub_id(path_or_id):
        _refuse_ema_choice(ema, path_or_id)
        folder = hub_snapshot(str(path_or_id))
        model = load_pretrained(None, folder, device=device, torch_dtype=torch_dtype, verify=verify, **overrides)
        return model, f"Hugging Face Hub model {path_or_id}"
    raise CheckpointError(f"checkpoint {path} does not exist")


def _refuse_ema_choice(ema: bool, where) -> None:
    if not ema:
        raise UsageError(f"ema=False: {where} is a save_pretrained folder, which holds one set of weights "
                         "(the EMA/online choice is for training and reference checkpoints)")


def _from_torch_file(path: Path, ema: bool, overrides: dict, verify: bool, *, expect_train: bool = False):
    """(model, training step or None for a reference checkpoint) from a torch.save file."""
    from getkern.checkpoint import (CheckpointError, TRAIN_CHECKPOINT_FORMAT, is_train_checkpoint, load_official,
                                    load_train_model, read_torch_checkpoint)
    from getkern.models import GET
    state = read_torch_checkpoint(path, verify=verify)
    if is_train_checkpoint(state):
        return load_train_model(path, state, ema=ema, **overrides), int(state.get("step", 0))
    if expect_train or not (isinstance(state, dict) and "args" in state):
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"unknown checkpoint format: {path} is neither a getkern training checkpoint "
                              f"(format {TRAIN_CHECKPOINT_FORMAT!r}) nor a reference checkpoint ('args', 'ema', "
                              f"'model'); found {found[:8] if isinstance(found, list) else found}")
    return load_official(GET, path, ema=ema, state=state, **overrides), None
