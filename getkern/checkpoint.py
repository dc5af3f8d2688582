"""Checkpoint files: getkern's own folders (Hugging Face Hub layout: flat config.json + model.safetensors),
training checkpoints (``getkern train``'s checkpoint.pt) and torch.save files such as the reference
implementation's .pth, plus the writing and hashing every getkern file shares (atomic writes, sha256).

Model-agnostic: below getkern.models in the layers (docs/architecture.md), it reads and writes files and
checks them as files; which class to build and whether a config fits its weights is the models' part
(getkern/models/pretrained.py), and :func:`getkern.load` (getkern/loading.py) picks the reader for any
checkpoint kind. Nothing here unpickles arbitrary objects: torch.save files load with ``weights_only=True``
and only ``argparse.Namespace`` allow-listed (the reference pickles its command-line args).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from getkern import __version__
from getkern.distributed import check_device
from getkern.errors import GetkernError, UsageError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1  # of the first, nested format (read, no longer written)


class CheckpointError(GetkernError, ValueError):
    """A checkpoint file is missing, corrupt, foreign or does not fit the model."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: a crash never leaves a half-written file.

    The file gets the permissions a plain ``open()`` gives it (0666 & ~umask), even when ``write`` replaces
    the temporary file with a private one (safetensors' save_file makes it 0600, as mkstemp would).
    A temporary left by a killed process is named ``.<name>.<random>.tmp`` (see getkern.runlock).
    An existing ``path`` that is not a regular file (a FIFO, a device such as /dev/full, a socket) is never
    replaced: UsageError. A symbolic link at ``path`` is replaced by the file, its target left alone."""
    path = Path(path)
    _refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = str(path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp")
        try:  # O_EXCL: never another writer's file; mode 0o666 so the umask alone decides, as for open()
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        mode = os.stat(tmp).st_mode & 0o777
        write(tmp)
        if os.stat(tmp).st_mode & 0o777 != mode:
            os.chmod(tmp, mode)
        _refuse_special(path)  # again: it may have appeared while ``write`` ran
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _refuse_special(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode)):  # os.replace refuses a folder
        raise UsageError(
            f"{path} exists and is not a regular file (a FIFO, device or socket): refusing to replace "
            "it; write to another path"
        )


def read_json(path: Path, error: type[Exception], expected: str):
    """Parse the JSON file ``path``; a missing or malformed file raises ``error`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist ({expected})")
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError (not UTF-8), an unreadable file
        raise error(f"{path} is not valid JSON: {e}") from None


# ---------------------------------------------------------------- getkern's own format (the Hub's)
#
# A folder as huggingface_hub's PyTorchModelHubMixin writes one: config.json holds the constructor's
# keyword arguments, flat (sorted keys, indent 2); model.safetensors the state dict; README.md a model
# card (never overwritten). getkern adds keys that a mixin ignores, all starting with "_" (as diffusers'
# "_class_name"): "_class_name" ("GET" | "ViT"), "_getkern_version" and "_weights_sha256" (the SHA-256
# of model.safetensors, checked on load). The runtime choices backend / solver_backend are not stored.
# The first format, {"format": "getkern", "format_version": 1, "architecture": ..., "config": {...}},
# and unmarked folders written by a PyTorchModelHubMixin class with GET's arguments still load.

MODEL_CARD_FILE = "README.md"
TRAIN_CHECKPOINT_FORMAT = "getkern-train"  # what getkern.distill.trainer writes into checkpoint.pt
DIGEST_SUFFIX = ".sha256"  # the trainer's sidecar beside checkpoint.pt: its sha256, checked on reading
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def hub_config(arguments: dict, class_name: str, weights_sha256: str | None = None) -> dict:
    """config.json's content: the constructor ``arguments`` plus getkern's "_" keys."""
    config = {**arguments, "_class_name": class_name, "_getkern_version": __version__}
    if weights_sha256 is not None:
        config["_weights_sha256"] = weights_sha256
    return config


def save_pretrained(model: torch.nn.Module, directory, arguments: dict, *, card: str | None = None) -> Path:
    """Write ``model.safetensors`` (``model``'s state dict), then ``config.json`` (``arguments``, the
    constructor's, with the class name and the weights' digest), each atomically, and ``card`` as the
    ``README.md`` model card unless one exists (None: no card); returns the folder."""
    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    digest = {}

    def write_weights(p):
        save_file(state, p, metadata={"format": "pt"})
        digest["sha256"] = file_sha256(p)

    atomic_write(directory / WEIGHTS_FILE, write_weights)
    text = json.dumps(hub_config(arguments, type(model).__name__, digest["sha256"]), sort_keys=True, indent=2) + "\n"
    atomic_write(directory / CONFIG_FILE, lambda p: Path(p).write_text(text))
    if card is not None and not (directory / MODEL_CARD_FILE).exists():
        atomic_write(directory / MODEL_CARD_FILE, lambda p: Path(p).write_text(card))
    return directory


def _run_folder_hint(directory: Path) -> str:
    if (directory / "checkpoint.pt").is_file() or (directory / "ema").is_dir():
        return (
            f"; {directory} is a `getkern train` run folder: load it with getkern.load({str(directory)!r}) "
            f"(or from_pretrained of {directory / 'ema'})"
        )
    return ""


def read_pretrained_config(directory) -> tuple[str | None, dict, str | None]:
    """(class name or None when the folder does not say, constructor arguments, weights digest or None)
    from ``directory/config.json``, in the current, the first or a plain Hub mixin's format."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    meta = read_json(path, CheckpointError, "expected a folder written by save_pretrained")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a getkern model config (a JSON object of constructor arguments)")
    if "format" in meta:  # the first format: {"format": "getkern", "architecture": .., "config": {..}}
        if meta.get("format") != "getkern" or not isinstance(meta.get("config"), dict):
            raise CheckpointError(
                f"{path} is not a getkern config (format={meta.get('format')!r}, "
                f"no 'config' object){_run_folder_hint(directory)}"
            )
        return meta.get("architecture"), dict(meta["config"]), None
    digest = meta.get("_weights_sha256")
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise CheckpointError(f"{path}: _weights_sha256 is not a SHA-256 hex digest: {digest!r}")
    return meta.get("_class_name"), {k: v for k, v in meta.items() if not k.startswith("_")}, digest


def read_safetensors_shapes(path) -> tuple[dict, torch.dtype | None]:
    """({name: shape}, the most common floating dtype) from a safetensors header, without loading a tensor."""
    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}
            shapes = {k: tuple(s.get_shape()) for k, s in slices.items()}
            dtypes = [s.get_dtype() for s in slices.values()]
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from None
    floats = [d for d in dtypes if d in _SAFETENSORS_DTYPES]
    common = max(set(floats), key=floats.count) if floats else None
    return shapes, _SAFETENSORS_DTYPES.get(common)


def resolve_dtype(torch_dtype, stored: torch.dtype | None = None) -> torch.dtype | None:
    """None (keep float32), "auto" (the weights' own dtype), a floating torch.dtype or its name."""
    if torch_dtype is None:
        return None
    if torch_dtype == "auto":
        return stored
    dtype = getattr(torch, torch_dtype, None) if isinstance(torch_dtype, str) else torch_dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise UsageError(
            f"torch_dtype={torch_dtype!r}: expected a floating torch.dtype (torch.float32, "
            "torch.bfloat16, torch.float16, torch.float64), its name, or 'auto' (the weights' own)"
        )
    return dtype


def resolve_device(device) -> torch.device | None:
    """None, or ``device`` as a torch.device that exists here (UsageError otherwise, before any work)."""
    if device is None:
        return None
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        raise UsageError(f"device={device!r}: not a torch device (expected e.g. 'cpu', 'cuda', 'cuda:0')")
    return check_device(f"cuda:{device}" if isinstance(device, int) else device, "device=")


def place(model: torch.nn.Module, *, device=None, torch_dtype=None, stored: torch.dtype | None = None):
    """``model`` moved to ``device`` / ``torch_dtype`` (see :func:`resolve_dtype`), in eval mode."""
    dtype, device = resolve_dtype(torch_dtype, stored), resolve_device(device)
    if dtype is not None or device is not None:
        model = model.to(device=device, dtype=dtype)
    return model.eval()


@dataclass(frozen=True)
class PretrainedFiles:
    """A ``save_pretrained`` folder as read and checked by :func:`read_pretrained`, nothing built yet."""

    directory: Path
    class_name: str | None  # config.json's "_class_name" (None: the folder does not say)
    config: dict  # the constructor arguments
    shapes: dict  # weight name -> shape, from the safetensors header
    stored_dtype: torch.dtype | None

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_FILE

    @property
    def weights_path(self) -> Path:
        return self.directory / WEIGHTS_FILE


def read_pretrained(directory, *, verify: bool = True) -> PretrainedFiles:
    """Read a ``save_pretrained`` folder's config.json and its weights' header, checking, in order: that
    both exist, the config's format, and the weights' SHA-256 (unless ``verify=False`` or the folder
    records none). The tensors are not loaded (see :func:`load_safetensors`)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory} does not exist (expected a folder written by save_pretrained)")
    if not weights_path.is_file():
        raise CheckpointError(
            f"{weights_path} does not exist (expected a folder written by save_pretrained){_run_folder_hint(directory)}"
        )
    name, config, digest = read_pretrained_config(directory)
    if verify and digest is not None and file_sha256(weights_path) != digest:
        raise CheckpointError(
            f"{weights_path} does not match the SHA-256 recorded in {config_path} (the file "
            "is corrupt or was changed after saving); pass verify=False to load it anyway"
        )
    shapes, stored = read_safetensors_shapes(weights_path)
    return PretrainedFiles(directory, name, config, shapes, stored)


def load_safetensors(path) -> dict:
    """The tensors of safetensors file ``path`` (CheckpointError naming it when it does not parse)."""
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from None


# ---------------------------------------------------------------- the Hugging Face Hub (optional)


def looks_like_hub_id(name) -> bool:
    """ "owner/name" that is no local path: owner is not a local folder, name no checkpoint file name."""
    s = str(name)
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", s) or Path(s).exists():
        return False
    owner, _, repo = s.partition("/")
    return not Path(owner).exists() and not repo.endswith((".pt", ".pth", ".ckpt", ".safetensors", ".json"))


def huggingface_hub(what: str):
    """The optional huggingface_hub module, or an ImportError saying ``what`` needs it."""
    try:
        import huggingface_hub as hub
    except ImportError:
        raise ImportError(f"{what} needs the optional huggingface_hub package: pip install huggingface_hub") from None
    return hub


def hub_snapshot(
    repo_id: str,
    *,
    revision=None,
    cache_dir=None,
    token=None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """The local folder of Hub model ``repo_id`` (config.json, model.safetensors, README.md), downloaded
    with huggingface_hub.snapshot_download (cached)."""
    try:
        hub = huggingface_hub(f"loading the Hub id {repo_id!r}")
    except ImportError as e:
        raise CheckpointError(f"{repo_id} does not exist as a local path; {e}") from None
    try:
        return Path(
            hub.snapshot_download(
                repo_id=repo_id,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
                force_download=force_download,
                allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, MODEL_CARD_FILE],
            )
        )
    except Exception as e:  # noqa: BLE001 - network, authentication, missing repository: one message
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{repo_id} does not exist as a local path, and downloading it from the Hugging "
            f"Face Hub failed: {type(e).__name__}: {first}"
        ) from None


def resolve_pretrained_folder(name_or_path, **hub_kwargs) -> Path:
    """A local folder as given, or the snapshot of a Hub id when it is no local path."""
    path = Path(name_or_path)
    if not path.exists() and looks_like_hub_id(name_or_path):
        return hub_snapshot(str(name_or_path), **hub_kwargs)
    return path


def push_to_hub(
    model: torch.nn.Module,
    repo_id: str,
    *,
    commit_message: str = "Upload model with getkern",
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
) -> str:
    """``model.save_pretrained`` into a temporary folder and upload it to Hub repository ``repo_id`` (created if
    needed); returns the commit's URL. Needs huggingface_hub and a token with write access."""
    hub = huggingface_hub("push_to_hub")
    api = hub.HfApi(token=token)
    repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)  # the model writes its own folder (config, weights, card)
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=tmp,
            commit_message=commit_message,
            revision=branch,
            create_pr=create_pr,
        )


# ---------------------------------------------------------------- torch.save checkpoints


def _torch_load_safely(path: Path):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: it pickles objects other than tensors and argparse.Namespace "
            f"(weights_only=True). Details: {str(e).splitlines()[0]}"
        ) from None
    except Exception as e:  # noqa: BLE001 - a damaged file fails anywhere in the unpickler (IndexError, ...)
        first = str(e).splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint (corrupt, truncated or another kind of "
            f"file): {type(e).__name__}: {first}"
        ) from None


def read_torch_checkpoint(path, *, verify: bool = True) -> object:
    """``torch.load(path, weights_only=True)`` with only ``argparse.Namespace`` allow-listed; a sha256
    sidecar beside it (``checkpoint.pt.sha256``, as the trainer writes) is checked unless ``verify=False``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    sidecar = path.with_name(path.name + DIGEST_SUFFIX)
    if verify and sidecar.is_file() and file_sha256(path) != sidecar.read_text(errors="replace").strip():
        previous = path.with_name("checkpoint.prev.pt")
        hint = (
            f"; the run's previous checkpoint is {previous}"
            if path.name == "checkpoint.pt" and previous.is_file()
            else ""
        )
        raise CheckpointError(
            f"{path}: its sha256 differs from the one in {sidecar.name}: the file is corrupt "
            f"(verify=False loads it anyway{hint})"
        )
    return _torch_load_safely(path)


def is_train_checkpoint(state) -> bool:
    return isinstance(state, dict) and state.get("format") == TRAIN_CHECKPOINT_FORMAT


def load_train_checkpoint(path) -> dict:
    """A checkpoint written by getkern.distill.trainer.Trainer (torch.load with weights_only=True), checked
    against its sha256 sidecar when it has one (checkpoints from before sidecars load unchecked)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training checkpoint {path} does not exist")
    sidecar = path.with_name(path.name + DIGEST_SUFFIX)
    if sidecar.is_file() and file_sha256(path) != sidecar.read_text(errors="replace").strip():
        raise CheckpointError(f"{path}: its sha256 differs from the one in {sidecar.name}: the file is corrupt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling/zip failure means the same thing here
        raise CheckpointError(
            f"{path} is not a readable training checkpoint (corrupt or truncated): {str(e).splitlines()[0]}"
        ) from None
    if not is_train_checkpoint(state):
        raise CheckpointError(f"{path} is not a getkern training checkpoint (format != {TRAIN_CHECKPOINT_FORMAT!r})")
    return state


# ---------------------------------------------------------------- state dicts


def key_problems(own: dict, shapes: dict) -> list[str]:
    """Missing, unexpected and mis-shaped keys of ``shapes`` (name -> shape) against ``own``."""
    missing = sorted(set(own) - set(shapes))
    unexpected = sorted(set(shapes) - set(own))
    bad_shape = [
        f"{k}: file {tuple(shapes[k])} vs model {tuple(own[k])}"
        for k in own
        if k in shapes and tuple(shapes[k]) != tuple(own[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    if bad_shape:
        problems.append(f"shape mismatch {bad_shape[:8]}")
    return problems


def load_state_dict_checked(model: torch.nn.Module, state: dict, where: str) -> None:
    """load_state_dict with every missing, unexpected and mis-shaped key named in one error."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tensors = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    not_tensor = [k for k in state if k not in tensors]
    problems = key_problems(own, {**tensors, **{k: own.get(k, ()) for k in not_tensor}})
    if not_tensor:
        problems.append(f"non-tensor values {not_tensor[:8]}")
    if problems:
        raise CheckpointError(f"{where} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state)
