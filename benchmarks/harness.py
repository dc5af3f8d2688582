"""What the benchmark files share: the GPU clock, the numerics rule, the dtypes, and the summary store.

Imported as ``harness`` (benchmarks/conftest.py puts this folder on sys.path, so it imports under any
pytest import mode; ``python benchmarks/test_*_bench.py`` finds it beside the script). Nothing here
needs a GPU to import.

- :class:`CudaEventTimer` and :func:`time_on_gpu` (the ``gpu_timed`` fixture): a GPU case's table row
  is device time measured with CUDA events, L2 flushed before every round, warm-up excluded; see
  benchmarks/conftest.py for the whole recipe.
- :func:`check_numerics`: the project's accuracy rule, once per GPU case, before timing.
- :data:`SUMMARY`: the answer of each benchmark question, printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

GPU = torch.cuda.is_available()
NOT_TIMED = "no GPU: counted traffic reported in the summary, nothing timed"
# The fused-kernel benchmarks run both dtypes (on CPU they count both); whole models are timed in
# both on a GPU and in fp32 only on CPU (bf16 matmuls on a CPU measure nothing this project ships).
KERNEL_DTYPES = (torch.bfloat16, torch.float32)
MODEL_DTYPES = KERNEL_DTYPES if GPU else (torch.float32,)
L2_FLUSH_BYTES = 256 * 2**20  # > the L2 of any current GPU (H100 50 MiB, H200 60 MiB, B200 126 MiB)
TF32_EPS = 2.0**-10  # TF32 keeps 10 mantissa bits


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.float64: "fp64"}[dtype]


def fp32_matmul() -> str:
    """What fp32 means for matmuls under torch's current setting: "tf32" or "ieee"."""
    from getkern._backend import cuda_fp32_matmul_is_tf32

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return "tf32" if cuda_fp32_matmul_is_tf32() else "ieee"


def precision_info(dtype: torch.dtype) -> dict:
    """extra_info of a GPU case: its dtype and, for fp32, whether matmuls ran in TF32."""
    info = {"dtype": dtype_name(dtype)}
    if dtype == torch.float32:
        info["fp32_matmul"] = fp32_matmul()
    return info


# ------------------------------------------------------------------------------------- GPU clock
class CudaEventTimer:
    """A pytest-benchmark timer on the GPU's clock.

    Each reading records a CUDA event on the current stream, waits for it, and returns the seconds of
    device time since the first reading (summed interval by interval in Python floats, so a long run
    keeps CUDA's 0.5 us event resolution). pytest-benchmark computes ``end - start`` around the target,
    so a round's figure is the device time from the moment the GPU was idle before the target's first
    launch to the completion of its last kernel: host launch gaps inside the target count (they are
    part of what the op costs), work queued before the start reading does not.
    """

    __name__ = "cuda_event_timer"  # the name pytest-benchmark writes as the JSON's options.timer

    def __init__(self, event: Callable | None = None):
        self._event = event or (lambda: torch.cuda.Event(enable_timing=True))
        self._last = None
        self._seconds = 0.0

    def __call__(self) -> float:
        ev = self._event()
        ev.record()
        ev.synchronize()
        if self._last is not None:
            self._seconds += self._last.elapsed_time(ev) / 1e3
        self._last = ev
        return self._seconds


_FLUSH: dict = {}


def l2_flush_buffer() -> torch.Tensor:
    if "buf" not in _FLUSH:
        _FLUSH["buf"] = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    return _FLUSH["buf"]


