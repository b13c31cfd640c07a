"""Run every benchmark and print one table of their figures and ratios.

    python benchmarks/run_all.py            # the full workloads (several minutes: 10M metering events)
    python benchmarks/run_all.py --quick    # smaller workloads, same figures, to check they all run

Each benchmark runs in its own process (so one's memory does not skew another's) and measures its
baseline in that same run; this script only gathers what they report (see ``_report.py``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _report import parse  # noqa: E402

#: script -> (full arguments, quick arguments)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "bus.py": ([], ["--events", "20000"]),
    "http.py": ([], ["--rounds", "2", "--seconds", "0.5", "--mode", "asgi"]),
    "metering.py": ([], ["--events", "1000000", "--single", "200000", "--repeat", "10"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument("only", nargs="*", help="benchmark scripts to run (default: all)")
    args = parser.parse_args()
    table = Table(title="sbt benchmarks" + (" (quick)" if args.quick else ""))
    for column in ("benchmark", "figure", "value", "unit", "ratio", "baseline", "target", "met"):
        table.add_column(column, justify="right" if column in {"value", "ratio"} else "left")
    failures = 0
    for script, (full, quick) in BENCHMARKS.items():
        if args.only and script not in args.only:
            continue
        Console(stderr=True).print(f"running {script} ...")
        result = subprocess.run([sys.executable, str(HERE / script), *(quick if args.quick else full)],
                                capture_output=True, text=True)
        figures = parse(result.stdout)
        if result.returncode != 0 or not figures:
            failures += 1
            lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
            why = lines[-1] if lines else f"exit {result.returncode}"
            table.add_row(script, "[red]failed[/]", "", "", "", "", "", why)
            continue
        for f in figures:
            met = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[f["met"]]
            ratio = f"{f['ratio']:.3g}" if f["ratio"] is not None else ""
            table.add_row(f["benchmark"], f["name"], f"{f['value']:,.4g}", f["unit"], ratio, f["baseline"] or "",
                          f["target"] or "", met)
    # Piped or in CI there is no terminal width to fit: rich would squeeze the table into 80 columns.
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
