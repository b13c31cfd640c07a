"""One process per state directory: what ``sbt serve`` keeps there (the embedded bus, memory metering's log
and snapshot, SQLite stores, the generated signing key) is written by one process at a time.

The lock is ``flock`` on ``<state_dir>/serve.lock``, held for the life of the process and released by the
kernel however it ends (``kill -9`` included), so a stale file never blocks a restart. The file names the
holder (pid, host, start time) for the message a second process prints. Several processes of one
deployment each get their own ``state_dir`` and share what must be shared through databases (see the
README's "Running several processes").
"""

from __future__ import annotations

import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from ..errors import StartupError

__all__ = ["LOCK_FILE", "StateDirLock"]

LOCK_FILE = "serve.lock"


class StateDirLock:
    """``with StateDirLock(state_dir):`` — or :meth:`acquire` / :meth:`release`.

    :raises StartupError: another live process holds the directory (named, with its pid).
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StartupError(f"state directory {self.state_dir.resolve()} is in use by {holder}; give each "
                               "sbt serve its own state_dir") from None
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"sbt serve pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> StateDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