def device_seconds(fn, device: torch.device) -> float:
    """One call's duration: CUDA events on a GPU (L2 flushed first), the wall clock on CPU."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    timer = CudaEventTimer()
    l2_flush_buffer().zero_()
    t0 = timer()
    fn()
    return timer() - t0


def time_on_gpu(
    benchmark,
    fn,
    *,
    rounds: int = 20,
    min_rounds: int = 3,
    warmup_rounds: int = 2,
    budget_s: float = 1.0,
    grads: tuple = (),
    cross_check: bool = True,
) -> float | None:
    """Time ``fn`` on the GPU's clock through ``benchmark.pedantic`` (what the ``gpu_timed`` fixture
    calls); returns the median seconds (None under --benchmark-disable, after one call).

    1. One call outside everything (Triton compiles and autotunes), then one call timed with events:
       the rounds are cut to ``budget_s`` of timed work (at least ``min_rounds``, at most ``rounds``).
    2. ``benchmark._timer`` (pytest-benchmark reads it when it builds each round's runner, in 4.x and
       5.x) becomes a :class:`CudaEventTimer`; without that attribute the target synchronizes and the
       wall clock times it (``extra_info["clock"]`` says which).
    3. ``setup`` (untimed, before every round, warm-up included) sets each tensor of ``grads``' .grad to
       None (no accumulation kernel in a backward) and writes a 256 MiB buffer, so the L2 serves no
       round its inputs; warm-up rounds are excluded from the statistics.
    4. Cross-check: triton.testing.do_bench's median (its own L2 flush, its own clock) in
       ``extra_info["do_bench_median_s"]``, where triton imports and a call is short enough to fit.
    """
    if benchmark.disabled:
        return benchmark.pedantic(fn)
    fn()
    torch.cuda.synchronize()
    for t in grads:
        t.grad = None
    one = device_seconds(fn, torch.device("cuda"))
    n = int(max(min_rounds, min(rounds, budget_s / max(one, 1e-6))))
    flush = l2_flush_buffer()

    def setup():
        for t in grads:
            t.grad = None
        flush.zero_()

    if hasattr(benchmark, "_timer"):
        benchmark._timer = CudaEventTimer()
        target, clock = fn, "CUDA events"
    else:

        def target():
            fn()
            torch.cuda.synchronize()

        clock = "wall clock, synchronized (this pytest-benchmark has no _timer to replace)"
    benchmark.extra_info.update(
        clock=clock, l2_flush_bytes=L2_FLUSH_BYTES, rounds=n, warmup_rounds=warmup_rounds, first_timed_call_s=one
    )
    benchmark.pedantic(target, setup=setup, rounds=n, warmup_rounds=warmup_rounds)
    median = benchmark.stats.stats.median
    if cross_check:
        try:
            from triton.testing import do_bench
        except ImportError:
            benchmark.extra_info["do_bench_median_s"] = "triton not importable"
        else:
            if 8 * one <= budget_s:  # do_bench runs >= 7 calls (5 to estimate, then warm-up and repeats)

                def bench_fn():
                    for t in grads:
                        t.grad = None
                    fn()

                ms = do_bench(bench_fn, warmup=25, rep=100, return_mode="median")
                benchmark.extra_info["do_bench_median_s"] = ms / 1e3
            else:
                benchmark.extra_info["do_bench_median_s"] = f"skipped: one call takes {one:.3f} s"
    return median


# ------------------------------------------------------------------------------------- numerics
def _flat(x) -> list:
    if x is None:
        return []
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _flat(v)]
    return [t for v in x for t in _flat(v)]


def rule(got, same, exact, *, ulps: float = 8.0) -> dict:
    """The project's accuracy rule (tests/test_models_fused.py, docs/gpu-validate.md): the fused
    result's max error against float64 is at most 2x the PyTorch path's own error in the same dtype,
    plus a floor of ``ulps`` rounding units (TF32's for fp32 under TF32 matmuls) of the largest float64
    magnitude (8 for outputs, 64 for gradients), and it is finite. Returns {err, own, bound, ok}."""
    exact = exact.detach().double()
    err = float((got.detach().double() - exact).abs().max())
    own = float((same.detach().double() - exact).abs().max())
    unit = TF32_EPS if (got.dtype == torch.float32 and fp32_matmul() == "tf32") else torch.finfo(got.dtype).eps
    bound = 2 * own + ulps * unit * float(exact.abs().max())
    ok = bool(torch.isfinite(got).all()) and err <= bound
    return {"err": err, "own": own, "bound": bound, "ok": ok}


def check_numerics(benchmark, outputs: dict, grads: dict | None = None) -> dict:
    """Apply :func:`rule` to each ``name: (fused, torch same dtype, float64)`` of ``outputs`` (8 ulps)
    and ``grads`` (64 ulps); record the numbers in ``extra_info["numerics"]``; fail the test on any
    violation. A name's three entries may be tensors or matching sequences of tensors."""
    numbers, failures = {}, []
    for group, ulps in ((outputs, 8.0), (grads or {}, 64.0)):
        for name, (got, same, exact) in group.items():
            got, same, exact = _flat(got), _flat(same), _flat(exact)
            assert len(got) == len(same) == len(exact), f"{name}: {len(got)}/{len(same)}/{len(exact)} tensors"
            for i, (g, s, e) in enumerate(zip(got, same, exact)):
                key = name if len(got) == 1 else f"{name}[{i}]"
                r = numbers[key] = rule(g, s, e, ulps=ulps)
                if not r["ok"]:
                    failures.append(
                        f"{key}: error {r['err']:.3g} > bound {r['bound']:.3g} "
                        f"(2 x torch path's {r['own']:.3g} + floor)"
                    )
    benchmark.extra_info["numerics"] = numbers
    assert not failures, "numerics (fused vs PyTorch path, both against float64): " + "; ".join(failures)
    return numbers


def model_numerics(model: torch.nn.Module, call: Callable, inputs: tuple, images: int = 4) -> dict:
    """check_numerics' ``outputs`` for a whole model: ``call(model, *inputs)`` on the model as built
    (the Triton path on a GPU), on a copy with every backend "torch" (blocks and solver loop) in the
    same dtype, and on that copy in float64, for the first ``images`` samples of each input."""
    import copy

    same = copy.deepcopy(model).set_backend("torch")
    if hasattr(same, "solver_backend"):
        same.solver_backend = "torch"
    exact = copy.deepcopy(same).double()
    dtype = next(model.parameters()).dtype
    head = [x[:images] if isinstance(x, torch.Tensor) else x for x in inputs]

    def run(m, dt):
        with torch.inference_mode():
            return call(m, *[x.to(dt) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in head])

    return {"out": (run(model, dtype), run(same, dtype), run(exact, torch.float64))}


@contextlib.contextmanager
def no_grad_if(flag: bool):
    with torch.no_grad() if flag else contextlib.nullcontext():
        yield


# ------------------------------------------------------------------------------------- summary
def fmt_seconds(s: float) -> str:
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


@dataclass
class Subject:
    """One question of the summary: rows by label, and how to turn them into its line(s)."""

    name: str
    question: str
    rows: dict = field(default_factory=dict)
    order: tuple = ()
    baseline: str | None = None
    render: Callable | None = None


class Summary:
    """Session-wide answers, by question (benchmark.group): each benchmark ``put``s its row; at the
    end conftest's pytest_terminal_summary prints one line per subject (and the JSON gets them)."""

    def __init__(self):
        self.subjects: dict[str, Subject] = {}

    def put(
        self,
        subject: str,
        label: str,
        *,
        question: str | None = None,
        order: tuple = (),
        baseline: str | None = None,
        render: Callable | None = None,
        **facts,
    ) -> None:
        s = self.subjects.setdefault(subject, Subject(subject, question or subject))
        s.rows[label] = facts
        s.order = order or s.order
        s.baseline = baseline or s.baseline
        s.render = render or s.render

    def put_timed(self, benchmark, subject: str, label: str, clock: str, **kw) -> None:
        """A timed row: the benchmark's median (None when nothing was timed)."""
        stats = getattr(benchmark, "stats", None)
        seconds = stats.stats.median if stats else None
        self.put(subject, label, question=benchmark.group, seconds=seconds, clock=clock, **kw)

    def lines(self) -> list[str]:
        out = []
        for s in self.subjects.values():
            rendered = (s.render or versus)(s)
            out.extend([rendered] if isinstance(rendered, str) else list(rendered))
        return [line for line in out if line]

    def as_json(self) -> dict:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return str(v)
            return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)

        return {
            "lines": self.lines(),
            "subjects": {
                s.name: {
                    "question": s.question,
                    "rows": {label: {k: clean(v) for k, v in row.items()} for label, row in s.rows.items()},
                }
                for s in self.subjects.values()
            },
        }


