"""Fused attention vs the unfused sequence (qkv + c + u, F.scaled_dot_product_attention) at GET-B shapes.

With a GPU: times both providers, forward and forward+backward. Without one: the benchmark records the
counted bytes and launches in extra_info and times only the counting (not attention).

Byte models (docs/attention.md):
- unfused: getkern.tools.traffic.count_torch_traffic over attention_reference on CPU tensors at B=2
  (CPU SDPA runs one flash kernel, as CUDA SDPA does), scaled by B/2 (every tensor has a leading B).
- fused: getkern.ops.attention.fused_attention_traffic, op level and tile level (checked against
  getkern.tools.traffic.count_triton_traffic under the interpreter in tests/test_ops_attention.py).
- floor: read qkv, c, u once, write out once.

`python benchmarks/test_attention_bench.py` prints the table in docs/attention.md.
"""
from __future__ import annotations

import pytest
import torch

from getkern.ops.attention import attention_reference, fused_attention, fused_attention_traffic
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
            f = fused_attention_traffic(B, N, D, H, DTYPE, arch, backward)
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
        assert fused_attention_traffic(B, N, D, H, DTYPE, arch, backward=False)["op_bytes"] <= 1.2 * floor
    assert fused_attention_traffic(B, N, D, H, DTYPE, (9, 0), backward=False)["tile_bytes"] <= 1.2 * floor


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("provider", ["fused", "unfused"])
def test_attention_get_b(benchmark, provider, mode):
    B, N, D, H = GET_B.values()
    backward = mode == "fwd+bwd"
    benchmark.group = f"attention GET-B {mode}"
    if not torch.cuda.is_available():
        benchmark.extra_info["note"] = "no GPU: counted traffic; the time is that of the counting"
        if provider == "fused":
            info = fused_attention_traffic(B, N, D, H, DTYPE, (9, 0), backward)
            benchmark.extra_info.update(info)
            benchmark.pedantic(fused_attention_traffic, args=(B, N, D, H, DTYPE, (9, 0), backward), rounds=1)
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
