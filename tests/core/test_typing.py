"""The core and the first-party providers type-check: ``mypy --strict`` with the ``[tool.mypy]`` table of
pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_core_and_providers_pass_mypy_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    # The config's files (sbt_core, plugins/...) are relative to the working directory, as for a plain
    # `mypy` in the root.
    monkeypatch.chdir(ROOT)
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml")])
    assert status == 0, f"mypy found type errors:\n{stdout}{stderr}"
