"""Checkpoints: getkern's own folders (Hugging Face Hub layout: flat config.json + model.safetensors),
training checkpoints (``getkern train``'s checkpoint.pt) and the reference implementation's .pth.
:func:`getkern.load` (getkern/loading.py) picks the right reader for any of them.

Nothing here unpickles arbitrary objects: reference checkpoints load with ``weights_only=True`` and
only ``argparse.Namespace`` allow-listed (the reference pickles its command-line args).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import pickle
import re
import stat
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from getkern.models.configs import GET_CONFIGS, parse_model_name
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
        raise UsageError(f"{path} exists and is not a regular file (a FIFO, device or socket): refusing to replace "
                         "it; write to another path")


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


def model_classes() -> dict:
    from getkern.models import GET, ViT
    return {"GET": GET, "ViT": ViT}


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def hub_config(model: torch.nn.Module, weights_sha256: str | None = None) -> dict:
    """config.json's content: the constructor arguments (guidance_range always, null when unset, as the
    Hub mixin writes every argument) plus getkern's "_" keys."""
    from getkern import __version__
    config = {**model.config, "guidance_range": model.config.get("guidance_range")}
    config.update({"_class_name": type(model).__name__, "_getkern_version": __version__})
    if weights_sha256 is not None:
        config["_weights_sha256"] = weights_sha256
    return config


def model_card(model: torch.nn.Module) -> str:
    """A short README.md (Hub model card) describing ``model`` and how to load and sample it."""
    from getkern import __version__
    c = model.config
    kind = type(model).__name__
    n = sum(p.numel() for p in model.parameters())
    blocks = (f"{c['depth']} injection + {c['deq_depth']} equilibrium blocks" if "deq_depth" in c
              else f"{c['depth']} blocks")
    cond = f"class-conditional ({c['num_classes']} classes)" if c["cond"] else "unconditional"
    if c.get("guidance_range") is not None:
        cond += f", guidance-distilled (w in [{c['guidance_range'][0]:g}, {c['guidance_range'][1]:g}])"
    what = ("Generative Equilibrium Transformer (Geng, Pokle, Kolter, NeurIPS 2023)" if kind == "GET"
            else "one-pass ViT baseline (the GET paper's unrolled comparison)")
    return f"""---
library_name: getkern
tags:
- getkern
- generative-equilibrium-transformer
- model_hub_mixin
- pytorch_model_hub_mixin
---

# {kind}: one-step image generation

A {what}, saved by getkern {__version__}: noise (B, {c['in_channels']}, {c['input_size']}, {c['input_size']})
to images of the same shape, patch {c['patch_size']}, width {c['hidden_size']}, {blocks},
{c['num_heads']} heads, {n:,} parameters; {cond}.

```python
import getkern
model = getkern.load("this-folder-or-hub-id")            # eval mode; device=..., torch_dtype=...
images = getkern.sample(model, 16, generator=0)          # nominally in [-1, 1], not clamped
```

Files: `config.json` (the constructor arguments, plus `_class_name` and `_weights_sha256`, the
SHA-256 of `model.safetensors`, checked on load) and `model.safetensors` (the state dict).
"""


def save_pretrained(model: torch.nn.Module, directory, *, model_card_file: bool = True) -> Path:
    """Write ``model.safetensors``, then ``config.json`` (with the weights' digest), each atomically, and
    a ``README.md`` model card unless one exists; returns the folder."""
    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    digest = {}

    def write_weights(p):
        save_file(state, p, metadata={"format": "pt"})
        digest["sha256"] = file_sha256(p)

    atomic_write(directory / WEIGHTS_FILE, write_weights)
    text = json.dumps(hub_config(model, digest["sha256"]), sort_keys=True, indent=2) + "\n"
    atomic_write(directory / CONFIG_FILE, lambda p: Path(p).write_text(text))
    if model_card_file and not (directory / MODEL_CARD_FILE).exists():
        card = model_card(model)
        atomic_write(directory / MODEL_CARD_FILE, lambda p: Path(p).write_text(card))
    return directory


