"""Fused attention vs the unfused sequence (qkv + c + u, F.scaled_dot_product_attention) at GET-B shapes.

With a GPU, in bf16 and fp32: the numerics of the fused op (output, and gradients in fwd+bwd) against
the PyTorch sequence, both against float64 (harness.check_numerics), then both providers timed on the
GPU's clock (CUDA events, L2 flushed per round: the gpu_timed fixture of conftest.py). Without one:
the counted bytes and launches go to the run's summary and the test skips; nothing is timed.

Byte models (docs/attention.md):
- unfused: getkern.profiling.traffic.count_torch_traffic over attention_reference on CPU tensors at B=2
  (CPU SDPA runs one flash kernel, as CUDA SDPA does), scaled by B/2 (every tensor has a leading B).
- fused: getkern.ops.attention.fused_attention_traffic, op level and tile level (checked against
  getkern.profiling.traffic.count_triton_traffic under the interpreter in tests/test_ops_attention.py).
- floor: read qkv, c, u once, write out once.

`python benchmarks/test_attention_bench.py` prints the table in docs/attention.md.
"""

from __future__ import annotations

import harness
import pytest
import torch

from getkern.ops.attention import attention_reference, fused_attention, fused_attention_traffic
from getkern.profiling.traffic import Traffic, count_torch_traffic

GET_B = dict(B=128, N=256, D=768, H=12)
DTYPE = torch.bfloat16
COUNT_BATCH = 2


def _inputs(B, N, D, dtype, device, requires_grad=False):
    g = torch.Generator(device=device).manual_seed(0)
    qkv, u = (
        torch.randn(B, N, 3 * D, generator=g, device=device, dtype=dtype, requires_grad=requires_grad) for _ in range(2)
    )
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
            rows.append(
                dict(
                    provider=f"fused, op level, sm_{arch[0]}{arch[1]} config",
                    mode=mode,
                    bytes=f["op_bytes"],
                    launches=f["launches"],
                )
            )
            rows.append(
                dict(
                    provider=f"fused, tile level, sm_{arch[0]}{arch[1]} config",
                    mode=mode,
                    bytes=f["tile_bytes"],
                    launches=f["launches"],
                )
            )
    for r in rows:
        r["x_floor"] = r["bytes"] / floor
    return rows


def test_fused_forward_moves_within_1p2x_of_the_floor():
    B, N, D, H = GET_B.values()
    floor = floor_bytes(B, N, D, DTYPE)
    for arch in ((8, 0), (9, 0)):
        assert fused_attention_traffic(B, N, D, H, DTYPE, arch, backward=False)["op_bytes"] <= 1.2 * floor
    assert fused_attention_traffic(B, N, D, H, DTYPE, (9, 0), backward=False)["tile_bytes"] <= 1.2 * floor


def counted_row(provider: str, mode: str, dtype: torch.dtype) -> dict:
    """The summary's counted facts of one provider (fused: the sm_90 configuration)."""
    B, N, D, H = GET_B.values()
    backward = mode == "fwd+bwd"
    floor = floor_bytes(B, N, D, dtype)
    if provider == "fused":
        f = fused_attention_traffic(B, N, D, H, dtype, (9, 0), backward)
        return dict(
            bytes=f["op_bytes"],
            tile_bytes=f["tile_bytes"],
            launches=f["launches"],
            floor_bytes=floor,
            counted=f"{f['op_bytes'] / floor:.2f}x floor (tile level {f['tile_bytes'] / floor:.2f}x, "
            f"sm_90 config; {f['launches']} launch{'es' if f['launches'] > 1 else ''})",
        )
    t = unfused_traffic(B, N, D, H, dtype, backward)
    return dict(
        bytes=t.bytes,
        launches=t.launches,
        floor_bytes=floor,
        counted=f"{t.bytes / floor:.2f}x floor ({t.launches} launches)",
    )


def numerics(provider: str, mode: str, dtype: torch.dtype, device, shape=GET_B) -> None | dict:
    """The fused op's output (and gradients of qkv, c, u) vs the PyTorch sequence in ``dtype``, both
    against float64 on the same inputs; returns check_numerics' arguments (None for the reference)."""
    if provider != "fused":
        return None
    B, N, D, H = shape.values()
    backward = mode == "fwd+bwd"
    g = torch.Generator(device=device).manual_seed(1)
    lowp = [t.to(dtype) for t in _inputs(B, N, D, torch.float32, device)]  # float64 sees the same values
    dout = torch.randn(B, N, D, generator=g, device=device).to(dtype)

    def run(fn, dt):
        ts = [t.to(dt, copy=True).requires_grad_(backward) for t in lowp]
        with harness.no_grad_if(not backward):
            out = fn(*ts)
        if backward:
            out.backward(dout.to(dt))
        return out.detach(), [t.grad for t in ts]

    fused = run(lambda q, c, u: fused_attention(q, H, c=c, u=u, backend="triton"), dtype)
    same = run(lambda q, c, u: attention_reference(q, H, c, u), dtype)
    exact = run(lambda q, c, u: attention_reference(q, H, c, u), torch.float64)
    grads = {f"d{n}": (fused[1][i], same[1][i], exact[1][i]) for i, n in enumerate(("qkv", "c", "u"))}
    return dict(outputs={"out": (fused[0], same[0], exact[0])}, grads=grads if backward else None)


@pytest.mark.parametrize("dtype", harness.KERNEL_DTYPES, ids=harness.dtype_name)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("provider", ["fused", "unfused"])
def test_attention_get_b(benchmark, gpu_timed, summary, provider, mode, dtype):
    B, N, D, H = GET_B.values()
    backward = mode == "fwd+bwd"
    subject = f"attention GET-B {mode} {harness.dtype_name(dtype)}"
    benchmark.group = f"{subject}: fused vs unfused"
    key = dict(question=benchmark.group, order=("fused", "unfused"), baseline="unfused")
    if not torch.cuda.is_available():
        summary.put(subject, provider, **key, **counted_row(provider, mode, dtype))
        pytest.skip(harness.NOT_TIMED)
    benchmark.extra_info.update(harness.precision_info(dtype), provider=provider, mode=mode, **GET_B)
    checks = numerics(provider, mode, dtype, "cuda")
    if checks:
        harness.check_numerics(benchmark, **checks)
    qkv, c, u = _inputs(B, N, D, dtype, "cuda", requires_grad=backward)
    if provider == "fused":
        fn = lambda: fused_attention(qkv, H, c=c, u=u, backend="triton")  # noqa: E731
    else:
        fn = lambda: attention_reference(qkv, H, c, u)  # noqa: E731
    dout = torch.randn(B, N, D, device="cuda", dtype=dtype)

    def step():
        with harness.no_grad_if(not backward):
            out = fn()
        if backward:
            out.backward(dout)

    gpu_timed(step, rounds=20, grads=(qkv, c, u) if backward else ())
    summary.put_timed(benchmark, subject, provider, "CUDA events", **key)


if __name__ == "__main__":
    B, N, D, H = GET_B.values()
    print(f"GET-B: B={B}, N={N}, D={D}, {H} heads, bf16; floor = {floor_bytes(B, N, D, DTYPE) / 1e6:.1f} MB")
    print("| provider | mode | MB | x floor | launches |\n|---|---|---:|---:|---:|")
    for r in traffic_rows():
        print(f"| {r['provider']} | {r['mode']} | {r['bytes'] / 1e6:.1f} | {r['x_floor']:.2f} | {r['launches']} |")
