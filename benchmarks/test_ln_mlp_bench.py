"""Fused LayerNorm + MLP vs the unfused PyTorch sequence, per DEQ block iteration at GET-B shapes.

The path: h1 = LN1(x) (feeds attention); s = x + a; h = LN2(s); out = s + fc2(GELU(fc1(h))).
With a GPU: times both providers (inference forward). Without one: records the counted bytes and
launches in extra_info and times only the counting.

Byte models (docs/layernorm_mlp.md):
- unfused: getkern.tools.traffic.count_torch_traffic over the PyTorch sequence on meta tensors
  (nothing is computed; every ATen op reads its inputs and writes its outputs once).
- fused: the same model applied to the four Triton launches' access patterns (each kernel reads each
  input and writes each output once; tile re-reads of the matmul operands are L2 hits).

`python benchmarks/test_ln_mlp_bench.py` prints the table in docs/layernorm_mlp.md.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from getkern.ops.layernorm import layer_norm
from getkern.ops.mlp import mlp
from getkern.tools.traffic import count_torch_traffic

GET_B = dict(B=128, N=256, D=768, ratio=12)
DTYPE = torch.bfloat16


def _inputs(B, N, D, ratio, dtype, device):
    """x, a (B, N, D) and the parameters of LN1, LN2 and the MLP."""
    H = D * ratio
    g = torch.Generator(device=device).manual_seed(0) if device != "meta" else None
    make = ((lambda *s: torch.empty(*s, device="meta", dtype=dtype)) if device == "meta" else
            (lambda *s: torch.randn(*s, generator=g, device=device, dtype=dtype)))
    x, a = make(B, N, D), make(B, N, D)
    params = dict(n1w=make(D), n1b=make(D), n2w=make(D), n2b=make(D), w1=make(H, D) / D ** 0.5,
                  b1=make(H), w2=make(D, H) / H ** 0.5, b2=make(D))
    return x, a, params


def unfused_step(x, a, p):
    h1 = F.layer_norm(x, x.shape[-1:], p["n1w"], p["n1b"], 1e-6)
    s = x + a
    h = F.layer_norm(s, s.shape[-1:], p["n2w"], p["n2b"], 1e-6)
    return h1, s + F.linear(F.gelu(F.linear(h, p["w1"], p["b1"])), p["w2"], p["b2"])


def fused_step(x, a, p):
    h1 = layer_norm(x, p["n1w"], p["n1b"], backend="triton")
    s, h = layer_norm(a, p["n2w"], p["n2b"], residual=x, backend="triton")
    return h1, mlp(h, p["w1"], p["b1"], p["w2"], p["b2"], residual=s, backend="triton")


def unfused_traffic(B, N, D, ratio, dtype) -> dict[str, int]:
    x, a, p = _inputs(B, N, D, ratio, dtype, "meta")
    _, t = count_torch_traffic(unfused_step, x, a, p)
    return {"bytes": t.bytes, "launches": t.launches}


def fused_traffic(B, N, D, ratio, dtype) -> dict[str, int]:
    """Bytes and launches of fused_step from the kernels' access patterns (inference: the MLP
    does not write its pre-activation; the LN kernels write fp32 mean and rstd per row)."""
    e = torch.finfo(dtype).bits // 8
    M, H = B * N, D * ratio
    act, hid, stats = M * D * e, M * H * e, 2 * M * 4
    ln1 = act + 2 * D * e + act + stats                  # read x, w, b; write y, mean, rstd
    add_ln2 = 2 * act + 2 * D * e + 2 * act + stats      # read x, a, w, b; write s, y, mean, rstd
    fc1 = act + H * D * e + H * e + hid                  # read h, W1, b1; write GELU(fc1)
    fc2 = hid + D * H * e + D * e + act + act            # read GELU(fc1), W2, b2, s; write out
    return {"bytes": ln1 + add_ln2 + fc1 + fc2, "launches": 4}


def test_fused_path_moves_at_most_0p6x_the_unfused_bytes():
    for dtype in (torch.bfloat16, torch.float32):
        fused, unfused = fused_traffic(**GET_B, dtype=dtype), unfused_traffic(**GET_B, dtype=dtype)
        assert fused["bytes"] <= 0.6 * unfused["bytes"]
        assert (fused["launches"], unfused["launches"]) == (4, 7)


@pytest.mark.parametrize("provider", ["fused", "unfused"])
def test_ln_mlp_get_b(benchmark, provider):
    benchmark.group = "LN+MLP GET-B block iteration (inference)"
    if not torch.cuda.is_available():
        benchmark.extra_info["note"] = "no GPU: counted traffic; the time is that of the counting"
        count = fused_traffic if provider == "fused" else unfused_traffic
        benchmark.extra_info.update(benchmark.pedantic(count, kwargs=dict(**GET_B, dtype=DTYPE),
                                                       rounds=1))
        return
    x, a, p = _inputs(**GET_B, dtype=DTYPE, device="cuda")
    step = fused_step if provider == "fused" else unfused_step

    def run():
        with torch.no_grad():
            step(x, a, p)
        torch.cuda.synchronize()

    benchmark.pedantic(run, warmup_rounds=3, rounds=20)


if __name__ == "__main__":
    B, N, D, ratio = GET_B.values()
    print(f"GET-B: B={B}, N={N}, D={D}, MLP {ratio}x (M = {B * N} tokens, H = {D * ratio})")
    print("| dtype | provider | MB | launches | bytes vs unfused | launches vs unfused |")
    print("|---|---|---:|---:|---:|---:|")
    for dtype in (torch.bfloat16, torch.float32):
        u, f = unfused_traffic(**GET_B, dtype=dtype), fused_traffic(**GET_B, dtype=dtype)
        for name, t in (("unfused PyTorch", u), ("fused Triton", f)):
            print(f"| {dtype} | {name} | {t['bytes'] / 1e6:.1f} | {t['launches']} | "
                  f"{t['bytes'] / u['bytes']:.3f}x | {u['launches'] / t['launches']:.2f}x fewer |")
