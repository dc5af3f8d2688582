"""``getkern build-ext``: compile the C++/CUDA solver loop now (it is otherwise compiled on first use of
``backend="cpp"``) into the per-torch cache, and say where it is."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("build-ext", help="compile the C++/CUDA solver loop now (otherwise on first use)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="show the compiler's commands and output")
    p.set_defaults(func=run)


def run(args) -> int:
    from getkern import _extension
    return _extension.main(["--verbose"] if args.verbose else [])
