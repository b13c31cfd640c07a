"""The one output format of the benchmarks, so ``run_all.py`` can gather them into one table.

Each benchmark prints its own readable report, then calls :func:`report` with its figures: one line
``SBT-BENCH <json>`` per figure, which ``run_all.py`` collects.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

MARKER = "SBT-BENCH "


@attrs.frozen
class Figure:
    """One measured figure: ``value`` in ``unit``; ``ratio`` against the baseline measured in the same run
    (None when the figure is absolute); ``target`` as text (``"<= 10x"``); ``met`` whether it holds."""

    benchmark: str
    name: str
    value: float
    unit: str
    ratio: float | None = None
    baseline: str | None = None
    target: str | None = None
    met: bool | None = None


def report(figures: list[Figure]) -> None:
    """Print the machine-readable lines of ``figures`` (after the benchmark's own human report)."""
    for figure in figures:
        print(MARKER + json.dumps(attrs.asdict(figure)), flush=True)


def parse(output: str) -> list[dict[str, Any]]:
    """The figures in a benchmark's output."""
    return [json.loads(line[len(MARKER):]) for line in output.splitlines() if line.startswith(MARKER)]
