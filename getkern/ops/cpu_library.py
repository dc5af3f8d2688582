"""getkern's CPU operators (getkern/csrc/cpu_ops/, ``torch.ops.getkern_cpu``): loading them once per
process, and the vector instruction set their kernels run on.

The library is compiled on first use, once per torch (getkern/_extension.py; ``GETKERN_CPU_OPS=0`` turns
it off); a failed build warns once and the PyTorch paths run from then on. Each kernel is compiled once
per vector width (AVX-512, AVX2, baseline: per_isa.h) and the widest this CPU has runs.
"""

from __future__ import annotations

import warnings

import torch

from getkern import _extension

INSTRUCTION_SETS = ("baseline", "avx2", "avx512")  # narrowest first

_ready: bool | None = None  # None: not tried yet in this process
_isa: str | None = None  # the instruction set the kernels run on, once loaded
_when_loaded: list = []  # callbacks waiting for the library (when_loaded)


def available() -> bool:
    """Whether the CPU operators are loaded, building them on the first call."""
    global _ready, _isa
    if _ready is None:
        if not _extension.cpu_ops_enabled():
            _ready = False
        else:
            try:
                _extension.build_cpu_ops()
                _ready = True
                _isa = torch.ops.getkern_cpu.isa()
                for callback in _when_loaded:
                    callback()
            except _extension.ExtensionError as error:
                warnings.warn(
                    f"getkern's CPU operators are unavailable ({error}); PyTorch's own operators run instead",
                    RuntimeWarning,
                    stacklevel=3,
                )
                _ready = False
    return _ready


def when_loaded(callback) -> None:
    """Call ``callback()`` once the library is loaded (now, if it is): for what needs its ops to exist,
    such as FLOP formulas (getkern.ops.flops), without building it at import."""
    if _ready:
        callback()
    else:
        _when_loaded.append(callback)


def isa() -> str | None:
    """The instruction set the kernels run on ("baseline", "avx2", "avx512"); None before loading."""
    return _isa if _ready else None


def instruction_sets() -> tuple[str, ...]:
    """The instruction sets this CPU can run the kernels on, narrowest first (needs :func:`available`)."""
    widest = torch.ops.getkern_cpu.widest_isa()
    return INSTRUCTION_SETS[: INSTRUCTION_SETS.index(widest) + 1]


def use_instruction_set(name: str) -> str:
    """Run every kernel's ``name`` copy from now on in this process (tests compare them); returns the one
    that ran before. ``name`` must be one of :func:`instruction_sets`."""
    global _isa
    if name not in instruction_sets():
        raise ValueError(f"use_instruction_set: name must be one of {instruction_sets()} on this CPU, got {name!r}")
    before = torch.ops.getkern_cpu.isa()
    torch.ops.getkern_cpu.set_isa(name)
    _isa = name
    return before
