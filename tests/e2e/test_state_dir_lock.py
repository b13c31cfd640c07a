"""A state directory belongs to one ``sbt serve``: a second one pointed at it stops at start-up with one line
naming the directory and the process holding it, touching nothing; the lock dies with its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sbt_core.errors import StartupError
from sbt_core.runtime.state_lock import StateDirLock
from sbt_core.testing import wait_for
from sbt_core.testing.processes import free_port

from ._serve import clean_environ, sbt_serve


def serve_args(port: int) -> list[str]:
    return [sys.executable, "-m", "sbt_core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]


def test_a_second_serve_on_a_directory_in_use_stops_with_one_line(tmp_path: Path) -> None:
    with sbt_serve(tmp_path) as url:
        second = subprocess.run(serve_args(free_port()), cwd=tmp_path, env=clean_environ(), capture_output=True,
                                text=True, timeout=60)
        assert httpx.get(f"{url}/health").status_code == 200  # the first is untouched
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert str(tmp_path / ".sbt") in lines[0] and "in use by sbt serve pid" in lines[0]


def test_the_lock_dies_with_a_killed_process(tmp_path: Path) -> None:
    port = free_port()
    first = subprocess.Popen(serve_args(port), cwd=tmp_path, env=clean_environ(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health"), "the first sbt serve", 60)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    with sbt_serve(tmp_path) as url:  # a restart after kill -9 is never blocked by a stale file
        assert httpx.get(f"{url}/health").status_code == 200


def test_the_lock_names_its_holder(tmp_path: Path) -> None:
    holder = rf"state directory {tmp_path.resolve()} is in use by sbt serve pid {os.getpid()} "
    with StateDirLock(tmp_path), pytest.raises(StartupError, match=holder):
        StateDirLock(tmp_path).acquire()
    with StateDirLock(tmp_path):  # released on exit
        pass


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