def _run_folder_hint(directory: Path) -> str:
    if (directory / "checkpoint.pt").is_file() or (directory / "ema").is_dir():
        return (f"; {directory} is a `getkern train` run folder: load it with getkern.load({str(directory)!r}) "
                f"(or from_pretrained of {directory / 'ema'})")
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
            raise CheckpointError(f"{path} is not a getkern config (format={meta.get('format')!r}, "
                                  f"no 'config' object){_run_folder_hint(directory)}")
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


def resolve_model_class(cls, name: str | None, shapes: dict, where: str):
    """The class to build: the folder's ``_class_name`` (which must fit a requested ``cls``), else ``cls``,
    else GET or ViT by the weights' keys (only a GET has ``qkv_inj``)."""
    classes = model_classes()
    if name is None:
        return cls if cls is not None else classes["GET" if "qkv_inj.weight" in shapes else "ViT"]
    base = classes.get(name)
    if base is None or (cls is not None and not issubclass(cls, base)):
        wanted = cls.__name__ if cls is not None else "getkern GET or ViT"
        raise CheckpointError(f"{where} holds a {name!r}, not a {wanted}")
    return cls if cls is not None else base


def _constructor_args(cls) -> dict:
    params = inspect.signature(cls.__init__).parameters
    return {n: p.default for n, p in params.items() if n != "self" and p.kind is p.KEYWORD_ONLY}


def check_arguments(cls, kwargs: dict, where: str, error: type[Exception] = CheckpointError) -> None:
    unknown = sorted(set(kwargs) - set(_constructor_args(cls)))
    if unknown:
        raise error(f"{where}: unknown {cls.__name__} arguments {unknown} "
                    f"(expected some of {sorted(_constructor_args(cls))})")


