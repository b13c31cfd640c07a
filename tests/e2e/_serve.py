"""Run `sbt serve` as a real subprocess on a free loopback port, and stop it after."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def sbt_serve(cwd: Path, *, config: Path | None = None, env: Mapping[str, str] | None = None,
              timeout: float = 60.0) -> Iterator[str]:
    """Start ``sbt serve`` in ``cwd`` on 127.0.0.1 and a free port; yield its base URL once /health answers.

    The server's output goes to ``cwd/serve.log``; on a start-up failure the log is in the error.
    """
    port = free_port()
    args = [sys.executable, "-m", "sbt_core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if config is not None:
        args += ["--config", str(config)]
    log = (cwd / "serve.log").open("w")
    full_env = {**os.environ, **(env or {})}
    full_env.pop("SBT_CONFIG", None) if config is None and "SBT_CONFIG" not in (env or {}) else None
    proc = subprocess.Popen(args, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sbt serve exited with {proc.returncode}:\n{(cwd / 'serve.log').read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:  # a hang guard, not a timing assertion
                raise RuntimeError(f"sbt serve did not answer:\n{(cwd / 'serve.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
