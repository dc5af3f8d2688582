"""One process at a time per output folder (a training run, a pair set): an advisory lock naming its holder.

:func:`hold_folder` takes an exclusive ``fcntl.flock`` on ``<folder>/.getkern.lock`` and writes the holder
(pid, host, command, start time) into that file; a second process asking for the same folder gets
:class:`FolderBusy` naming the holder. The OS drops the lock when the holder exits, however it exits
(SIGKILL included), so a killed run never blocks its own resume. The file stays: deleting it would let
a third process lock a new file of the same name while the second still holds the old one.
Locks belong to an open file description, so a second :func:`hold_folder` in the same process conflicts too.
Torch-free.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from getkern.errors import GetkernError

LOCK_FILE = ".getkern.lock"
# atomic_write's temporary files (getkern/checkpoint.py): ".<name>.<random>.tmp" next to their target
STALE_TEMPORARY = ".*.tmp"


class FolderBusy(GetkernError):
    """Another process holds the folder's lock."""


class FolderLock:
    """A held lock; :meth:`release` (or leaving the ``with`` block, or exiting) frees it."""

    def __init__(self, folder: Path, fd: int):
        self.folder, self._fd = folder, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold_folder(folder, command: str) -> FolderLock:
    """Lock ``folder`` (created if missing) for ``command`` (e.g. "getkern train"), or raise FolderBusy."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise FolderBusy(
            f"{folder} is in use by {holder}; wait for it to end (or stop it), or use another folder"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return FolderLock(folder, fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0))
        return f"{info['command']} (pid {info['pid']} on {info['host']}, started {info['started']})"
    except (ValueError, KeyError, TypeError, OSError):  # the holder has not written its details yet
        return "another process"


def remove_stale_temporaries(folder, subfolders: tuple[str, ...] = ()) -> list[Path]:
    """Delete what an atomic write killed midway left in ``folder`` (and the named ``subfolders``); call
    only while holding the folder's lock, so no live writer's file is taken. Returns what was removed."""
    removed = []
    for d in (Path(folder), *(Path(folder) / s for s in subfolders)):
        for tmp in d.glob(STALE_TEMPORARY):
            if tmp.is_file():
                tmp.unlink()
                removed.append(tmp)
    return removed
