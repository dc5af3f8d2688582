"""Package attributes imported on first use, so importing a package (and ``getkern --help``) stays
light: ``__getattr__, __dir__ = lazy_exports(__name__, {"Name": "module.path", ...}, __all__)``."""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, table: dict[str, str], names: list[str]):
    def __getattr__(name: str):
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            setattr(sys.modules[package], name, value)  # later lookups skip this hook
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
