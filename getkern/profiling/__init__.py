"""Runtime measurement: the solver-iterations profiler behind ``getkern profile`` (quality, residual, time
and memory per solver setting), and the measures it, the study and the benchmarks use: memory of a step
(:mod:`~getkern.profiling.memory`), device-memory traffic and launches of PyTorch ops and Triton kernels
(:mod:`~getkern.profiling.traffic`) and FLOPs with the custom ops counted (:mod:`~getkern.profiling.flops`).

The public names load on first use, so importing one measure does not import the others.
"""

from __future__ import annotations

from getkern._lazy import lazy_exports

_PUBLIC = {
    "ProfileReport": "getkern.profiling.profiler",
    "REFERENCE_SETTING": "getkern.profiling.profiler",
    "check_settings": "getkern.profiling.profiler",
    "profile_model": "getkern.profiling.profiler",
    "LiveTensorPeak": "getkern.profiling.memory",
    "peak_step_memory": "getkern.profiling.memory",
    "saved_activation_bytes": "getkern.profiling.memory",
    "training_step_memory": "getkern.profiling.memory",
    "Traffic": "getkern.profiling.traffic",
    "TrafficCounter": "getkern.profiling.traffic",
    "TritonTrafficCounter": "getkern.profiling.traffic",
    "count_torch_traffic": "getkern.profiling.traffic",
    "count_triton_traffic": "getkern.profiling.traffic",
    "count_flops": "getkern.profiling.flops",
}
__all__ = list(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, __all__)
