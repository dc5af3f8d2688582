"""Builds getkern's C++ extension (getkern._C) from csrc/.

The CPU part is always built. The CUDA part (csrc/*.cu) is built when a CUDA build of torch and a CUDA
toolkit are present; otherwise it is skipped with a message. Environment:
  GETKERN_CUDA=0|1       force the CUDA part off / on (default: auto-detect)
  CUDA_HOME              toolkit root (default: resolved from the nvcc on PATH, which may be a wrapper)
  TORCH_CUDA_ARCH_LIST   default "8.0;9.0" (no GPU here to detect one)
  MAX_JOBS               default 2
"""
import glob
import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent


def find_cuda_home():
    """The toolkit root; the nvcc on PATH here is a wrapper script that execs the real one."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    text = Path(nvcc).read_bytes()[:4096]
    match = re.search(rb"exec\s+(\S+/bin/nvcc)", text) if text.startswith(b"#!") else None
    real = Path(match.group(1).decode()) if match else Path(nvcc).resolve()
    return str(real.parent.parent) if real.exists() else None


def extensions():
    import torch
    from torch.utils import cpp_extension

    os.environ.setdefault("MAX_JOBS", "2")
    cpp = sorted(glob.glob("csrc/*.cpp"))
    cu = sorted(glob.glob("csrc/*.cu"))
    want = os.environ.get("GETKERN_CUDA", "auto")
    cuda_home = find_cuda_home()
    reason = None
    if want == "0":
        reason = "GETKERN_CUDA=0"
    elif torch.version.cuda is None:
        reason = "this torch is a CPU-only build"
    elif cuda_home is None:
        reason = "no CUDA toolkit found (set CUDA_HOME)"
    if reason is not None:
        if want == "1":
            sys.exit(f"getkern: GETKERN_CUDA=1 but the CUDA part cannot be built: {reason}")
        print(f"getkern: building the CPU extension only; CUDA part skipped: {reason}", flush=True)
        return [cpp_extension.CppExtension("getkern._C", cpp, extra_compile_args={"cxx": ["-O3"]})]

    os.environ["CUDA_HOME"] = cuda_home
    cpp_extension.CUDA_HOME = cuda_home
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    # The toolkit here is partial; torch's pip wheels carry the remaining CUDA headers.
    nvidia_include = [str(p) for p in Path(torch.__file__).parent.parent.glob("nvidia/cu*/include")]
    print(f"getkern: building CPU + CUDA extension (CUDA_HOME={cuda_home}, "
          f"archs {os.environ['TORCH_CUDA_ARCH_LIST']})", flush=True)
    return [cpp_extension.CUDAExtension(
        "getkern._C", cpp + cu, include_dirs=nvidia_include, define_macros=[("GETKERN_WITH_CUDA", None)],
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-Xptxas", "-v", "--expt-relaxed-constexpr"]})]


def cmdclass():
    from torch.utils.cpp_extension import BuildExtension
    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(ext_modules=extensions(), cmdclass=cmdclass())
