# The two front-door commands (see README):
#   make demo   set up a virtual environment, install getkern, run the main job on the embedded default
#   make test   set up the same environment and run every test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip -q --disable-pip-version-check
export MAX_JOBS ?= 2
export OMP_NUM_THREADS ?= 2

# torch first: the C++ extension is built against it (pip install --no-build-isolation).
BUILD_DEPS := torch==2.14.1 "numpy>=1.26,<3" setuptools wheel ninja==1.13.2 pybind11==3.1.0
INSTALLED  := $(VENV)/.getkern-installed

.PHONY: setup demo test test-python test-benchmarks test-cpp gpu-check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(PY) pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/*.cu csrc/*.cuh)
	$(PIP) install $(BUILD_DEPS)
	$(PIP) install --no-build-isolation -e ".[test]"
	touch $@

setup: $(INSTALLED)

demo: setup
	$(PY) -m getkern demo

test: setup test-python test-benchmarks test-cpp gpu-check

test-python: setup
	$(PY) -m pytest tests -q

# Benchmarks run once as plain tests so they cannot rot; `make bench` measures.
test-benchmarks: setup
	$(PY) -m pytest benchmarks -q --benchmark-disable

# C++ unit tests of csrc/ (CMake against the venv's libtorch, CPU part only; see docs/cpp.md).
test-cpp: setup
	cmake -S . -B build/cmake -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	cmake --build build/cmake -j $(MAX_JOBS)
	ctest --test-dir build/cmake --output-on-failure

# Code-generation gate: every Triton kernel and csrc/*.cu compiled for sm_80 and sm_90 (docs/gpu.md).
gpu-check: setup
	$(PY) -m getkern.tools.gpu_check

bench: setup
	$(PY) -m pytest benchmarks --benchmark-only

clean:
	rm -rf build *.egg-info getkern/*.so $(VENV)
