"""Real servers for end-to-end tests, as subprocesses on free loopback ports, stopped after the test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from sbt_core.testing.processes import background_server, free_port

#: localstripe's CLI listens on every interface; this binds it to loopback.
LOCALSTRIPE = ("import sys; from aiohttp import web; from localstripe.server import app; "
               "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)")


def clean_environ() -> dict[str, str]:
    """This process's environment without what would point sbt at another config or server."""
    return {k: v for k, v in os.environ.items() if k not in {"SBT_CONFIG", "SBT_TOKEN", "SBT_URL"}}


@contextlib.contextmanager
def background(args: Sequence[str], *, cwd: Path, ready: str | Callable[[], bool], env: Mapping[str, str] | None = None,
               name: str = "server", timeout: float = 60.0) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`background_server` with the e2e conventions: run in ``cwd`` with this environment minus sbt's
    own variables plus ``env``, output in ``cwd/<name>.log``, stopped with SIGINT (a graceful drain)."""
    with background_server(args, ready=ready, log_path=cwd / f"{name}.log", cwd=cwd,
                           env={**clean_environ(), **(env or {})}, name=name, timeout=timeout,
                           stop_signal=signal.SIGINT, stop_timeout=30.0) as proc:
        yield proc


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
