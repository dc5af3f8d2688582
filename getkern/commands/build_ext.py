"""``getkern build-ext``: compile the C++/CUDA solver loop now (it is otherwise compiled on first use of
``backend="cpp"``) into the per-torch cache, and say where it is.

    getkern build-ext                 # MAX_JOBS and TORCH_CUDA_ARCH_LIST are honoured
    getkern build-ext --verbose
"""

from __future__ import annotations

from getkern.commands._common import command_parser


def add_parser(sub) -> None:
    p = command_parser(sub, "build-ext", __doc__, help="compile the C++/CUDA solver loop now (otherwise on first use)")
    p.add_argument("--verbose", action="store_true", help="show the compiler's commands and output")
    p.set_defaults(func=run)


def run(args) -> int:
    from getkern import _extension  # imports torch: not for --help

    return _extension.main(["--verbose"] if args.verbose else [])
