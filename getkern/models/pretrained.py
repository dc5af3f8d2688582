"""The models' side of checkpoints: save_pretrained / from_pretrained / push_to_hub in huggingface_hub's
PyTorchModelHubMixin layout, whether a config fits a file's weights, and the reference implementation's .pth.

A folder holds ``config.json`` (the constructor's keyword arguments, flat, plus ``_class_name``,
``_getkern_version`` and ``_weights_sha256``), ``model.safetensors`` and a ``README.md`` model card, as
the mixin writes them: a PyTorchModelHubMixin class with GET's arguments loads getkern's folders and
getkern loads its. huggingface_hub is optional: without it local folders save and load; with it
``from_pretrained`` also takes Hub ids and ``push_to_hub`` uploads. The files themselves are read and
written by getkern/checkpoint.py, which knows no model; this module knows GET and ViT by their
arguments, and get.py / vit.py build on it (so it names them, never imports them).
"""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

import torch

from getkern import __version__, checkpoint
from getkern.checkpoint import (
    CheckpointError,
    PretrainedFiles,
    key_problems,
    load_safetensors,
    load_state_dict_checked,
    place,
    read_pretrained,
    read_torch_checkpoint,
    resolve_pretrained_folder,
)
from getkern.models.configs import GET_CONFIGS, check_model_config, parse_model_name


class PretrainedMixin:
    """Adds the Hub folder format to a model that keeps its architecture kwargs in ``self.config``."""

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *,
        device=None,
        torch_dtype=None,
        verify: bool = True,
        revision: str | None = None,
        cache_dir=None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        **overrides,
    ):
        """Build from ``config.json`` and load ``model.safetensors`` of a local folder or, with
        huggingface_hub installed, a Hub model id ("owner/name"); returns the model in eval mode.

        Args:
            pretrained_model_name_or_path: a folder written by :meth:`save_pretrained` (also the first,
                nested getkern format, and folders of a PyTorchModelHubMixin class), or a Hub id.
            device: where to put the model (default: CPU).
            torch_dtype: a floating torch.dtype or its name ("bfloat16"), "auto" (the dtype the weights
                were saved in) or None (default: float32).
            verify: check model.safetensors against the SHA-256 in config.json (default True; folders
                without one load unchecked).
            revision, cache_dir, token, local_files_only, force_download: passed to
                huggingface_hub.snapshot_download for Hub ids.
            overrides: constructor arguments replacing the config's, e.g. ``backend="torch"``.

        The config is checked against the weights' shapes (read from the safetensors header) before the
        model is built; a mismatch, an invalid field or a digest mismatch raise CheckpointError.
        """
        folder = resolve_pretrained_folder(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        files = read_pretrained(folder, verify=verify)
        if files.class_name is not None and files.class_name != config_kind(cls):
            raise CheckpointError(f"{files.config_path} holds a {files.class_name!r}, not a {cls.__name__}")
        return build_pretrained(cls, files, device=device, torch_dtype=torch_dtype, **overrides)

    def save_pretrained(
        self,
        save_directory,
        *,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        model_card: bool = True,
        **push_to_hub_kwargs,
    ) -> str | None:
        """Write ``model.safetensors``, ``config.json`` (each atomically) and, unless one exists or
        ``model_card=False``, a ``README.md`` model card into ``save_directory``. ``push_to_hub=True``
        then uploads the folder's content to ``repo_id`` (default: the folder's name) and returns the
        commit URL (needs huggingface_hub)."""
        # guidance_range always, null when unset, as the Hub mixin writes every argument
        arguments = {**self.config, "guidance_range": self.config.get("guidance_range")}
        checkpoint.save_pretrained(self, save_directory, arguments, card=model_card_text(self) if model_card else None)
        if push_to_hub:
            return self.push_to_hub(repo_id or Path(save_directory).name, **push_to_hub_kwargs)
        return None

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload model with getkern",
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        create_pr: bool | None = None,
    ) -> str:
        """Upload this model (save_pretrained layout) to Hub repository ``repo_id``, created if needed;
        returns the commit URL. Needs the optional huggingface_hub package and a write token."""
        return checkpoint.push_to_hub(
            self,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            branch=branch,
            create_pr=create_pr,
        )


def config_kind(cls) -> str:
    """ "GET" or "ViT": the model ``cls`` is (or extends), whose rules in configs.py its arguments follow.
    Read off the class names because get.py and vit.py import this module."""
    return "GET" if any(c.__name__ == "GET" for c in cls.__mro__) else "ViT"


def build_pretrained(cls, files: PretrainedFiles, *, device=None, torch_dtype=None, **overrides):
    """``cls`` built from a folder :func:`getkern.checkpoint.read_pretrained` read, ``overrides`` replacing
    config fields, the config checked against the weights' shapes before anything is allocated; returns
    the model in eval mode on ``device`` in ``torch_dtype``."""
    check_overrides(cls, overrides, f"{cls.__name__}.from_pretrained")
    config = {**files.config, **overrides}
    check_config_fits(
        cls, config, files.shapes, config_where=str(files.config_path), weights_where=str(files.weights_path)
    )
    state = load_safetensors(files.weights_path)
    model = cls(**config)
    load_state_dict_checked(model, state, str(files.weights_path))
    return place(model, device=device, torch_dtype=torch_dtype, stored=files.stored_dtype)


def constructor_args(cls) -> dict:
    """The keyword-only constructor arguments of ``cls`` and their defaults."""
    params = inspect.signature(cls.__init__).parameters
    return {n: p.default for n, p in params.items() if n != "self" and p.kind is p.KEYWORD_ONLY}


