"""``getkern gpu-validate``: check every GPU claim of getkern in one time-boxed run (docs/gpu-validate.md).

``--dry`` runs every phase on CPU under the Triton interpreter at tiny shapes.

    getkern gpu-validate --out gpu-results            # on the GPU machine, about 4 minutes
    getkern gpu-validate --out /tmp/dry --dry         # on CPU, every phase at toy size
"""

from __future__ import annotations

from getkern.commands._common import command_parser
from getkern.tools import gpu_validate


def add_parser(sub) -> None:
    p = command_parser(sub, "gpu-validate", __doc__, help="validate getkern on a GPU in one command (--dry: on CPU)")
    gpu_validate.add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    argv = ["--out", str(args.out), "--deadline", str(args.deadline)]
    argv += ["--dry"] if args.dry else []
    argv += ["--no-build"] if args.no_build else []
    argv += ["--no-warm"] if args.no_warm else []
    return gpu_validate.main(argv)
