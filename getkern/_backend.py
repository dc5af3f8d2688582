"""Backend dispatch shared by every fused op and solver.

One convention everywhere: ``backend="auto" | "triton" | "torch"`` (solvers add ``"cpp"``).

- ``"auto"`` takes the Triton kernel for CUDA tensors, and for CPU tensors when the Triton
  interpreter is on (``TRITON_INTERPRET=1``: how tests, and anyone without a GPU, run the
  kernels); otherwise the PyTorch reference path.
- Inputs a kernel does not implement (e.g. float64, an unsupported head dim) go to the PyTorch path
  under "auto"; with an explicit "triton" they raise.
- An explicit backend that cannot run raises :class:`BackendUnavailable`; never a silent fallback.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from getkern.errors import GetkernError

BACKENDS = ("auto", "triton", "torch")


class BackendUnavailable(GetkernError, RuntimeError):
    """An explicitly requested backend cannot run on these inputs or this machine."""


def interpreter_enabled() -> bool:
    """True when the Triton interpreter is on (it must be set before kernels are imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# Decided once at import (a plain constant, so torch.compile traces dispatch without guards on a cache).
_TRITON_IMPORTABLE = importlib.util.find_spec("triton") is not None


def triton_importable() -> bool:
    return _TRITON_IMPORTABLE


def triton_can_run(device: torch.device) -> bool:
    """Whether a Triton kernel can launch on tensors of ``device``."""
    if not triton_importable():
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and interpreter_enabled()


def check_backend_name(backend: str, allowed: tuple[str, ...] = BACKENDS, *, arg: str = "backend") -> None:
    if backend not in allowed:
        raise ValueError(f"{arg} must be one of {allowed}, got {backend!r}")


def resolve_backend(
    backend: str, device: torch.device, *, op: str, unsupported: str | None = None, slower: bool = False
) -> str:
    """Map ``backend`` ("auto"|"triton"|"torch") to the one that runs for tensors on ``device``.

    ``unsupported``: why the kernel cannot take these particular inputs (a dtype or size it does not
    implement), or None. "auto" then takes the PyTorch path; an explicit "triton" raises.
    ``slower``: the kernel runs these inputs but the PyTorch path is expected to be faster (e.g. IEEE
    fp32 matmuls, where cuBLAS beats Triton's FMA dots): "auto" takes PyTorch, "triton" still runs.
    """
    check_backend_name(backend)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if triton_can_run(device) and unsupported is None and not slower else "torch"
    if not triton_importable():
        raise BackendUnavailable(
            f"{op}: backend='triton' requested but triton is not importable (the triton package is "
            "not installed: pip install triton, Linux x86-64; or use backend='torch')"
        )
    if not triton_can_run(device):
        raise BackendUnavailable(
            f"{op}: backend='triton' cannot run on {device.type} tensors without a GPU; "
            "set TRITON_INTERPRET=1 before importing getkern to run kernels on the CPU "
            "(slow, for testing), or use backend='torch'"
        )
    if unsupported is not None:
        raise BackendUnavailable(
            f"{op}: the Triton kernel does not support these inputs: {unsupported}; use backend='torch' (or 'auto')"
        )
    return "triton"


def dense(*tensors):
    """The tensors (None and non-tensors passed through), each made contiguous if it is not: how the
    Triton paths take strided and channels-last views (one copy) instead of refusing them."""
    return tuple(t.contiguous() if isinstance(t, torch.Tensor) and not t.is_contiguous() else t for t in tensors)


def cuda_fp32_matmul_is_tf32() -> bool:
    """Whether torch runs CUDA fp32 matmuls as TF32, read through the current API
    (``torch.backends.cuda.matmul.fp32_precision``, then the global ``torch.backends.fp32_precision``;
    "none" defers to the next level) and, only where neither decides, the legacy
    ``torch.get_float32_matmul_precision()`` (which raises once the two APIs were mixed)."""
    for level in (
        getattr(torch.backends.cuda.matmul, "fp32_precision", None),
        getattr(torch.backends, "fp32_precision", None),
    ):
        if level in ("tf32", "ieee"):
            return level == "tf32"
    try:
        return torch.get_float32_matmul_precision() != "highest"
    except RuntimeError:
        return False
