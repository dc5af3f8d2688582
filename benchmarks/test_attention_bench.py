"""Fused attention vs the unfused sequence (qkv + c + u, F.scaled_dot_product_attention) at GET-B shapes.

With a GPU: times both providers, forward and forward+backward. Without one: the benchmark records the
counted bytes and launches in extra_info and times only the counting (not attention).

Byte models (docs/attention.md):
- unfused: getkern.tools.traffic.count_torch_traffic over attention_reference on CPU tensors at B=2
  (CPU SDPA runs one flash kernel, as CUDA SDPA does), scaled by B/2 (every tensor has a leading B).
- fused, op level: each kernel reads its inputs and writes its outputs once (the same model).
- fused, tile level: every tile load the kernels issue (K/V re-read once per query block in the
  forward, Q/dO and K/V once per block in the backward): the L2 request count, an upper bound on
  device-memory bytes.
- floor: read qkv, c, u once, write out once.

`python benchmarks/test_attention_bench.py` prints the table in docs/attention.md.
"""
from __future__ import annotations

import math

import pytest
import torch

from getkern.ops.attention import attention_config, attention_reference, fused_attention
from getkern.tools.traffic import Traffic, count_torch_traffic

GET_B = dict(B=128, N=256, D=768, H=12)
DTYPE = torch.bfloat16
COUNT_BATCH = 2


def _inputs(B, N, D, dtype, device, requires_grad=False):
    g = torch.Generator(device=device).manual_seed(0)
    qkv, u = (torch.randn(B, N, 3 * D, generator=g, device=device, dtype=dtype, requires_grad=requires_grad)
              for _ in range(2))
    c = torch.randn(B, 1, 3 * D, generator=g, device=device, dtype=dtype, requires_grad=requires_grad)
    return qkv, c, u


def unfused_traffic(B: int, N: int, D: int, H: int, dtype: torch.dtype, backward: bool) -> Traffic:
    """Counted bytes/launches of attention_reference (and its autograd backward), scaled from B=2."""
    qkv, c, u = _inputs(COUNT_BATCH, N, D, dtype, "cpu", requires_grad=backward)
    dout = torch.ones(COUNT_BATCH, N, D, dtype=dtype)  # made outside the count

    def run():
        out = attention_reference(qkv, H, c, u)
        if backward:
            out.backward(dout)

    _, t = count_torch_traffic(run)
    k = B // COUNT_BATCH
    return Traffic(t.bytes_read * k, t.bytes_written * k, t.launches, t.ops)


def fused_traffic(B: int, N: int, D: int, H: int, dtype: torch.dtype, arch: tuple[int, int],
                  backward: bool) -> dict[str, int]:
    """Bytes of the fused kernels with c and u present: op level and tile level (see module doc)."""
    s = torch.finfo(dtype).bits // 8
    dh = D // H
    cfg = attention_config(dh, dtype, arch)
    row = N * dh                                     # one head's q, k, v or out: elements
    c_tile = dh * s                                  # c is added on every tile load (L2-resident)
    in_row = row * 2 * s                             # a q/k/v tile's qkv + u bytes over all N rows
    op = B * (3 * N * D * 2 + 3 * D) * s + B * N * D * s + B * H * N * 4  # qkv, u, c; out; lse
    blocks_m = math.ceil(N / cfg.fwd_block_m)
    blocks_n = math.ceil(N / cfg.fwd_block_n)
    tile = B * H * (in_row + blocks_m * 2 * in_row                           # q once, k/v per q block
                    + blocks_m * (1 + 2 * blocks_n) * c_tile + row * s + N * 4)  # c; out; lse
    launches = 1
    if backward:
        # delta: read out, dout, write delta; bwd: read qkv, c, u, dout, lse, delta, write dqkv;
        # dc = token sum of dqkv (one torch reduction); d(qkv) and d(u) are the same tensor.
        stats = B * H * N * 4
        op += (2 * B * N * D * s + stats) + (B * (6 * N * D + 3 * D) * s + B * N * D * s + 2 * stats
                                             + 3 * B * N * D * s) + (3 * B * N * D * s + 3 * B * D * s)
        blocks = math.ceil(N / cfg.bwd_block_n1)
        per_head = (2 * row * s + N * 4                                       # delta kernel
                    + blocks * (in_row + row * s + 2 * N * 4)                 # dk/dv: all q, dout, stats
                    + 2 * in_row                                              # own k, v rows
                    + in_row + row * s + 2 * N * 4                            # dq: own q, dout, stats
                    + blocks * 2 * in_row                                     # dq: all k, v
                    + 3 * row * s)                                            # write dq, dk, dv
        tile += B * H * per_head + 3 * B * N * D * s + 3 * B * D * s          # + dc reduction
        launches += 4  # delta, bwd, the dc token sum and its cast to c.dtype
    return {"op_bytes": op, "tile_bytes": tile, "launches": launches}


