"""What every subcommand shares: the parser layout (description with examples, defaults shown),
the options with one name and meaning everywhere, and output-location checks made before any work.

Conventions: ``--out`` is where a command writes (a folder, or a file where it writes one);
``--checkpoint`` is a model to read (any kind: see ``getkern.load``); ``--device`` is ``auto``
(cuda when available) or a torch device; ``--no-progress`` silences progress bars; ``--debug``
shows tracebacks for the errors otherwise reported in one line.
Nothing here imports torch: ``getkern --help`` must stay fast.
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from getkern.errors import UsageError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples' line breaks and show every option's default."""


def command_parser(sub, name: str, doc: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose description is its module docstring (summary line, then examples)."""
    description = re.sub(r"^``getkern [\w-]+``: ", "", doc.strip())
    p = sub.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return p


def add_out(p, help: str, *, default: str | None = None) -> None:
    p.add_argument("--out", type=Path, required=default is None, default=None if default is None else Path(default),
                   metavar="PATH", help=help)


def add_checkpoint(p, help: str = "a model: save_pretrained folder, training run folder, training .pt, "
                                  "or the reference's .pth", *, required: bool = True) -> None:
    p.add_argument("--checkpoint", type=Path, required=required, default=None, metavar="PATH", help=help)


def add_device(p) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N")


def add_backend(p) -> None:
    p.add_argument("--backend", choices=("auto", "triton", "torch"), default="auto",
                   help="fused block kernels: auto picks the fastest that runs here")


def add_progress(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when available, else cpu; anything else is checked by torch."""
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"--device {name!r}: not a device ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: torch sees no CUDA device here (use cpu or auto)")
    return name


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_out_dir(path: Path, flag: str = "--out") -> Path:
    """Refuse an output folder that cannot be created or written, before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: exists and is not a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UsageError(f"{flag} {path}: {base} is a file, so the folder cannot be created")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: {base} is not writable")
    return path


def check_out_file(path: Path, flag: str = "--out") -> Path:
    """Refuse an output file whose folder cannot be created or written, or that names a folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; expected a file name")
    check_out_dir(path.parent, flag=f"{flag} {path}: folder")
    return path
