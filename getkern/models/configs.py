"""Named model sizes. Names are "<family>/<patch>", patch 2, 4 or 8 (e.g. "GET-B/4", "ViT-L/2")."""
from __future__ import annotations

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
    """"GET-B/2" -> ("GET-B", 2). The reference spells GET-B+/2 as "GET-B/2+": both are accepted."""
    if name.endswith("+"):  # "GET-B/2+" -> "GET-B+/2"
        family, _, patch = name[:-1].partition("/")
        name = f"{family}+/{patch}"
    family, _, patch = name.partition("/")
    if family not in table or not patch.isdigit() or int(patch) not in PATCH_SIZES:
        names = ", ".join(f"{f}/{p}" for f in table for p in PATCH_SIZES)
        raise ValueError(f"unknown {kind} model name {name!r}; expected one of: {names}")
    return family, int(patch)
