"""Registry of ahead-of-time compile specs for every Triton kernel (read by getkern.tools.gpu_check).

Each module in getkern/ops that defines Triton kernels also defines ``aot_specs()``, yielding one
:class:`AotSpec` per configuration the dispatcher can choose at GET sizes. The gate discovers these
functions by importing every module of getkern.ops, so a new kernel is covered without a second list.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AotSpec:
    name: str                       # e.g. "attention_fwd[hd=64,bf16]"
    kernel: Any                     # the @triton.jit function
    signature: dict[str, str]       # triton.compiler.ASTSource signature, e.g. {"Q": "*bf16", "N": "i32"}
    constexprs: dict[str, Any] = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 3
    uses_dot: bool = False          # has tl.dot: must compile to mma.sync (sm_80) / wgmma (sm_90)
    archs: tuple[int, ...] = (80, 90)  # compute capabilities this configuration is chosen for
