"""The CPU inference kernels one at a time, on each instruction set's copy this CPU runs: the per-op
figures of docs/results/cpu-speed.md ("Eighth session") and docs/cpp.md.

- LayerNorm: F.layer_norm against getkern.ops.cpu_layernorm, at the digits GET's 9600 x 64 and GET-T/2's
  4096 x 256 (batch 16);
- attention forward (getkern.ops.cpu_attention, no gradient): GFLOP/s at GET-T/2's 16 x 256 tokens x 4
  heads of 64 and the digits GET's 600 x 16 tokens x 4 heads of 16;
- fc1 and its exact GELU (getkern.ops.cpu_epilogues): the bare oneDNN matmul, the matmul then getkern's
  in-place GELU, and oneDNN's GELU post-op, at 4096 x 256 -> 1536 and 9600 x 64 -> 256.

Best and median of ``--calls`` timed calls each, interleaved, after one warm-up call; these shared
machines are noisy, so compare figures of one run only. Only getkern's kernels change copy between rows:
ATen and oneDNN run at the CPU's widest (hold them to AVX2 with ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2 in the environment).

    OMP_NUM_THREADS=2 python benchmarks/cpu_kernels_timing.py [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from getkern.ops import cpu_attention, cpu_epilogues, cpu_gelu, cpu_layernorm, cpu_library


def timed(procedures: dict, calls: int) -> dict[str, tuple[float, float]]:
    """(best, median) seconds per call of each procedure, one call of each per round."""
    for fn in procedures.values():
        fn()
    times = {name: [] for name in procedures}
    for _ in range(calls):
        for name, fn in procedures.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def us(pair) -> str:
    return f"{1e6 * pair[0]:.0f} / {1e6 * pair[1]:.0f} us"


def rows(isa: str, calls: int):
    gen = torch.Generator().manual_seed(0)
    for m, d in ((9600, 64), (4096, 256)):
        x, w, b = torch.randn(m, d, generator=gen), torch.randn(d, generator=gen), torch.randn(d, generator=gen)
        t = timed(
            {
                "aten": lambda: F.layer_norm(x, (d,), w, b, 1e-6),
                "kernel": lambda: cpu_layernorm.cpu_layer_norm(x, w, b, 1e-6),
            },
            calls,
        )
        yield f"| {isa} | LayerNorm {m} x {d} | ATen {us(t['aten'])} | kernel {us(t['kernel'])} |"
    for batch, n, heads, head_dim in ((16, 256, 4, 64), (600, 16, 4, 16)):
        qkv = torch.randn(batch, n, 3 * heads * head_dim, generator=gen)
        t = timed({"kernel": lambda: cpu_attention.cpu_attention(qkv, heads)}, calls)["kernel"]
        flop = 4 * batch * heads * n * n * head_dim
        yield (
            f"| {isa} | attention {batch} x {n} tokens x {heads} heads of {head_dim} | "
            f"{flop / t[0] / 1e9:.0f} GFLOP/s best | {flop / t[1] / 1e9:.0f} GFLOP/s median |"
        )
    if cpu_epilogues._AVAILABLE:
        for m, k, n in ((4096, 256, 1536), (9600, 64, 256)):
            x = torch.randn(m, k, generator=gen)
            w, b = torch.randn(n, k, generator=gen) / k**0.5, torch.randn(n, generator=gen)
            t = timed(
                {
                    "bare": lambda: cpu_epilogues.onednn_linear(x, w, b),
                    "in place": lambda: cpu_gelu.gelu_(cpu_epilogues.onednn_linear(x, w, b)),
                    "post-op": lambda: cpu_epilogues.onednn_linear(x, w, b, gelu=True),
                },
                calls,
            )
            yield (
                f"| {isa} | fc1 {m} x {k} -> {n} + GELU | bare {us(t['bare'])} | "
                f"in place {us(t['in place'])}, post-op {us(t['post-op'])} |"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args()
    if not cpu_library.available():
        raise SystemExit("cpu_kernels_timing: getkern's CPU operators could not be built or loaded")
    print(f"{torch.get_num_threads()} threads; best / median of {args.calls} calls")
    print("| copy | what | | |\n|---|---|---|---|")
    before = cpu_library.isa()
    with torch.no_grad():
        for isa in cpu_library.instruction_sets()[1:]:  # the baseline copy is not taken by "auto"
            cpu_library.use_instruction_set(isa)
            for row in rows(isa, args.calls):
                print(row)
    cpu_library.use_instruction_set(before)


if __name__ == "__main__":
    main()
