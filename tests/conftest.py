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


def cpp_marker_hook(items) -> None:
    """Tests marked ``cpp`` need the C++ extension: it is built here if not cached (as on first use).
    They are skipped where it cannot be built, except in CI, where they run and fail."""
    if not any(item.get_closest_marker("cpp") for item in items):
        return
    from getkern.deq import cpp_backend
    if cpp_backend.cpp_available(build=True) or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"the C++ extension cannot be built here: {cpp_backend._failure}")
    for item in items:
        if item.get_closest_marker("cpp"):
            item.add_marker(skip)


def pytest_collection_modifyitems(config, items):
    cpp_marker_hook(items)