SUMMARY = Summary()


def ordered(s: Subject) -> list[tuple[str, dict]]:
    labels = [lb for lb in s.order if lb in s.rows] + [lb for lb in s.rows if lb not in s.order]
    return [(lb, s.rows[lb]) for lb in labels]


def versus(s: Subject) -> str:
    """Default line: timed rows as "a 0.41 ms vs b 1.20 ms (clock, median); speed-up vs b: a 2.93x";
    counted rows (a ``counted`` text each) as "counted ...: a ... vs b ... (not timed: no GPU)"."""
    rows = ordered(s)
    missing = [lb for lb in s.order if lb not in s.rows]
    tail = f" [{', '.join(missing)} not run]" if missing else ""
    if rows and all("counted" in r for _, r in rows):
        what = rows[0][1].get("what", "bytes")
        return (
            f"{s.name}: counted {what}, "
            + " vs ".join(f"{lb} {r['counted']}" for lb, r in rows)
            + f" (not timed: no GPU){tail}"
        )
    timed = [(lb, r) for lb, r in rows if r.get("seconds") is not None]
    if not timed:
        return f"{s.name}: not timed (--benchmark-disable){tail}"
    clocks = sorted({r["clock"] for _, r in timed})
    text = f"{s.name}: " + " vs ".join(f"{lb} {fmt_seconds(r['seconds'])}" for lb, r in timed)
    text += f" ({'; '.join(clocks)}, median)"
    base = s.rows.get(s.baseline) if s.baseline else None
    if base and base.get("seconds"):
        ups = [f"{lb} {base['seconds'] / r['seconds']:.2f}x" for lb, r in timed if lb != s.baseline]
        if ups:
            text += f"; speed-up vs {s.baseline}: " + ", ".join(ups)
    return text + tail
