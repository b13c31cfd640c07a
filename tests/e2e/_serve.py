"""Real servers for end-to-end tests, as subprocesses on free loopback ports, stopped after the test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

#: localstripe's CLI listens on every interface; this binds it to loopback (reference/metering-and-fakes.md 2a).
LOCALSTRIPE = ("import sys; from aiohttp import web; from localstripe.server import app; "
               "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)")


def clean_environ() -> dict[str, str]:
    """This process's environment without what would point sbt at another config or server."""
    return {k: v for k, v in os.environ.items() if k not in {"SBT_CONFIG", "SBT_TOKEN", "SBT_URL"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def background(args: Sequence[str], *, cwd: Path, ready: str, env: Mapping[str, str] | None = None,
               name: str = "server", timeout: float = 60.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in ``cwd`` until the test ends; ready once GET ``ready`` answers below 500.

    Output goes to ``cwd/<name>.log``, quoted in the error when the process dies or never answers.
    """
    log_path = cwd / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(args), cwd=cwd, env={**clean_environ(), **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(ready, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:  # a hang guard, not a timing assertion
                raise RuntimeError(f"{name} did not answer {ready}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def sbt_serve(cwd: Path, *, config: Path | None = None, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``sbt serve`` in ``cwd`` on 127.0.0.1 and a free port; yields its base URL once /health answers."""
    port = free_port()
    args = [sys.executable, "-m", "sbt_core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if config is not None:
        args += ["--config", str(config)]
    url = f"http://127.0.0.1:{port}"
    with background(args, cwd=cwd, ready=f"{url}/health", env=env, name="sbt-serve"):
        yield url
