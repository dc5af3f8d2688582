"""The ``getkern`` command line: distill a diffusion teacher into a Generative Equilibrium Transformer,
sample it, and profile solver iterations against quality.

Each subcommand lives in getkern/commands/<name>.py and provides ``add_parser(subparsers)`` (which sets
``func``); parsers import nothing heavy, so ``--help`` is fast. User mistakes and explainable failures
print one line (exit 2 and 1, see getkern/errors.py); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from getkern import __version__
from getkern.commands._common import ArgumentsError, HelpFormatter, Parser
from getkern.errors import GetkernError, UsageError

COMMANDS = ("demo", "pairs", "train", "sample", "profile", "fid_stats", "build_ext", "gpu_validate", "study")

DESCRIPTION = (
    "getkern: distill a diffusion teacher into a Generative Equilibrium Transformer (GET), sample it, "
    "and profile solver iterations against quality."
)
EXAMPLES = """examples:
  getkern demo                                   # the main job on the embedded digits default (CPU)
  getkern pairs --out runs/pairs --num-pairs 20000
  getkern train --pairs runs/pairs --out runs/get --model GET-T/2
  getkern sample --checkpoint runs/get --out runs/samples --iters 1 2 6
  getkern profile --checkpoint runs/get --out runs/profile
  getkern study --quick                          # GET vs ViTs at equal budgets (docs/results/get-vs-vit.md)
  getkern <command> --help                       # every option, with its default
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser; its errors raise ArgumentsError (see commands/_common.Parser), which :func:`main` reports
    in one line. ``parser.commands`` maps each command's name to its own parser."""
    parser = Parser(prog="getkern", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"getkern {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for name in COMMANDS:
        importlib.import_module(f"getkern.commands.{name}").add_parser(sub)
    parser.commands = sub.choices
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; an option the command does not know is reported by that command's parser
    (``getkern sample: error: unrecognized arguments: --bogus``), not by the top-level one."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except ArgumentsError as e:  # one line, as for every other user mistake; the top level adds its usage
        print((e.usage if e.prog == "getkern" else "") + f"{e.prog}: error: {e}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        if args.debug:
            raise
        print(f"getkern {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (GetkernError, OSError) as e:
        if args.debug:
            raise
        print(f"getkern {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"getkern {args.command}: interrupted", file=sys.stderr)
        return 130
