"""One process at a time per run folder (training or evaluating it) and per data folder being written.

An OS-level lock (``flock``) on a small file beside what it guards: the kernel releases it when the holding
process ends, however it ends, so a lock left by a killed process is never mistaken for a live one. The file holds
who took it (process, host, start time, command) so that a second command can name the running one. Locks live
in hidden ``.locks/`` folders, which run discovery skips. On a cluster's shared filesystem the lock is only as
good as the filesystem's ``flock`` (NFS v4 and Lustre mounted with ``flock`` honour it across nodes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unlearning.runs.io import redact

LOCKS = ".locks"


class Busy(RuntimeError):
    """Another live process holds the lock of what this command would write."""


class Lock:
    """An exclusive lock taken on ``path`` (``acquire``), held until ``release`` or until the process ends."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> Lock:
        """Take the lock now, or raise :class:`Busy` naming the process that holds it (never waits)."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise Busy(f"{self.what} is being written by another process ({holder}); this command left it alone. "
                       "Wait for that one to finish (or stop it), then run this again") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_me()).encode("utf-8"))
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_for(folder: Path, what: str | None = None) -> Lock:
    """The lock guarding ``folder`` (a run folder or a data folder): ``<parent>/.locks/<name>.lock``, beside it, so
    that it outlives the folder being replaced."""
    folder = Path(folder)
    return Lock(folder.parent / LOCKS / f"{folder.name}.lock", what or str(folder))


@contextlib.contextmanager
def holding(folder: Path, what: str | None = None) -> Iterator[Lock]:
    """``folder``'s lock for the duration of the block."""
    with lock_for(folder, what) as lock:
        yield lock


def _me() -> dict[str, Any]:
    command = " ".join(redact(list(sys.argv)))  # a key pasted on the command line never reaches the file
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": command[:500]}


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says (it may still be writing it: then only that it is held)."""
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8"))
        return (f"pid {info['pid']} on {info['host']}, since {info['started']}: {info['command']}")
    return "its details are not written yet"
