"""LayerNorm + MLP of the GET block: fused Triton paths vs the unfused PyTorch sequence, per DEQ
block iteration at GET-B shapes (inference).

The work: LN1 of the block input x (it feeds the qkv projection), s = x + a (a: attention output),
h = LN2(s), out = s + fc2(GELU(fc1(h))). Three providers, each also running the qkv projection
(so all three do the same work, and LN1 can live in its prologue):

- unfused: the PyTorch sequence (F.layer_norm, F.linear, +, F.gelu);
- per-op: getkern's per-module ops: LN1, qkv (cuBLAS), add+LN2, fc1+GELU, fc2+residual;
- prologue: layer_norm_linear (LN1 in the qkv matmul's prologue) and add_layer_norm_mlp (LN2 in
  fc1's prologue, x + a in fc2's epilogue): the Block's Triton path.

With a GPU, in bf16 and fp32: the numerics of both fused paths (qkv and the block output) against the
unfused sequence, both against float64 (harness.check_numerics), then the three timed on the GPU's
clock (the gpu_timed fixture of conftest.py). Without one: the counted bytes and launches go to the
run's summary and the test skips; nothing is timed.
Counting (docs/layernorm_mlp.md): unfused = getkern.profiling.traffic.count_torch_traffic on meta
tensors (every ATen op reads its inputs and writes its outputs once); fused = each launch reads
each input tensor once and writes each output once (the model tests/test_ops_ln_linear.py checks
against the interpreter's distinct-byte counter). Two scopes:

- "LN+MLP": the issue's sequence, without the qkv matmul on either side (on the prologue path
  LN1 costs no launch: it runs inside the qkv launch, which both paths have anyway);
- "with qkv": the qkv projection counted on both sides.

`python benchmarks/test_ln_mlp_bench.py` prints the table in docs/layernorm_mlp.md.
"""

from __future__ import annotations

import harness
import pytest
import torch
import torch.nn.functional as F

from getkern.ops.layernorm import layer_norm
from getkern.ops.ln_linear import layer_norm_linear
from getkern.ops.ln_mlp import add_layer_norm_mlp
from getkern.ops.mlp import mlp
from getkern.profiling.traffic import count_torch_traffic

GET_B = dict(B=128, N=256, D=768, ratio=12)
DTYPE = torch.bfloat16


def _inputs(B, N, D, ratio, dtype, device):
    """x, a (B, N, D) and the parameters of LN1, qkv, LN2 and the MLP."""
    H = D * ratio
    g = torch.Generator(device=device).manual_seed(0) if device != "meta" else None
    make = (
        (lambda *s: torch.empty(*s, device="meta", dtype=dtype))
        if device == "meta"
        else (lambda *s: torch.randn(*s, generator=g, device=device, dtype=dtype))
    )
    x, a = make(B, N, D), make(B, N, D)
    params = dict(
        n1w=make(D),
        n1b=make(D),
        wqkv=make(3 * D, D) / D**0.5,
        bqkv=make(3 * D),
        n2w=make(D),
        n2b=make(D),
        w1=make(H, D) / D**0.5,
        b1=make(H),
        w2=make(D, H) / H**0.5,
        b2=make(D),
    )
    return x, a, params


def unfused_step(x, a, p, qkv: bool = True):
    h1 = F.layer_norm(x, x.shape[-1:], p["n1w"], p["n1b"], 1e-6)
    first = F.linear(h1, p["wqkv"], p["bqkv"]) if qkv else h1
    s = x + a
    h = F.layer_norm(s, s.shape[-1:], p["n2w"], p["n2b"], 1e-6)
    return first, s + F.linear(F.gelu(F.linear(h, p["w1"], p["b1"])), p["w2"], p["b2"])


def per_op_step(x, a, p):
    qkv = F.linear(layer_norm(x, p["n1w"], p["n1b"], backend="triton"), p["wqkv"], p["bqkv"])
    s, h = layer_norm(a, p["n2w"], p["n2b"], residual=x, backend="triton")
    return qkv, mlp(h, p["w1"], p["b1"], p["w2"], p["b2"], residual=s, backend="triton")


