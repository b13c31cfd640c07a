"""The shipped helpers for running a real server in a test: a free port, ready, stopped, errors that show why."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from sbt_core.testing.processes import background_server, free_port

SERVE = "import http.server, sys; http.server.test(http.server.SimpleHTTPRequestHandler, port=int(sys.argv[1]), " \
        "bind='127.0.0.1')"


def test_a_server_is_ready_on_its_port_and_stopped_after(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with background_server([sys.executable, "-c", SERVE, str(port)], ready=url, log_path=tmp_path / "s.log",
                           cwd=tmp_path) as proc:
        assert httpx.get(url).status_code == 200
    assert proc.returncode is not None


def test_a_process_that_exits_fails_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"(?s)exited with 3:.*no such config"):
        with background_server([sys.executable, "-c", "import sys; print('no such config'); sys.exit(3)"],
                               ready=lambda: False, log_path=tmp_path / "s.log", name="broken"):
            pass


def test_a_server_never_ready_fails_with_its_output_after_the_timeout(tmp_path: Path) -> None:
    script = "import time; print('still starting', flush=True); time.sleep(60)"
    with pytest.raises(AssertionError, match=r"(?s)waiting for slow to be ready.*still starting"):
        with background_server([sys.executable, "-c", script], ready=lambda: False, log_path=tmp_path / "s.log",
                               name="slow", timeout=1):
            pass
