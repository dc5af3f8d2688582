"""``getkern gpu-validate``: check every GPU claim of getkern in one time-boxed run (docs/gpu-validate.md).

``--dry`` runs every phase on CPU under the Triton interpreter at tiny shapes."""
from __future__ import annotations


def add_parser(sub) -> None:
    from getkern.tools.gpu_validate import add_arguments
    p = sub.add_parser("gpu-validate", help="validate getkern on a GPU in one command (--dry: on CPU)",
                       description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from getkern.tools import gpu_validate
    argv = ["--out", str(args.out), "--deadline", str(args.deadline)]
    argv += ["--dry"] if args.dry else []
    argv += ["--no-build"] if args.no_build else []
    argv += ["--no-warm"] if args.no_warm else []
    return gpu_validate.main(argv)
