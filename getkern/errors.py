"""The two kinds of error getkern explains in one line instead of a traceback.

The command line prints ``getkern <command>: error: <message>`` for both and exits with 2 for a
:class:`UsageError` (the arguments asked for something invalid) and 1 for any other
:class:`GetkernError` (valid arguments, but a file or the machine cannot do it). Everything else
is a bug and keeps its traceback. Both derive from a builtin type so callers can catch them
as ``ValueError`` / ``RuntimeError`` as before.
"""

from __future__ import annotations


class GetkernError(Exception):
    """A failure with a one-line explanation: a corrupt file, a refused resume, a missing package."""


class UsageError(GetkernError, ValueError):
    """An argument, option, config field or path that cannot be used; the message names it."""


class SettingError(UsageError):
    """One setting outside its allowed values: ``setting`` names it, ``allowed`` says what is allowed.

    The command line renames it to its flag (``renamed("--warmup-steps")``) so the message names what
    the user typed."""

    def __init__(self, setting: str, value, allowed: str):
        super().__init__(f"{setting} must be {allowed}, got {value!r}")
        self.setting, self.value, self.allowed = setting, value, allowed

    def renamed(self, setting: str) -> SettingError:
        return SettingError(setting, self.value, self.allowed)
