"""The ``getkern`` command line. Each subcommand lives in getkern/commands/<name>.py and provides
``add_parser(subparsers)`` (which sets ``func``) so adding one is a one-line change here."""
from __future__ import annotations

import argparse
import importlib

COMMANDS = ("demo", "pairs", "train", "sample", "profile", "fid_stats", "build_ext", "gpu_validate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="getkern", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"getkern.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
