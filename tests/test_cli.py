"""The command line's conventions, checked over every subcommand's parser: shared option names and
meanings, help on every option, one-line errors with exit codes 2/1, --version, and a --help that
imports neither torch nor the trainer."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from getkern import __version__, cli

# Options that mean the same thing everywhere they appear (getkern/commands/_common.py).
SHARED = {
    "--out": None,
    "--checkpoint": None,
    "--device": "auto",
    "--backend": "auto",
    "--no-progress": False,
    "--debug": False,
}
RETIRED = ("--out-dir", "--output", "-o")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_listed_and_every_option_has_help():
    subs = _subparsers()
    assert set(subs) == {name.replace("_", "-") for name in cli.COMMANDS}
    for name, p in subs.items():
        assert "\n    getkern " in p.description, f"{name}: no usage example in its description"
        for action in p._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"getkern {name} {action.option_strings or action.dest}: no help"


def test_shared_options_have_one_name_and_default():
    seen = {flag: 0 for flag in SHARED}
    for name, p in _subparsers().items():
        flags = {s: a for a in p._actions for s in a.option_strings}
        assert not set(RETIRED) & set(flags), f"getkern {name} uses a retired name: {set(RETIRED) & set(flags)}"
        assert "--debug" in flags, name
        for flag, default in SHARED.items():
            if flag in flags:
                seen[flag] += 1
                if default is not None:
                    assert flags[flag].default == default, (name, flag, flags[flag].default)
    assert all(seen.values()), seen


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"getkern {__version__}"


def test_help_imports_no_torch():
    code = (
        "import sys; from getkern.cli import build_parser; build_parser(); "
        "heavy = sorted(m for m in ('torch', 'numpy', 'triton', 'getkern.distill.trainer') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"building the parsers imported {out}"


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["sample", "--checkpoint", "{tmp}/nothing", "--out", "{tmp}/s"], 1, "does not exist"),
        (["profile", "--out", "{tmp}/file.txt"], 2, "exists and is not a folder"),
        (["fid-stats", "{tmp}/nothing.npy", "--out", "{tmp}/ref.npz"], 2, "does not exist"),
        (["fid-stats", "{tmp}/file.txt", "--out", "{tmp}"], 2, "is a folder"),
        (["sample", "--checkpoint", "{tmp}/nothing", "--out", "{tmp}/s", "--device", "nonsense"], 2, "--device"),
    ],
)
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, argv, code, message):
    (tmp_path / "file.txt").write_text("x")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith(f"getkern {argv[0]}: error: ") and err.count("\n") == 1 and message in err, err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        cli.main(["sample", "--debug", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "s")])


def test_torch_free_copies_of_choices_match_their_owners():
    """The parsers read choice lists from torch-free modules; the owners are the layers that use them."""
    from getkern import deq
    from getkern.commands import profile, sample
    from getkern.distill import config

    assert config.GRADS == deq.GRADS
    assert sample.SOLVERS == profile.SOLVERS == deq.SOLVERS