def prologue_step(x, a, p):
    qkv = layer_norm_linear(x, p["n1w"], p["n1b"], p["wqkv"], p["bqkv"], backend="triton")
    return qkv, add_layer_norm_mlp(x, a, p["n2w"], p["n2b"], p["w1"], p["b1"], p["w2"], p["b2"], backend="triton")


def unfused_traffic(B, N, D, ratio, dtype, qkv: bool) -> dict[str, int]:
    x, a, p = _inputs(B, N, D, ratio, dtype, "meta")
    _, t = count_torch_traffic(unfused_step, x, a, p, qkv=qkv)
    return {"bytes": t.bytes, "launches": t.launches}


def fused_traffic(B, N, D, ratio, dtype, path: str, qkv: bool) -> dict[str, int]:
    """Bytes and launches of per_op_step / prologue_step from the kernels' access patterns
    (inference: no pre-activation; the per-op LayerNorms write fp32 mean and rstd per row)."""
    e = torch.finfo(dtype).bits // 8
    M, H = B * N, D * ratio
    act, hid, stats, vec = M * D * e, M * H * e, 2 * M * 4, D * e
    wqkv = 3 * D * D * e + 3 * D * e
    w1, w2 = H * D * e + H * e, D * H * e + D * e
    qkv_out = 3 * act
    if path == "per_op":
        launches = {
            "ln1": act + 2 * vec + act + stats,  # read x, w, b; write h1, mean, rstd
            "add_ln2": 2 * act + 2 * vec + 2 * act + stats,  # read x, a, w, b; write s, h, stats
            "fc1_gelu": act + w1 + hid,  # read h, W1, b1; write GELU(fc1)
            "fc2_residual": hid + w2 + act + act,  # read act, W2, b2, s; write out
        }
        if qkv:
            launches["qkv (cuBLAS)"] = act + wqkv + qkv_out
    else:
        launches = {
            "fc1 with add+LN2 prologue": 2 * act + 2 * vec + w1 + hid,  # read x, a, LN2, W1, b1
            "fc2 with x + a epilogue": hid + w2 + 2 * act + act,  # read act, W2, b2, x, a
        }
        if qkv:  # read x, LN1 w, b, Wqkv, bqkv; write qkv
            launches["qkv with LN1 prologue"] = act + 2 * vec + wqkv + qkv_out
        else:  # LN1 rides in the qkv launch outside this scope; it adds only its gamma and beta
            launches["(LN1 inside qkv)"] = 2 * vec
    return {"bytes": sum(launches.values()), "launches": sum(1 for name in launches if not name.startswith("("))}


def test_prologue_path_meets_the_targets():
    """<= 0.6x the unfused bytes, >= 3x fewer launches (LN+MLP scope); counts of both scopes."""
    for dtype in (torch.bfloat16, torch.float32):
        for qkv, launches in ((False, (2, 4, 7)), (True, (3, 5, 8))):
            u = unfused_traffic(**GET_B, dtype=dtype, qkv=qkv)
            p = fused_traffic(**GET_B, dtype=dtype, path="prologue", qkv=qkv)
            o = fused_traffic(**GET_B, dtype=dtype, path="per_op", qkv=qkv)
            assert (p["launches"], o["launches"], u["launches"]) == launches
            assert p["bytes"] <= 0.6 * u["bytes"] and p["bytes"] < o["bytes"]
            if not qkv:
                assert u["launches"] >= 3 * p["launches"]


STEPS = {"prologue": prologue_step, "per_op": per_op_step, "unfused": unfused_step}
LABELS = {"prologue": "prologue", "per_op": "per-op", "unfused": "unfused"}
SCOPES = (("ln_mlp", False), ("with_qkv", True))


