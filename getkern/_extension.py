"""getkern's C++/CUDA extension (getkern/csrc/: the DEQ solver loop) and its CPU operators
(getkern/csrc/cpu_ops/: short-sequence attention), compiled on first use.

Installing getkern compiles nothing (so ``pip install -e .`` and ``pip install .`` work with pip's
isolated build and any supported torch). The extension is compiled with ``torch.utils.cpp_extension``
(ninja) the first time the C++ loop is asked for, or ahead of time with ``getkern build-ext``, into a
cache folder keyed by everything the binary depends on: Python, torch (version and CUDA version), the
CUDA architectures and a digest of the sources and flags. Another torch is another folder, so an
extension built for one torch is never loaded into another.

The CPU operators are a library of their own: only ATen's thread pool and torch's op registry are
included, so they compile in about 30-60 s on 2 cores (33 s measured), and the default CPU path builds them on first use (saying
so once) rather than waiting for ``getkern build-ext``. They register ``torch.ops.getkern_cpu``.

Environment:
  GETKERN_CPU_OPS=0        never build or use the CPU operators (the PyTorch path runs instead)
  GETKERN_EXTENSION_CACHE  cache root (default ``$XDG_CACHE_HOME/getkern/extension``, else ``~/.cache/...``)
  GETKERN_CUDA=0|1         leave the CUDA part out / require it (default: with a CUDA torch and a toolkit)
  CUDA_HOME                toolkit root (default: from the nvcc on PATH, which may be a wrapper script)
  TORCH_CUDA_ARCH_LIST     default: the visible GPUs' architectures, or "8.0;9.0" without a GPU
  MAX_JOBS                 parallel compile jobs (default: the CPU count)
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from getkern.errors import GetkernError

SOURCE_DIR = Path(__file__).parent / "csrc"
CPU_OPS_DIR = SOURCE_DIR / "cpu_ops"
MODULE_NAME = "getkern_C"
CPU_OPS_NAME = "getkern_cpu_ops"
CXX_FLAGS = ["-O3"]
NVCC_FLAGS = ["-O3", "--expt-relaxed-constexpr"]


class ExtensionError(GetkernError, RuntimeError):
    """The extension cannot be built or loaded here (the message says why)."""


@dataclass(frozen=True)
class BuildPlan:
    """What one build of the extension is made of; ``key`` names its cache folder."""

    sources: tuple[Path, ...]
    with_cuda: bool
    cuda_home: str | None
    archs: str  # TORCH_CUDA_ARCH_LIST, "" for a CPU-only build
    why_no_cuda: str | None  # why the CUDA part is left out (None when it is built)

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(SOURCE_DIR.glob("*.[ch]*")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        digest.update(repr((CXX_FLAGS, NVCC_FLAGS, self.with_cuda, self.archs)).encode())
        cuda = f"cu{torch.version.cuda}-sm{self.archs.replace(';', '_').replace('.', '')}" if self.with_cuda else "cpu"
        return (
            f"py{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__.replace('+', '_')}"
            f"-{cuda}-{digest.hexdigest()[:12]}"
        )

    @property
    def directory(self) -> Path:
        return cache_root() / self.key


def cache_root() -> Path:
    if os.environ.get("GETKERN_EXTENSION_CACHE"):
        return Path(os.environ["GETKERN_EXTENSION_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "getkern" / "extension"


def find_cuda_home() -> str | None:
    """The toolkit root: CUDA_HOME, else the nvcc on PATH (a wrapper script that execs the real one is
    followed; torch's own guess takes the wrapper's folder)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    head = Path(nvcc).read_bytes()[:4096]
    match = re.search(rb"exec\s+(\S+/bin/nvcc)", head) if head.startswith(b"#!") else None
    real = Path(match.group(1).decode()) if match else Path(nvcc).resolve()
    return str(real.parent.parent) if real.exists() else None


