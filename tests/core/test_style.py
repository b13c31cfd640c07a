"""The repository passes ``ruff check`` with the ``[tool.ruff]`` table of pyproject.toml (pyflakes, pycodestyle,
import order, bugbear, pyupgrade): the core, the first-party providers, examples, benchmarks and tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_repository_passes_ruff() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ruff found problems:\n{result.stdout}{result.stderr}"
