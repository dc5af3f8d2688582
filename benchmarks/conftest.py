"""Shared options for ``pytest benchmarks/ --benchmark-only``.

No TRITON_INTERPRET here: benchmarks measure real paths (PyTorch/C++ on CPU; Triton on CUDA), never
the interpreter. ``--full`` runs the paper's sizes (batch 128 on a GPU); the default is sized for a
2-core CPU (the whole default run stays well under 10 minutes there).
"""
import os

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", default=False,
                     help="benchmark at the paper's sizes (slow on CPU)")


@pytest.fixture(scope="session")
def full(request) -> bool:
    return bool(request.config.getoption("--full"))


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    machine_info["triton_interpret"] = os.environ.get("TRITON_INTERPRET")

