"""A provider that cannot start stops ``sbt serve`` with one ``error:`` line naming the failed step and a
non-zero exit, and no traceback (uvicorn's own sys.exit in its serving task is not let through)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sbt_core.testing.processes import free_port

from ._serve import clean_environ


def test_a_provider_failing_at_start_up_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    unreachable = free_port()  # nothing listens there
    (tmp_path / "sbt.toml").write_text(
        "[providers.metering]\n"
        'type = "sql"\n'
        f'database_url = "postgresql://postgres@127.0.0.1:{unreachable}/nothing"\n')
    done = subprocess.run([sys.executable, "-m", "sbt_core.cli", "serve", "--host", "127.0.0.1",
                           "--port", str(free_port())], cwd=tmp_path, env=clean_environ(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "never retrieved" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: control plane failed to start (sbt_startup):"), done.stderr
    assert str(unreachable) in last