def counted_row(provider: str, dtype: torch.dtype) -> dict:
    """The summary's counted facts of one provider, both scopes."""
    if provider == "unfused":
        t = {scope: unfused_traffic(**GET_B, dtype=dtype, qkv=qkv) for scope, qkv in SCOPES}
    else:
        t = {scope: fused_traffic(**GET_B, dtype=dtype, path=provider, qkv=qkv) for scope, qkv in SCOPES}
    u = {scope: unfused_traffic(**GET_B, dtype=dtype, qkv=qkv) for scope, qkv in SCOPES}
    ratio = lambda scope: t[scope]["bytes"] / u[scope]["bytes"]  # noqa: E731
    detail = f"{t['ln_mlp']['bytes'] / 1e6:.0f} MB" if provider == "unfused" else f"{ratio('with_qkv'):.2f}x with qkv"
    return dict(
        ln_mlp=t["ln_mlp"],
        with_qkv=t["with_qkv"],
        what="bytes vs unfused (LN+MLP scope)",
        counted=f"{ratio('ln_mlp'):.2f}x ({detail}; {t['ln_mlp']['launches']} launches)",
    )


def numerics(provider: str, dtype: torch.dtype, device, shape=GET_B) -> None | dict:
    """qkv and the block output of a fused path vs the unfused sequence in ``dtype``, both against the
    unfused sequence in float64 on the same inputs (None for the unfused reference itself)."""
    if provider == "unfused":
        return None
    x, a, p = _inputs(**shape, dtype=dtype, device=device)
    x64, a64, p64 = x.double(), a.double(), {k: v.double() for k, v in p.items()}
    with torch.no_grad():
        fused, same, exact = STEPS[provider](x, a, p), unfused_step(x, a, p), unfused_step(x64, a64, p64)
    return dict(outputs={"qkv": (fused[0], same[0], exact[0]), "out": (fused[1], same[1], exact[1])})


@pytest.mark.parametrize("dtype", harness.KERNEL_DTYPES, ids=harness.dtype_name)
@pytest.mark.parametrize("provider", ["prologue", "per_op", "unfused"])
def test_ln_mlp_get_b(benchmark, gpu_timed, summary, provider, dtype):
    subject = f"LN1+qkv, LN2+MLP GET-B block iteration {harness.dtype_name(dtype)} (inference)"
    benchmark.group = f"{subject}: prologue vs per-op vs unfused"
    key = dict(question=benchmark.group, order=("prologue", "per-op", "unfused"), baseline="unfused")
    if not torch.cuda.is_available():
        summary.put(subject, LABELS[provider], **key, **counted_row(provider, dtype))
        pytest.skip(harness.NOT_TIMED)
    benchmark.extra_info.update(harness.precision_info(dtype), provider=provider, **GET_B)
    checks = numerics(provider, dtype, "cuda")
    if checks:
        harness.check_numerics(benchmark, **checks)
    x, a, p = _inputs(**GET_B, dtype=dtype, device="cuda")
    step = STEPS[provider]

    def run():
        with torch.no_grad():
            step(x, a, p)

    gpu_timed(run, rounds=20)
    summary.put_timed(benchmark, subject, LABELS[provider], "CUDA events", **key)


if __name__ == "__main__":
    B, N, D, ratio = GET_B.values()
    print(f"GET-B: B={B}, N={N}, D={D}, MLP {ratio}x (M = {B * N} tokens, H = {D * ratio})")
    print("| scope | dtype | provider | MB | launches | bytes vs unfused | launches vs unfused |")
    print("|---|---|---|---:|---:|---:|---:|")
    for scope, qkv in (("LN+MLP", False), ("with qkv", True)):
        for dtype in (torch.bfloat16, torch.float32):
            u = unfused_traffic(**GET_B, dtype=dtype, qkv=qkv)
            rows = (
                ("unfused PyTorch", u),
                ("per-op Triton", fused_traffic(**GET_B, dtype=dtype, path="per_op", qkv=qkv)),
                ("prologue Triton", fused_traffic(**GET_B, dtype=dtype, path="prologue", qkv=qkv)),
            )
            for name, t in rows:
                print(
                    f"| {scope} | {str(dtype).removeprefix('torch.')} | {name} | "
                    f"{t['bytes'] / 1e6:.1f} | {t['launches']} | {t['bytes'] / u['bytes']:.3f}x | "
                    f"{u['launches'] / t['launches']:.2f}x fewer |"
                )