def _structure_mismatches(cls, config: dict, shapes: dict) -> list[str]:
    """What of ``config`` the weights' shapes contradict, read off a few keys without building anything
    (a config with depth 100000 or hidden_size 40000 must be refused before it is allocated)."""
    c = {**_constructor_args(cls), **config}
    out = []
    x = shapes.get("x_embedder.proj.weight")
    if x is not None and len(x) == 4:
        for field, value in (("hidden_size", x[0]), ("in_channels", x[1]), ("patch_size", x[2])):
            if c.get(field) != value:
                out.append(f"{field}={c.get(field)!r}, but the weights have {field} {value} "
                           f"(x_embedder.proj.weight {x})")
    pos = shapes.get("pos_embed")
    if pos is not None and len(pos) == 3 and not out:
        tokens = (c["input_size"] // c["patch_size"]) ** 2
        if pos[1] != tokens:
            out.append(f"input_size={c['input_size']} with patch_size={c['patch_size']} makes {tokens} tokens, "
                       f"but the weights' pos_embed {pos} holds {pos[1]}")
    for field, prefix in (("depth", "blocks"), ("deq_depth", "deq_blocks")):
        if field not in c:
            continue
        found = {int(m.group(1)) for k in shapes if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
        if c[field] != len(found):
            out.append(f"{field}={c[field]!r}, but the weights hold {len(found)} {prefix} "
                       f"({prefix}.0 .. {prefix}.{max(found)})" if found else
                       f"{field}={c[field]!r}, but the weights hold no {prefix}")
    table = shapes.get("y_embedder.embedding_table.weight")
    if bool(c.get("cond")) != (table is not None):
        out.append(f"cond={c.get('cond')!r}, but the weights have {'a' if table else 'no'} class "
                   "embedding (y_embedder.embedding_table.weight)")
    elif table is not None and c.get("num_classes") != table[0]:
        out.append(f"num_classes={c.get('num_classes')!r}, but the weights' class table {table} has {table[0]}")
    guided = any(k.startswith("w_embedder.") for k in shapes)
    if (c.get("guidance_range") is not None) != guided:
        out.append(f"guidance_range={c.get('guidance_range')!r}, but the weights have {'a' if guided else 'no'} "
                   "guidance embedding (w_embedder)")
    return out


def check_config_fits(cls, config: dict, shapes: dict, *, config_where: str, weights_where: str) -> None:
    """Refuse, before anything is allocated, a config (``cls`` kwargs) whose parameters would not have the
    shapes ``shapes`` (name -> shape) of the weights: invalid fields, contradicted sizes, then every
    missing, unexpected or mis-shaped key of the model built on the meta device."""
    from getkern.models.configs import check_model_config
    from getkern.models import GET
    check_arguments(cls, config, config_where)
    try:
        check_model_config("GET" if issubclass(cls, GET) else "ViT", config)
    except ValueError as e:
        raise CheckpointError(f"{config_where}: {e}") from None
    problems = _structure_mismatches(cls, config, shapes)
    if problems:
        raise CheckpointError(f"{config_where} does not fit {weights_where} (shape mismatch): " + "; ".join(problems))
    try:
        with torch.device("meta"):
            own = {k: tuple(v.shape) for k, v in cls(**{**config, "backend": "torch"}).state_dict().items()}
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{config_where}: {e}") from None
    problems = _key_problems(own, shapes)
    if problems:
        raise CheckpointError(f"{weights_where} does not fit {cls.__name__}({config_where}): " + "; ".join(problems))


def resolve_dtype(torch_dtype, stored: torch.dtype | None = None) -> torch.dtype | None:
    """None (keep float32), "auto" (the weights' own dtype), a floating torch.dtype or its name."""
    if torch_dtype is None:
        return None
    if torch_dtype == "auto":
        return stored
    dtype = getattr(torch, torch_dtype, None) if isinstance(torch_dtype, str) else torch_dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise UsageError(f"torch_dtype={torch_dtype!r}: expected a floating torch.dtype (torch.float32, "
                         "torch.bfloat16, torch.float16, torch.float64), its name, or 'auto' (the weights' own)")
    return dtype


def resolve_device(device) -> torch.device | None:
    """None, or ``device`` as a torch.device that exists here (UsageError otherwise, before any work)."""
    if device is None:
        return None
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        raise UsageError(f"device={device!r}: not a torch device (expected e.g. 'cpu', 'cuda', 'cuda:0')")
    from getkern.distill.distributed import check_device
    return check_device(f"cuda:{device}" if isinstance(device, int) else device, "device=")


def place(model: torch.nn.Module, *, device=None, torch_dtype=None, stored: torch.dtype | None = None):
    """``model`` moved to ``device`` / ``torch_dtype`` (see :func:`resolve_dtype`), in eval mode."""
    dtype, device = resolve_dtype(torch_dtype, stored), resolve_device(device)
    if dtype is not None or device is not None:
        model = model.to(device=device, dtype=dtype)
    return model.eval()


def _check_overrides(cls, overrides: dict, caller: str) -> None:
    unknown = sorted(set(overrides) - set(_constructor_args(cls)))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {unknown}: not {cls.__name__} arguments")


def load_pretrained(cls, directory, *, device=None, torch_dtype=None, verify: bool = True, **overrides):
    """Build and load a ``save_pretrained`` folder; ``cls`` None: the class the folder names (or its
    weights imply). Checks, in order: the config's fields, the weights' SHA-256 (unless ``verify=False``
    or the folder has none), the config against the weights' shapes (read from the header, before
    anything is allocated). Returns the model in eval mode on ``device`` in ``torch_dtype``."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory} does not exist (expected a folder written by save_pretrained)")
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path} does not exist (expected a folder written by save_pretrained)"
                              f"{_run_folder_hint(directory)}")
    name, config, digest = read_pretrained_config(directory)
    if verify and digest is not None and file_sha256(weights_path) != digest:
        raise CheckpointError(f"{weights_path} does not match the SHA-256 recorded in {config_path} (the file "
                              "is corrupt or was changed after saving); pass verify=False to load it anyway")
    shapes, stored = read_safetensors_shapes(weights_path)
    cls = resolve_model_class(cls, name, shapes, str(config_path))
    _check_overrides(cls, overrides, f"{cls.__name__}.from_pretrained")
    config = {**config, **overrides}
    check_config_fits(cls, config, shapes, config_where=str(config_path), weights_where=str(weights_path))
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {e}") from None
    model = cls(**config)
    load_state_dict_checked(model, state, str(weights_path))
    return place(model, device=device, torch_dtype=torch_dtype, stored=stored)


# ---------------------------------------------------------------- the Hugging Face Hub (optional)

def looks_like_hub_id(name) -> bool:
    """"owner/name" that is no local path: owner is not a local folder, name no checkpoint file name."""
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


def hub_snapshot(repo_id: str, *, revision=None, cache_dir=None, token=None, local_files_only: bool = False,
                 force_download: bool = False) -> Path:
    """The local folder of Hub model ``repo_id`` (config.json, model.safetensors, README.md), downloaded
    with huggingface_hub.snapshot_download (cached)."""
    try:
        hub = huggingface_hub(f"loading the Hub id {repo_id!r}")
    except ImportError as e:
        raise CheckpointError(f"{repo_id} does not exist as a local path; {e}") from None
    try:
        return Path(hub.snapshot_download(repo_id=repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                          local_files_only=local_files_only, force_download=force_download,
                                          allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, MODEL_CARD_FILE]))
    except Exception as e:  # noqa: BLE001 - network, authentication, missing repository: one message
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{repo_id} does not exist as a local path, and downloading it from the Hugging "
                              f"Face Hub failed: {type(e).__name__}: {first}") from None


def resolve_pretrained_folder(name_or_path, **hub_kwargs) -> Path:
    """A local folder as given, or the snapshot of a Hub id when it is no local path."""
    path = Path(name_or_path)
    if not path.exists() and looks_like_hub_id(name_or_path):
        return hub_snapshot(str(name_or_path), **hub_kwargs)
    return path


def push_to_hub(model: torch.nn.Module, repo_id: str, *, commit_message: str = "Upload model with getkern",
                private: bool | None = None, token: str | None = None, branch: str | None = None,
                create_pr: bool | None = None) -> str:
    """save_pretrained into a temporary folder and upload it to Hub repository ``repo_id`` (created if
    needed); returns the commit's URL. Needs huggingface_hub and a token with write access."""
    hub = huggingface_hub("push_to_hub")
    api = hub.HfApi(token=token)
    repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp)
        return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=tmp,
                                 commit_message=commit_message, revision=branch, create_pr=create_pr)


