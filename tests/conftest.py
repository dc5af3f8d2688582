# The Triton interpreter must be on before any module defining a @triton.jit kernel is imported:
# that is how every kernel is exercised on CPU tensors here.
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def poisoned(monkeypatch):
    """Every float tensor the ops allocate starts as NaN, so an element a kernel forgets shows."""
    for name in ("empty", "empty_like"):
        original = getattr(torch, name)

        def poisoned_alloc(*args, _original=original, **kwargs):
            t = _original(*args, **kwargs)
            return t.fill_(float("nan")) if t.is_floating_point() else t

        monkeypatch.setattr(torch, name, poisoned_alloc)


@pytest.fixture
def one_thread():
    """Tiny ops on 2 shared cores run much faster on one thread (no OpenMP hand-offs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

