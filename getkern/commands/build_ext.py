"""``getkern build-ext``: compile the C++/CUDA solver loop (otherwise compiled on first use of
``backend="cpp"``) and the CPU operators (otherwise compiled on the first CPU forward that uses them)
into the per-torch cache now, and say where they are.

    getkern build-ext                 # MAX_JOBS and TORCH_CUDA_ARCH_LIST are honoured
    getkern build-ext --verbose
"""

from __future__ import annotations

from getkern.commands._common import command_parser


def add_parser(sub) -> None:
    p = command_parser(
        sub,
        "build-ext",
        __doc__,
        help="compile the C++/CUDA solver loop and CPU operators now (otherwise on first use)",
    )
    p.add_argument("--verbose", action="store_true", help="show the compiler's commands and output")
    p.set_defaults(func=run)


def run(args) -> int:
    from getkern import _extension  # imports torch: not for --help

    return _extension.main(["--verbose"] if args.verbose else [])
