"""The one place a kernel module of getkern.ops imports triton.

triton is optional: a CPU-only torch (macOS, Windows, Linux CPU wheels) does not bring it, and every op
has a PyTorch path. Every kernel module (attention, layernorm, matmul, anderson) has the same one line,
``from getkern.ops._triton import jit, tl, triton`` (plus ``constexpr`` for module-level kernel
constants), and no ``import triton`` of its own; ``triton`` itself serves host code that only the
Triton path and the gate run (``triton.cdiv``, ``triton.next_power_of_2``). Without triton, ``jit`` leaves the kernels as plain (never launched) functions
and ``resolve_backend`` sends "auto" to PyTorch and makes an explicit ``backend="triton"`` raise
BackendUnavailable. (getkern.ops._aot imports triton's compiler inside its functions: only the
code-generation gate calls them.)
"""

from __future__ import annotations

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only torch without triton
    triton = tl = None


def jit(fn=None, **options):
    """``triton.jit`` (bare or with options) when triton is importable; otherwise the function itself."""
    if triton is None:
        return fn if fn is not None else (lambda f: f)
    return triton.jit(fn, **options) if fn is not None else (lambda f: triton.jit(f, **options))


def constexpr(value):
    """A module-level kernel constant: ``tl.constexpr(value)``, or the plain value without triton."""
    return tl.constexpr(value) if tl is not None else value