def check_arguments(cls, kwargs: dict, where: str, error: type[Exception] = CheckpointError) -> None:
    """Refuse (``error`` naming ``where``) keys of ``kwargs`` that are no constructor argument of ``cls``."""
    unknown = sorted(set(kwargs) - set(constructor_args(cls)))
    if unknown:
        raise error(
            f"{where}: unknown {cls.__name__} arguments {unknown} (expected some of {sorted(constructor_args(cls))})"
        )


def _structure_mismatches(cls, config: dict, shapes: dict) -> list[str]:
    """What of ``config`` the weights' shapes contradict, read off a few keys without building anything
    (a config with depth 100000 or hidden_size 40000 must be refused before it is allocated)."""
    c = {**constructor_args(cls), **config}
    out = []
    x = shapes.get("x_embedder.proj.weight")
    if x is not None and len(x) == 4:
        for field, value in (("hidden_size", x[0]), ("in_channels", x[1]), ("patch_size", x[2])):
            if c.get(field) != value:
                out.append(
                    f"{field}={c.get(field)!r}, but the weights have {field} {value} (x_embedder.proj.weight {x})"
                )
    pos = shapes.get("pos_embed")
    if pos is not None and len(pos) == 3 and not out:
        tokens = (c["input_size"] // c["patch_size"]) ** 2
        if pos[1] != tokens:
            out.append(
                f"input_size={c['input_size']} with patch_size={c['patch_size']} makes {tokens} tokens, "
                f"but the weights' pos_embed {pos} holds {pos[1]}"
            )
    for field, prefix in (("depth", "blocks"), ("deq_depth", "deq_blocks")):
        if field not in c:
            continue
        found = {int(m.group(1)) for k in shapes if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
        if c[field] != len(found):
            out.append(
                f"{field}={c[field]!r}, but the weights hold {len(found)} {prefix} "
                f"({prefix}.0 .. {prefix}.{max(found)})"
                if found
                else f"{field}={c[field]!r}, but the weights hold no {prefix}"
            )
    table = shapes.get("y_embedder.embedding_table.weight")
    if bool(c.get("cond")) != (table is not None):
        out.append(
            f"cond={c.get('cond')!r}, but the weights have {'a' if table else 'no'} class "
            "embedding (y_embedder.embedding_table.weight)"
        )
    elif table is not None and c.get("num_classes") != table[0]:
        out.append(f"num_classes={c.get('num_classes')!r}, but the weights' class table {table} has {table[0]}")
    guided = any(k.startswith("w_embedder.") for k in shapes)
    if (c.get("guidance_range") is not None) != guided:
        out.append(
            f"guidance_range={c.get('guidance_range')!r}, but the weights have {'a' if guided else 'no'} "
            "guidance embedding (w_embedder)"
        )
    return out


def check_config_fits(cls, config: dict, shapes: dict, *, config_where: str, weights_where: str) -> None:
    """Refuse, before anything is allocated, a config (``cls`` kwargs) whose parameters would not have the
    shapes ``shapes`` (name -> shape) of the weights: invalid fields, contradicted sizes, then every
    missing, unexpected or mis-shaped key of the model built on the meta device."""
    check_arguments(cls, config, config_where)
    try:
        check_model_config(config_kind(cls), config)
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
    problems = key_problems(own, shapes)
    if problems:
        raise CheckpointError(f"{weights_where} does not fit {cls.__name__}({config_where}): " + "; ".join(problems))


def check_overrides(cls, overrides: dict, caller: str) -> None:
    """TypeError, as for a call ``caller(**overrides)``, for keys that are no ``cls`` argument."""
    unknown = sorted(set(overrides) - set(constructor_args(cls)))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {unknown}: not {cls.__name__} arguments")


def model_card_text(model: torch.nn.Module) -> str:
    """A short README.md (Hub model card) describing ``model`` and how to load and sample it."""
    c = model.config
    kind = type(model).__name__
    n = sum(p.numel() for p in model.parameters())
    blocks = (
        f"{c['depth']} injection + {c['deq_depth']} equilibrium blocks" if "deq_depth" in c else f"{c['depth']} blocks"
    )
    cond = f"class-conditional ({c['num_classes']} classes)" if c["cond"] else "unconditional"
    if c.get("guidance_range") is not None:
        cond += f", guidance-distilled (w in [{c['guidance_range'][0]:g}, {c['guidance_range'][1]:g}])"
    what = (
        "Generative Equilibrium Transformer (Geng, Pokle, Kolter, NeurIPS 2023)"
        if kind == "GET"
        else "one-pass ViT baseline (the GET paper's unrolled comparison)"
    )
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
        raise CheckpointError(f"{path} is not a reference GET checkpoint: need keys 'args' and {key!r}, found {found}")
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
        config = {
            **GET_CONFIGS[family],
            "patch_size": patch,
            "input_size": int(getattr(args, "input_size", 32)),
            "cond": bool(getattr(args, "cond", False)),
            "num_classes": int(getattr(args, "num_classes", 10)),
            "in_channels": int(state["x_embedder.proj.weight"].shape[1]),
        }
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise CheckpointError(f"{path}: unreadable 'args' or x_embedder.proj.weight: {e}") from None
    check_overrides(cls, overrides, f"{cls.__name__}.from_official_checkpoint")
    config = {**config, **overrides}
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    check_config_fits(cls, config, shapes, config_where=f"{path}['args']", weights_where=f"{path}[{key!r}]")
    model = cls(**config)
    load_state_dict_checked(model, state, f"{path}[{key!r}]")
    return model.eval()
