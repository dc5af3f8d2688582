"""FLOP formulas of the custom ops (getkern.ops.flops): a block counts the same on the fused and the
PyTorch path, forward and backward, and equals the block's matmul count."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from getkern.models.layers import Block


def counted(fn) -> int:
    with FlopCounterMode(display=False) as mode:
        fn()
    return mode.get_total_flops()


@pytest.mark.parametrize("train", [False, True])
def test_block_flops_equal_on_both_paths(train):
    B, N, D, H, ratio = 2, 17, 64, 2, 3
    torch.manual_seed(0)
    block = Block(D, H, ratio, backend="torch").train(train)
    fused = copy.deepcopy(block)
    for m in fused.modules():
        if hasattr(m, "backend"):
            m.backend = "triton"
    x = torch.randn(B, N, D, requires_grad=train)
    c, u = torch.randn(B, 1, 3 * D), torch.randn(B, N, 3 * D)

    def step(model):
        out = model(x, c, u)
        if train:
            out.sum().backward()

    rows, hidden = B * N, D * ratio
    attention = 2 * 2 * B * N * N * D
    forward = 2 * rows * D * 3 * D + 2 * 2 * B * N * N * D + 2 * rows * D * D + 4 * rows * D * hidden
    # backward: 2x each linear's forward (input and weight gradients); attention 5 matmuls of 2 B N^2 D
    # (torch counts its flash backward's recomputed q k^T), i.e. 2.5x its forward
    expected = forward if not train else 3 * forward + attention // 2
    # torch < 2.13 has no formula for CPU's sdpa kernel: its PyTorch path then misses attention
    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu in flop_registry
    missed = 0 if cpu_sdpa else (attention if not train else attention * 7 // 2)
    with torch.set_grad_enabled(train):
        assert counted(lambda: step(fused)) == expected
        assert counted(lambda: step(block)) == expected - missed


def test_cpu_inference_path_counts_the_same(monkeypatch):
    """The oneDNN linears of the CPU inference path (getkern.ops.cpu_epilogues) count as matmuls."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # "auto" as a user's CPU process resolves it
    B, N, D, H, ratio = 2, 17, 64, 2, 3
    torch.manual_seed(0)
    block = Block(D, H, ratio, backend="torch").eval()
    fast = copy.deepcopy(block)
    for m in fast.modules():
        if hasattr(m, "backend"):
            m.backend = "auto"
    x, c, u = torch.randn(B, N, D), torch.randn(B, 1, 3 * D), torch.randn(B, N, 3 * D)
    with torch.no_grad():
        assert fast.attn.residual_in_matmul(x)
        assert counted(lambda: fast(x, c, u)) == counted(lambda: block(x, c, u)) > 0
