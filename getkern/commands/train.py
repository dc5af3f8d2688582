"""``getkern train``: distill pairs into a GET (reference recipe by default; resumes from --out).

Examples:
    getkern train --pairs runs/pairs --out runs/get --model GET-T/2 --max-steps 100000
    torchrun --nproc_per_node 8 -m getkern train --pairs pairs/ --out runs/get-b --model GET-B/2 --amp bf16
    getkern train ... --adversarial-weight 0.1 --disc-input pair --disc-classes      # + a discriminator
    getkern train ... --loss perceptual --perceptual-ensemble 4                       # E-LatentLPIPS-style
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from getkern.commands._common import add_device, add_out, add_progress, check_out_dir, command_parser, resolve_device
from getkern.distill.config import TrainConfig, _default, allowed, check_setting
from getkern.errors import SettingError, UsageError

# The options are TrainConfig's fields (getkern/distill/config.py: default, help, allowed values), except
# these, whose options have their own shape: a required path, the model's two options, shared options.
OWN_OPTIONS = ("pairs", "out", "model", "device", "progress")
GROUPS = {"objectives": "objectives (docs/objectives.md)"}


def flag(name: str) -> str:
    """The option of TrainConfig field ``name``."""
    return {"model": "--model-args", "progress": "--no-progress"}.get(name, "--" + name.replace("_", "-"))


def add_parser(sub) -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    p = command_parser(sub, "train", __doc__, help="distill teacher pairs into a GET")
    p.add_argument("--pairs", required=True, help=fields["pairs"].metadata["help"])
    add_out(p, "run folder; an existing checkpoint there is resumed")
    p.add_argument(
        "--model",
        default="GET-T/2",
        help="a named size (GET-T/2 ..., or ViT-S/2 ... for the one-pass baseline); '' for --model-args alone",
    )
    p.add_argument("--model-args", default="{}", help='JSON GET keyword overrides, e.g. \'{"hidden_size": 64}\'')
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    for f in fields.values():
        if f.name in OWN_OPTIONS:
            continue
        target, m = groups.get(f.metadata["group"], p), f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, bool):  # every such field defaults to off
            target.add_argument(flag(f.name), action="store_true", help=m["help"])
        elif isinstance(default, list):
            target.add_argument(flag(f.name), nargs="*", default=default, metavar=m["metavar"], help=m["help"])
        else:
            number = isinstance(default, (int, float))
            help = f"{m['help']}; {allowed(f)}" if number else m["help"]
            target.add_argument(
                flag(f.name),
                type=setting_type(f) if number else type(default),
                default=default,
                choices=m["choices"],
                help=help,
            )
    add_device(p)
    add_progress(p)
    p.set_defaults(func=run)


def setting_type(f: dataclasses.Field):
    """An argparse type for TrainConfig's numeric field ``f``: the field's own check (config.check_setting),
    made when the command line is parsed; a refusal reads "--flag must be <allowed>, got <value>"."""
    kind = type(_default(f))

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed(f)}, got {text!r}") from None
        try:
            check_setting(f, value)
        except SettingError as e:
            raise argparse.ArgumentTypeError(f"must be {e.allowed}, got {e.value!r}") from None
        return value

    parse.__name__ = kind.__name__
    return parse


def run(args) -> int:
    try:
        extra = json.loads(args.model_args)
    except json.JSONDecodeError as e:
        raise UsageError(f"--model-args is not JSON: {e}") from None
    if not isinstance(extra, dict):
        raise UsageError(f"--model-args must be a JSON object, got {args.model_args!r}")
    model = {"name": args.model, **extra} if args.model else extra
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in OWN_OPTIONS}
    try:
        config = TrainConfig(
            pairs=args.pairs,
            out=str(args.out),
            model=model,
            device=args.device,
            progress=not args.no_progress,
            **settings,
        )
    except SettingError as e:
        raise e.renamed(flag(e.setting)) from None
    check_out_dir(args.out)
    resolve_device(args.device)  # a UsageError naming --device before the pairs are read
    from getkern.distill.trainer import Trainer, check_run_folder  # torch: not for --help

    check_run_folder(args.out, "--out")
    Trainer(config).fit()
    return 0
