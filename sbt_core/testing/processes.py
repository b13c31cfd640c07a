"""Real servers for tests as subprocesses on loopback: a free port, start, wait until ready, stop.

What the e2e tests (``sbt serve``, moto_server, localstripe) and the providers' own fixtures (moto_server for
cognito_auth, localstripe for stripe_billing) all do::

    port = free_port()
    with background_server(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                           ready=f"http://127.0.0.1:{port}/moto-api/", log_path=tmp / "moto.log"):
        ...
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from .waiting import wait_for

__all__ = ["background_server", "free_port"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS's pick), for a server a test is about to start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_below_500(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.TransportError:
            return False

    return ready


@contextlib.contextmanager
def background_server(args: Sequence[str], *, ready: str | Callable[[], bool], log_path: Path,
                      cwd: Path | None = None, env: Mapping[str, str] | None = None, name: str | None = None,
                      timeout: float = 60.0, stop_signal: int = signal.SIGTERM,
                      stop_timeout: float = 10.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` until the ``with`` block ends; enter once the server is ready.

    :param ready: a URL (ready once a GET answers with a status below 500) or a predicate.
    :param log_path: where the process's stdout and stderr go; its tail is quoted in the error when the
        process exits or never gets ready.
    :param cwd, env: the process's working directory and whole environment (None: this process's).
    :param timeout: seconds to wait for ready, a hang guard (never a timing assertion).
    :param stop_signal, stop_timeout: how the process is stopped (then killed after ``stop_timeout`` s).
    :raises AssertionError: the process exited, or was not ready within ``timeout``.
    """
    what = name or Path(args[0]).name
    is_ready = _answers_below_500(ready) if isinstance(ready, str) else ready
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(args), cwd=cwd, env=None if env is None else dict(env), stdout=log,
                                stderr=subprocess.STDOUT)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        return is_ready()

    try:
        try:
            wait_for(up, f"{what} to be ready", timeout=timeout)
        except AssertionError as exc:
            if proc.poll() is not None:
                raise
            raise AssertionError(f"{exc}:\n{log_path.read_text()[-3000:]}") from None
        yield proc
    finally:
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
