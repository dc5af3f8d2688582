# The two front-door commands (see README):
#   make demo   set up a virtual environment, install getkern, run the main job on the embedded default
#   make test   set up the same environment and run every test suite
# and what CI adds (.ci/run):
#   make test-oldest   the Python suite and the code-generation gate on the oldest supported stack
#                      (the lent GPU machine's torch 2.11 + triton 3.6), in .venv-oldest
# A stack is a constraints file in .ci/ (exact versions; pyproject.toml declares ranges).
PYTHON ?= python3
STACK  ?= newest
VENV   ?= $(if $(filter newest,$(STACK)),.venv,.venv-$(STACK))
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip -q --disable-pip-version-check
export MAX_JOBS ?= 2
# pytest worker processes (pytest-xdist: idle workers steal queued tests); 0 runs them in this process.
TEST_JOBS ?= 2
export OMP_NUM_THREADS ?= 2
# The compiled C++ loop is cached per torch; keep this checkout's builds beside its venvs.
export GETKERN_EXTENSION_CACHE ?= $(CURDIR)/build/extension
CONSTRAINTS := .ci/constraints-$(STACK).txt
INSTALLED   := $(VENV)/.getkern-installed

.PHONY: setup demo test test-oldest lint test-python test-benchmarks test-cpp build-ext gpu-check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Exactly what the README tells users: pip install -e . (isolated build; nothing compiled at install).
# PIP_CONSTRAINT pins the stack (and replaces any machine-wide constraint file).
$(INSTALLED): $(PY) pyproject.toml $(CONSTRAINTS)
	PIP_CONSTRAINT=$(CONSTRAINTS) $(PIP) install -e ".[test]"
	touch $@

setup: $(INSTALLED)

demo: setup
	$(PY) -m getkern demo

test: setup lint build-ext test-python test-benchmarks test-cpp gpu-check

# Lint and formatting (ruff, settings in pyproject.toml); `ruff format` and `ruff check --fix` repair most.
lint: setup
	$(VENV)/bin/ruff check getkern tests benchmarks
	$(VENV)/bin/ruff format --check getkern tests benchmarks

# The slow parts (benchmarks as tests, ctest) run once, on the newest stack.
test-oldest:
	$(MAKE) STACK=oldest setup build-ext test-python gpu-check

# Compile the C++ loop now, so its build time shows here and not inside the first test that needs it.
build-ext: setup
	$(PY) -m getkern build-ext

test-python: setup
	@echo "== pytest tests on the $(STACK) stack: $$($(PY) -c 'import torch, triton, numpy; print("torch", torch.__version__, "triton", triton.__version__, "numpy", numpy.__version__)')"
	$(PY) -m pytest tests -q -n $(TEST_JOBS) --dist worksteal

# Benchmarks run once as plain tests so they cannot rot; `make bench` measures.
test-benchmarks: setup
	$(PY) -m pytest benchmarks -q --benchmark-disable -n $(TEST_JOBS) --dist worksteal

# C++ unit tests of getkern/csrc/ (CMake against the venv's libtorch, CPU part only; see docs/cpp.md).
test-cpp: setup
	cmake -S . -B build/cmake -DGETKERN_PYTHON=$(abspath $(PY)) -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	cmake --build build/cmake -j $(MAX_JOBS)
	ctest --test-dir build/cmake --output-on-failure

# Code-generation gate: every Triton kernel and getkern/csrc/*.cu compiled for sm_80 and sm_90 (docs/gpu.md).
gpu-check: setup
	@echo "== code-generation gate on the $(STACK) stack: triton $$($(PY) -c 'import triton; print(triton.__version__)')"
	$(PY) -m getkern.tools.gpu_check --log-dir build/gpu_check-$(STACK)

bench: setup
	$(PY) -m pytest benchmarks --benchmark-only

clean:
	rm -rf build *.egg-info .venv .venv-*
