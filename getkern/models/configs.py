"""Named model sizes. Names are "<family>/<patch>", patch 2, 4 or 8 (e.g. "GET-B/4", "ViT-L/2")."""

from __future__ import annotations

import math
import numbers

from getkern._backend import BACKENDS
from getkern.deq.core import SOLVER_BACKENDS
from getkern.errors import UsageError

# D, heads, injection depth, equilibrium MLP ratio as published (equilibrium depth 3, injection MLP 4).
GET_CONFIGS = {
    "GET-T": dict(hidden_size=256, num_heads=4, depth=6, deq_mlp_ratio=6),
    "GET-M": dict(hidden_size=384, num_heads=6, depth=6, deq_mlp_ratio=6),
    "GET-S": dict(hidden_size=512, num_heads=8, depth=6, deq_mlp_ratio=8),
    "GET-B": dict(hidden_size=768, num_heads=12, depth=1, deq_mlp_ratio=12),
    "GET-B+": dict(hidden_size=768, num_heads=12, depth=6, deq_mlp_ratio=8),
}

VIT_CONFIGS = {
    "ViT-S": dict(hidden_size=384, num_heads=6, depth=12),
    "ViT-B": dict(hidden_size=768, num_heads=12, depth=12),
    "ViT-L": dict(hidden_size=1024, num_heads=16, depth=24),
    "ViT-XL": dict(hidden_size=1152, num_heads=16, depth=28),
}

PATCH_SIZES = (2, 4, 8)


def parse_model_name(name: str, table: dict, kind: str) -> tuple[str, int]:
    """ "GET-B/2" -> ("GET-B", 2). The reference spells GET-B+/2 as "GET-B/2+": both are accepted.
    An unknown name raises :class:`~getkern.errors.UsageError` (a ValueError) listing the known ones."""
    names = ", ".join(f"{f}/{p}" for f in table for p in PATCH_SIZES)
    if not isinstance(name, str):
        raise UsageError(f"a {kind} model name must be a string such as {next(iter(table))}/2, got {name!r}")
    if name.endswith("+"):  # "GET-B/2+" -> "GET-B+/2"
        family, _, patch = name[:-1].partition("/")
        name = f"{family}+/{patch}"
    family, _, patch = name.partition("/")
    if family not in table or not patch.isdigit() or int(patch) not in PATCH_SIZES:
        raise UsageError(f"unknown {kind} model name {name!r}; expected one of: {names}")
    return family, int(patch)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_model_config(kind: str, config: dict) -> None:
    """Refuse a GET/ViT constructor argument outside its allowed range before anything is built:
    a :class:`~getkern.errors.UsageError` naming the field, its value and what is allowed.

    ``kind``: "GET" or "ViT"; ``config``: the constructor's arguments (those present are checked).
    """

    def bad(field: str, allowed: str):
        return UsageError(f"{kind}: {field}={config[field]!r} is invalid: {allowed}")

    min_int = {
        "input_size": 1,
        "patch_size": 1,
        "in_channels": 1,
        "hidden_size": 4,
        "num_heads": 1,
        "num_classes": 1,
        "depth": 0 if kind == "GET" else 1,
        "deq_depth": 1,
    }
    for field, low in min_int.items():
        if field in config and not (_is_int(config[field]) and config[field] >= low):
            raise bad(field, f"expected an integer >= {low}")
    if "cond" in config and not isinstance(config["cond"], bool):
        raise bad("cond", "expected True or False")
    for field in ("mlp_ratio", "deq_mlp_ratio"):
        if field in config and not (_is_real(config[field]) and config[field] > 0):
            raise bad(field, "expected a finite number > 0 (MLP hidden width = int(hidden_size * ratio))")
    if "backend" in config and config["backend"] not in BACKENDS:
        raise bad("backend", f"expected one of {', '.join(BACKENDS)}")
    if "solver_backend" in config and config["solver_backend"] not in SOLVER_BACKENDS:
        raise bad("solver_backend", f"expected one of {', '.join(SOLVER_BACKENDS)}")
    get = config.get
    if get("input_size") is not None and get("patch_size") is not None and config["input_size"] % config["patch_size"]:
        raise bad(
            "patch_size",
            f"expected a divisor of input_size={config['input_size']} (input_size must be "
            "divisible by patch_size; the named sizes use 2, 4 or 8)",
        )
    if get("hidden_size") is not None:
        if config["hidden_size"] % 4:
            raise bad("hidden_size", "expected a multiple of 4 (the 2-D sin-cos position embedding)")
        if get("num_heads") is not None and config["hidden_size"] % config["num_heads"]:
            raise bad("hidden_size", f"expected a multiple of num_heads={config['num_heads']}")
        for field in ("mlp_ratio", "deq_mlp_ratio"):
            if field in config and int(config["hidden_size"] * config[field]) < 1:
                raise bad(field, f"expected int(hidden_size * {field}) >= 1 (hidden_size={config['hidden_size']})")