def floor_bytes(B: int, N: int, D: int, dtype: torch.dtype) -> int:
    s = torch.finfo(dtype).bits // 8
    return (2 * B * N * 3 * D + B * 3 * D + B * N * D) * s


def traffic_rows() -> list[dict]:
    B, N, D, H = GET_B.values()
    floor = floor_bytes(B, N, D, DTYPE)
    rows = []
    for backward in (False, True):
        mode = "fwd+bwd" if backward else "fwd"
        t = unfused_traffic(B, N, D, H, DTYPE, backward)
        rows.append(dict(provider="unfused (adds + SDPA)", mode=mode, bytes=t.bytes, launches=t.launches))
        for arch in ((8, 0), (9, 0)):
            f = fused_traffic(B, N, D, H, DTYPE, arch, backward)
            rows.append(dict(provider=f"fused, op level, sm_{arch[0]}{arch[1]} config", mode=mode,
                             bytes=f["op_bytes"], launches=f["launches"]))
            rows.append(dict(provider=f"fused, tile level, sm_{arch[0]}{arch[1]} config", mode=mode,
                             bytes=f["tile_bytes"], launches=f["launches"]))
    for r in rows:
        r["x_floor"] = r["bytes"] / floor
    return rows


def test_fused_forward_moves_within_1p2x_of_the_floor():
    B, N, D, H = GET_B.values()
    floor = floor_bytes(B, N, D, DTYPE)
    for arch in ((8, 0), (9, 0)):
        assert fused_traffic(B, N, D, H, DTYPE, arch, backward=False)["op_bytes"] <= 1.2 * floor
    assert fused_traffic(B, N, D, H, DTYPE, (9, 0), backward=False)["tile_bytes"] <= 1.2 * floor


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("provider", ["fused", "unfused"])
def test_attention_get_b(benchmark, provider, mode):
    B, N, D, H = GET_B.values()
    backward = mode == "fwd+bwd"
    benchmark.group = f"attention GET-B {mode}"
    if not torch.cuda.is_available():
        benchmark.extra_info["note"] = "no GPU: counted traffic; the time is that of the counting"
        if provider == "fused":
            info = fused_traffic(B, N, D, H, DTYPE, (9, 0), backward)
            benchmark.extra_info.update(info)
            benchmark.pedantic(fused_traffic, args=(B, N, D, H, DTYPE, (9, 0), backward), rounds=1)
        else:
            t = benchmark.pedantic(unfused_traffic, args=(B, N, D, H, DTYPE, backward), rounds=1)
            benchmark.extra_info.update(bytes=t.bytes, launches=t.launches, ops=dict(t.ops))
        benchmark.extra_info["floor_bytes"] = floor_bytes(B, N, D, DTYPE)
        return
    qkv, c, u = _inputs(B, N, D, DTYPE, "cuda", requires_grad=backward)
    if provider == "fused":
        fn = lambda: fused_attention(qkv, H, c=c, u=u, backend="triton")  # noqa: E731
    else:
        fn = lambda: attention_reference(qkv, H, c, u)  # noqa: E731
    dout = torch.randn(B, N, D, device="cuda", dtype=DTYPE)

    def step():
        out = fn()
        if backward:
            out.backward(dout)
        torch.cuda.synchronize()

    benchmark.pedantic(step, warmup_rounds=3, rounds=20)


if __name__ == "__main__":
    B, N, D, H = GET_B.values()
    print(f"GET-B: B={B}, N={N}, D={D}, {H} heads, bf16; floor = {floor_bytes(B, N, D, DTYPE) / 1e6:.1f} MB")
    print("| provider | mode | MB | x floor | launches |\n|---|---|---:|---:|---:|")
    for r in traffic_rows():
        print(f"| {r['provider']} | {r['mode']} | {r['bytes'] / 1e6:.1f} | {r['x_floor']:.2f} | {r['launches']} |")
