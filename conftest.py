"""Shared by tests/ and benchmarks/: items marked ``cpp`` need the C++ extension.

It is built here if not cached (as on first use). Where it cannot be built they are skipped, except in
CI, where they run and fail.
"""
import os

import pytest


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("cpp") for item in items):
        return
    from getkern.deq import cpp_backend  # not at import: tests/conftest.py sets TRITON_INTERPRET first
    if cpp_backend.cpp_available(build=True) or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"the C++ extension cannot be built here: {cpp_backend._failure}")
    for item in items:
        if item.get_closest_marker("cpp"):
            item.add_marker(skip)