def nvcc_version(cuda_home: str) -> str | None:
    """ "13.0" from ``nvcc --version`` of the toolkit, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(Path(cuda_home) / "bin" / "nvcc"), "--version"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def _default_archs() -> str:
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ";".join(f"{major}.{minor}" for major, minor in caps)
    return "8.0;9.0"


@functools.cache  # settings are read once per process; the solver asks every call
def plan() -> BuildPlan:
    cpp = tuple(sorted(SOURCE_DIR.glob("*.cpp")))
    cu = tuple(sorted(SOURCE_DIR.glob("*.cu")))
    want = os.environ.get("GETKERN_CUDA", "auto")
    cuda_home = find_cuda_home()
    why = None
    if want == "0":
        why = "GETKERN_CUDA=0"
    elif torch.version.cuda is None:
        why = "this torch is a CPU-only build"
    elif cuda_home is None:
        why = "no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)"
    elif (nvcc := nvcc_version(cuda_home)) != ".".join(torch.version.cuda.split(".")[:2]):
        # torch's wheels bring their CUDA's headers; another nvcc release refuses them
        why = f"nvcc {nvcc} in {cuda_home} is not this torch's CUDA {torch.version.cuda}"
    if why is not None and want == "1":
        raise ExtensionError(f"GETKERN_CUDA=1 but the CUDA part cannot be built: {why}")
    if why is not None:
        return BuildPlan(cpp, False, None, "", why)
    return BuildPlan(cpp + cu, True, cuda_home, _default_archs(), None)


def _say(message: str) -> None:
    print(f"getkern: {message}", file=sys.stderr, flush=True)


def build(quiet: bool = False, verbose: bool = False):
    """Compile (or find in the cache) and import the extension; returns the module."""
    p = plan()
    p.directory.mkdir(parents=True, exist_ok=True)
    stamp = p.directory / "getkern-build.json"
    from torch.utils import cpp_extension  # here: importing it takes ~0.5 s and logs a CUDA_HOME warning

    if not quiet and not stamp.exists():
        part = f"CPU + CUDA part for sm {p.archs}" if p.with_cuda else f"CPU part only ({p.why_no_cuda})"
        _say(
            f"compiling the C++ solver loop, {part}, once for this torch (about 1 min on 2 cores, "
            f"a few with CUDA) into {p.directory}"
        )
    saved_env = {k: os.environ.get(k) for k in ("CUDA_HOME", "TORCH_CUDA_ARCH_LIST", "MAX_JOBS")}
    start = time.perf_counter()
    try:
        os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 2))
        if p.with_cuda:
            os.environ["CUDA_HOME"], cpp_extension.CUDA_HOME = p.cuda_home, p.cuda_home
            os.environ["TORCH_CUDA_ARCH_LIST"] = p.archs
        # torch's pip wheels carry the CUDA headers a partial toolkit lacks (cuBLAS, cuSOLVER, ...).
        includes = [str(SOURCE_DIR), *map(str, Path(torch.__file__).parent.parent.glob("nvidia/cu*/include"))]
        defines = ["-DGETKERN_WITH_CUDA"] if p.with_cuda else []
        module = cpp_extension.load(
            name=MODULE_NAME,
            sources=[str(s) for s in p.sources],
            build_directory=str(p.directory),
            extra_cflags=CXX_FLAGS + defines,
            extra_cuda_cflags=NVCC_FLAGS + defines,
            extra_include_paths=includes,
            with_cuda=p.with_cuda,
            verbose=verbose,
        )
    except Exception as error:  # compiler missing, compile error, ...: the message names the cause
        raise ExtensionError(f"building the C++ extension in {p.directory} failed: {error}") from error
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _check_loaded(module, p)
    if not stamp.exists():
        stamp.write_text(
            json.dumps(
                {
                    "torch": torch.__version__,
                    "cuda": torch.version.cuda,
                    "with_cuda": p.with_cuda,
                    "archs": p.archs,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            + "\n"
        )
        if not quiet:
            _say(f"C++ solver loop built in {time.perf_counter() - start:.0f} s")
    return module


def _check_loaded(module, p: BuildPlan) -> None:
    """The loaded binary must be the one this torch and plan asked for (never a silent mismatch)."""
    built_for = getattr(module, "torch_version", None)
    if built_for != torch.__version__.split("+")[0] or bool(getattr(module, "with_cuda", False)) != p.with_cuda:
        raise ExtensionError(
            f"the loaded extension was built for torch {built_for}, this is torch "
            f"{torch.__version__}: delete {p.directory} and build again"
        )
    if not hasattr(module, "solve"):
        raise ExtensionError(f"the extension in {p.directory} has no solver loop (an old build): delete it")


def cached() -> bool:
    """Whether a finished build for this torch and these sources is in the cache (importing it is then
    quick; nothing would be compiled)."""
    try:
        return (plan().directory / "getkern-build.json").exists()
    except ExtensionError:
        return False


def cpu_ops_flags() -> list[str]:
    """With an OpenMP torch, ATen's parallel_for is an inline ``#pragma omp parallel``: without
    -fopenmp it would run on one thread. The libgomp it links is torch's own (same soname, already
    loaded), so there is one thread pool."""
    return CXX_FLAGS + (["-fopenmp"] if "OpenMP" in torch.__config__.parallel_info() else [])


def cpu_ops_directory() -> Path:
    """Cache folder of the CPU operators: this Python and torch, a digest of their sources and flags."""
    digest = hashlib.sha256(repr(cpu_ops_flags()).encode())
    for path in sorted(CPU_OPS_DIR.glob("*.[ch]*")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return cache_root() / (
        f"cpu-ops-py{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__.replace('+', '_')}"
        f"-{digest.hexdigest()[:12]}"
    )


def cpu_ops_enabled() -> bool:
    return os.environ.get("GETKERN_CPU_OPS", "1") != "0"


@functools.cache  # one build (or one failure) per process
def build_cpu_ops(quiet: bool = False, verbose: bool = False) -> Path:
    """Compile (or find in the cache) getkern/csrc/cpu_ops/ and load it: its operators are then in
    ``torch.ops.getkern_cpu``. Returns the cache folder; raises ExtensionError when it cannot."""
    if not cpu_ops_enabled():
        raise ExtensionError("GETKERN_CPU_OPS=0")
    directory = cpu_ops_directory()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / "getkern-build.json"
    if not quiet and not stamp.exists():
        _say(f"compiling getkern's CPU operators once for this torch (about 30-60 s on 2 cores) into {directory}")
    from torch.utils import cpp_extension  # here: importing it takes ~0.5 s and logs a CUDA_HOME warning

    start = time.perf_counter()
    try:
        cpp_extension.load(
            name=CPU_OPS_NAME,
            sources=[str(s) for s in sorted(CPU_OPS_DIR.glob("*.cpp"))],
            build_directory=str(directory),
            extra_cflags=cpu_ops_flags(),
            extra_ldflags=["-fopenmp"] if "-fopenmp" in cpu_ops_flags() else [],
            is_python_module=False,
            with_cuda=False,
            verbose=verbose,
        )
    except Exception as error:  # compiler missing, compile error, ...: the message names the cause
        raise ExtensionError(f"building getkern's CPU operators in {directory} failed: {error}") from error
    if not stamp.exists():
        seconds = round(time.perf_counter() - start, 1)
        stamp.write_text(json.dumps({"torch": torch.__version__, "seconds": seconds}) + "\n")
        if not quiet:
            _say(f"CPU operators built in {seconds:.0f} s")
    return directory


def main(argv: list[str] | None = None) -> int:
    """``getkern build-ext`` / ``python -m getkern._extension``."""
    parser = argparse.ArgumentParser(
        prog="getkern build-ext",
        description="Compile getkern's C++/CUDA solver "
        "loop and its CPU operators now (otherwise they are compiled on first use) and say where they are cached.",
    )
    parser.add_argument("--verbose", action="store_true", help="show the compiler's commands and output")
    args = parser.parse_args(argv)
    try:
        module = build(verbose=args.verbose)
        cpu_ops = build_cpu_ops(verbose=args.verbose) if cpu_ops_enabled() else None
    except ExtensionError as error:
        print(f"getkern build-ext: {error}", file=sys.stderr)
        return 1
    p = plan()
    cuda = f"yes, sm {p.archs}" if module.with_cuda else f"no ({p.why_no_cuda})"
    print(f"getkern build-ext: ready in {p.directory} (CUDA part: {cuda})")
    print(f"getkern build-ext: CPU operators {'in ' + str(cpu_ops) if cpu_ops else 'off (GETKERN_CPU_OPS=0)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
