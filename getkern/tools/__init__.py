"""Developer tools, outside the library core (only the commands and other tools import them): the
code-generation gate (gpu_check), the GPU validation run (gpu_validate*), the robustness probes (probes*),
the roofline model (roofline) and the generated-docs helper (docs_section). Runtime measurement (memory,
traffic, FLOPs) is getkern.profiling."""
