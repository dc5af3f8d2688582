"""Traffic counters on small hand-checkable cases (the Triton side under the interpreter)."""

import pytest
import torch
import triton
import triton.language as tl

from getkern.profiling.traffic import Traffic, count_torch_traffic, count_triton_traffic


@triton.jit
def _scale_rows(X, W, Y, n_rows, n_cols, BLOCK: tl.constexpr):
    """Y[r] = X[r] * W for one row per program: X read once, W re-read by every program."""
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + row * n_cols + cols, mask=mask).to(tl.float32)
    w = tl.load(W + cols, mask=mask).to(tl.float32)
    tl.store(Y + row * n_cols + cols, (x * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _count_positive(X, Out, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(X + offs, mask=offs < n, other=0.0)
    tl.atomic_add(Out, tl.sum((x > 0).to(tl.int32), 0))


def test_torch_counter_counts_inputs_outputs_and_skips_views():
    x = torch.randn(3, 5)
    y = torch.randn(3, 5)
    _, traffic = count_torch_traffic(lambda a, b: (a + b).t().relu(), x, y)
    # add: reads 2 x 60 B, writes 60 B; t: free; relu: reads 60 B, writes 60 B.
    assert (traffic.bytes_read, traffic.bytes_written, traffic.launches) == (180, 120, 2)
    assert traffic.ops == {"add": 1, "relu": 1} and isinstance(traffic, Traffic)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_counter_hand_checked(dtype):
    rows, cols, block = 5, 37, 64  # odd sizes: the masked tail lanes must count nothing
    x, w = torch.randn(rows, cols, dtype=dtype), torch.randn(cols, dtype=dtype)
    y = torch.full_like(x, float("nan"))
    _, traffic = count_triton_traffic(lambda: _scale_rows[(rows,)](x, w, y, rows, cols, BLOCK=block))
    torch.testing.assert_close(y, (x.float() * w.float()).to(dtype))  # dtype-default tolerance
    e = x.element_size()
    assert traffic.launches == 1 and traffic.ops == {"_scale_rows": 1}
    (launch,) = traffic.kernel_launches
    assert launch.grid == (rows, 1, 1)
    assert launch.bytes_read == (rows * cols + cols) * e  # X once, W once (distinct bytes)
    assert launch.requested_bytes_read == 2 * rows * cols * e  # W re-read by each of the 5 programs
    assert launch.bytes_written == launch.requested_bytes_written == rows * cols * e
    assert launch.by_arg == {"X": (rows * cols * e, 0), "W": (cols * e, 0), "Y": (0, rows * cols * e)}
    assert traffic.bytes == launch.bytes


def test_triton_counter_sums_launches_and_counts_atomics():
    n, block = 100, 32
    x = torch.randn(n)
    out = torch.zeros(1, dtype=torch.int32)

    def twice():
        for _ in range(2):
            _count_positive[(triton.cdiv(n, block),)](x, out, n, BLOCK=block)

    _, traffic = count_triton_traffic(twice)
    assert int(out) == 2 * int((x > 0).sum())
    assert traffic.launches == 2 and traffic.ops == {"_count_positive": 2}
    # Per launch: x read once (400 B); the counter: 4 programs x 4 B requested, 4 B distinct, read and written.
    assert traffic.bytes_read == 2 * (4 * n + 4)
    assert traffic.bytes_written == 2 * 4
    assert traffic.requested_bytes_read == 2 * (4 * n + 4 * 4)


def test_triton_counter_rejects_no_interpreted_launch():
    with pytest.raises(RuntimeError, match="no interpreted Triton launch"):
        count_triton_traffic(lambda: torch.ones(3) + 1)
