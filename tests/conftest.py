# The Triton interpreter must be on before any module defining a @triton.jit kernel is imported:
# that is how every kernel is exercised on CPU tensors here.
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # `import helpers` under any import mode
from helpers import torch_threads  # noqa: E402

# Thread policy, for the whole session: one intra-op thread. The tests' tensors are tiny and the
# machine has 2 cores shared with other jobs, so OpenMP hand-offs cost more than they save. The
# Makefile's OMP_NUM_THREADS (2) still sizes the subprocesses a test starts unless it passes its own.
# A test whose result depends on the count (compared bitwise with a child run under OMP_NUM_THREADS=1,
# or recording the count) also takes the `one_thread` fixture, so that it holds whatever the session
# default is and whatever count an earlier library call set (run_study sets the one it calibrated with).
torch.set_num_threads(1)


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
    """One intra-op thread for this test, restored after (see the thread policy above)."""
    with torch_threads(1):
        yield