# ---------------------------------------------------------------- torch.save checkpoints

def _torch_load_safely(path: Path):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: it pickles objects other than tensors and argparse.Namespace "
            f"(weights_only=True). Details: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - a damaged file fails anywhere in the unpickler (IndexError, ...)
        first = str(e).splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path} is not a readable torch checkpoint (corrupt, truncated or another kind of "
                              f"file): {type(e).__name__}: {first}") from None


def read_torch_checkpoint(path, *, verify: bool = True) -> object:
    """``torch.load(path, weights_only=True)`` with only ``argparse.Namespace`` allow-listed; a sha256
    sidecar beside it (``checkpoint.pt.sha256``, as the trainer writes) is checked unless ``verify=False``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    sidecar = path.with_name(path.name + DIGEST_SUFFIX)
    if verify and sidecar.is_file() and file_sha256(path) != sidecar.read_text(errors="replace").strip():
        previous = path.with_name("checkpoint.prev.pt")
        hint = f"; the run's previous checkpoint is {previous}" if path.name == "checkpoint.pt" and previous.is_file() else ""
        raise CheckpointError(f"{path}: its sha256 differs from the one in {sidecar.name}: the file is corrupt "
                              f"(verify=False loads it anyway{hint})")
    return _torch_load_safely(path)


def is_train_checkpoint(state) -> bool:
    return isinstance(state, dict) and state.get("format") == TRAIN_CHECKPOINT_FORMAT


def load_train_model(path, state: dict | None = None, *, ema: bool = True, **overrides):
    """The EMA (or, ``ema=False``, the online) GET or ViT of a ``getkern train`` checkpoint.pt, eval mode.
    ``state``: the already-read checkpoint (else it is read)."""
    path = Path(path)
    state = read_torch_checkpoint(path) if state is None else state
    if not is_train_checkpoint(state):
        raise CheckpointError(f"{path} is not a getkern training checkpoint (format != {TRAIN_CHECKPOINT_FORMAT!r})")
    key = "ema" if ema else "model"
    classes = model_classes()
    name = state.get("model_class", "GET")
    if name not in classes or key not in state or not isinstance(state.get("model_config"), str):
        raise CheckpointError(f"{path}: not a getkern training checkpoint of a GET or ViT (model_class={name!r}, "
                              f"keys {sorted(state)})")
    cls = classes[name]
    try:
        config = json.loads(state["model_config"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: model_config is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: model_config is not a JSON object of {name} arguments")
    _check_overrides(cls, overrides, "load")
    config = {**config, **overrides}
    weights = state[key]
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}[{key!r}] is not a state dict")
    shapes = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    check_config_fits(cls, config, shapes, config_where=f"{path}['model_config']", weights_where=f"{path}[{key!r}]")
    model = cls(**config)
    load_state_dict_checked(model, weights, f"{path}[{key!r}]")
    return model.eval()


# ---------------------------------------------------------------- the reference's format

def load_official(cls, path, ema: bool = True, *, state: dict | None = None, **overrides):
    """Load ``torch.save({'args': Namespace, 'model': sd, 'ema': sd, 'opt': ...})`` from the reference.

    The configuration comes from the checkpoint's own args (model, cond, input_size, num_classes); the
    channel count from the patch-embedding weight. ``ema=False`` loads the online weights instead.
    ``state``: the already-read checkpoint (else ``path`` is read). Returns the model in eval mode.
    """
    path = Path(path)
    ckpt = read_torch_checkpoint(path) if state is None else state
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
    try:
        config = {**GET_CONFIGS[family], "patch_size": patch,
                  "input_size": int(getattr(args, "input_size", 32)),
                  "cond": bool(getattr(args, "cond", False)),
                  "num_classes": int(getattr(args, "num_classes", 10)),
                  "in_channels": int(state["x_embedder.proj.weight"].shape[1])}
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise CheckpointError(f"{path}: unreadable 'args' or x_embedder.proj.weight: {e}") from None
    _check_overrides(cls, overrides, f"{cls.__name__}.from_official_checkpoint")
    config = {**config, **overrides}
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    check_config_fits(cls, config, shapes, config_where=f"{path}['args']", weights_where=f"{path}[{key!r}]")
    model = cls(**config)
    load_state_dict_checked(model, state, f"{path}[{key!r}]")
    return model.eval()


def _key_problems(own: dict, shapes: dict) -> list[str]:
    """Missing, unexpected and mis-shaped keys of ``shapes`` (name -> shape) against ``own``."""
    missing = sorted(set(own) - set(shapes))
    unexpected = sorted(set(shapes) - set(own))
    bad_shape = [f"{k}: file {tuple(shapes[k])} vs model {tuple(own[k])}"
                 for k in own if k in shapes and tuple(shapes[k]) != tuple(own[k])]
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
    problems = _key_problems(own, {**tensors, **{k: own.get(k, ()) for k in not_tensor}})
    if not_tensor:
        problems.append(f"non-tensor values {not_tensor[:8]}")
    if problems:
        raise CheckpointError(f"{where} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state)
