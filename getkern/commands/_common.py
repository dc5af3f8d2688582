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
import math
import os
import re
import stat
from pathlib import Path

from getkern.errors import UsageError

MAX_SEED = 2**63 - 1  # = getkern.distill.config.MAX_SEED (torch's generators take int64 seeds)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples' line breaks and show every option's default, unless its help already states
    it or there is none to show (a flag's False, an unset None)."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == ""  # (0.0 == False)
        if "default" in text or unset or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class ArgumentsError(UsageError):
    """The command line does not parse (an unknown option, a missing one, a value outside its range);
    ``prog`` is the parser's name ("getkern sample"), which the one-line error starts with."""

    def __init__(self, message: str, prog: str, usage: str = ""):
        super().__init__(message)
        self.prog, self.usage = prog, usage


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`ArgumentsError` instead of printing the usage and
    exiting, so ``getkern.cli.main`` reports them like every other user mistake: one line
    ``getkern <command>: error: --flag must be ..., got ...`` and exit code 2. Subcommand parsers made by
    ``add_subparsers`` inherit the class."""

    def error(self, message: str):
        # argparse says "argument --num: must be ..." for a type helper's refusal: say "--num must be ..."
        m = re.fullmatch(r"argument ([^:]+): (.*)", message, flags=re.S)
        if m:
            flag, rest = m.group(1).split("/")[-1], m.group(2)
            message = f"{flag} {rest}" if rest.startswith("must be ") else f"{flag}: {rest}"
        raise ArgumentsError(message, self.prog, self.format_usage())


# ---------------------------------------------------------------- number options (argparse ``type=``)
#
# Every numeric option of every command is checked when the command line is parsed, before any work:
# a refusal reads "--flag must be <what is allowed>, got <value>" (see Parser.error).


def _number(text: str, kind: type, allowed: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
    return value


def int_range(low: int | None = None, high: int | None = None, what: str = "an integer", note: str = ""):
    """An argparse type: an integer in [low, high] (either end open when None); ``note`` says why."""
    allowed = (
        f"{what} in [{low}, {high}]"
        if low is not None and high is not None
        else f"{what} >= {low}"
        if low is not None
        else f"{what} <= {high}"
        if high is not None
        else what
    )
    allowed += f" ({note})" if note else ""

    def parse(text: str) -> int:
        value = _number(text, int, allowed)
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(low: float | None = None, high: float | None = None, *, above: float | None = None):
    """An argparse type: a finite number in [low, high], or > ``above``."""
    start = f"[{low:g}" if low is not None else f"({above:g}" if above is not None else None
    if start is not None and high is not None:
        allowed = f"a finite number in {start}, {high:g}]"
    elif start is not None:
        allowed = f"a finite number {'>=' if low is not None else '>'} {start[1:]}"
    else:
        allowed = "a finite number" + (f" <= {high:g}" if high is not None else "")

    def parse(text: str) -> float:
        value = _number(text, float, allowed)
        if (
            (low is not None and value < low)
            or (high is not None and value > high)
            or (above is not None and not value > above)
        ):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value!r}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = int_range(1)
nonnegative_int = int_range(0)
finite_float = float_range()
positive_float = float_range(above=0)
nonnegative_float = float_range(low=0)
fraction = float_range(0.0, 1.0)


def seed(text: str) -> int:
    """An argparse type for every ``--seed``/``--first-seed``: an integer in [0, 2**63 - 1] (torch's
    generators take int64 seeds), as TrainConfig's ``seed`` field allows."""
    value = _number(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer <= {MAX_SEED} (a 64-bit seed), got {value}")
    return value


def nonempty_path(text: str) -> Path:
    """An argparse type for paths: refuses "" (which would silently mean the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("must be a path, got '' (write . for the current folder)")
    return Path(text)


def command_parser(sub, name: str, doc: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose description is its module docstring (summary line, then examples)."""
    description = re.sub(r"^``getkern [\w-]+``: ", "", doc.strip())
    p = sub.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return p


def add_out(p, help: str, *, default: str | None = None) -> None:
    p.add_argument(
        "--out",
        type=nonempty_path,
        required=default is None,
        default=None if default is None else Path(default),
        metavar="PATH",
        help=help,
    )


def add_checkpoint(
    p,
    help: str = "a model: save_pretrained folder, training run folder, training .pt, or the reference's .pth",
    *,
    required: bool = True,
) -> None:
    p.add_argument("--checkpoint", type=nonempty_path, required=required, default=None, metavar="PATH", help=help)


def add_device(p) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N")


def add_backend(p) -> None:
    p.add_argument(
        "--backend",
        choices=("auto", "triton", "torch"),
        default="auto",
        help="fused block kernels: auto picks the fastest that runs here",
    )


def add_progress(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_device(name: str, flag: str = "--device") -> str:
    """``auto`` -> cuda when available, else cpu; anything else must be a device torch has here
    (UsageError naming ``flag`` otherwise), checked before any work."""
    from getkern.distributed import check_device

    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(name, flag)
    return name


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def _kind(mode: int) -> str:
    return (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )


def check_out_dir(path: Path, flag: str = "--out") -> Path:
    """Refuse an output folder that cannot be created or written, before any work is done."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise UsageError(
            f"{flag} {path}: is a symbolic link to {os.readlink(path)}, which does not exist "
            "(create that folder, or use another path)"
        )
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: exists and is not a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UsageError(f"{flag} {path}: {base} is a file, so the folder cannot be created")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: {base} is not writable")
    return path


def check_out_file(path: Path, flag: str = "--out", inputs: tuple = ()) -> Path:
    """Refuse an output file whose folder cannot be created or written, that names a folder or an existing
    file that is not a regular one (a FIFO, a device: replacing it would break the machine), or that is
    one of the command's ``inputs`` (writing it would destroy what is read)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; expected a file name")
    if path.exists() and not path.is_file():
        raise UsageError(
            f"{flag} {path}: exists and is {_kind(path.stat().st_mode)}; expected a regular file or a new name"
        )
    for source in inputs:
        source = Path(source)
        if (
            path.exists()
            and source.exists()
            and os.path.samefile(path, source)
            or os.path.realpath(path) == os.path.realpath(source)
        ):
            raise UsageError(
                f"{flag} {path}: is the input {source}; writing it would destroy the input (choose another output file)"
            )
    check_out_dir(path.parent, flag=f"{flag} {path}: folder")
    return path
