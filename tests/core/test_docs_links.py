"""Docstrings and docs point only to what a reader of the repository has: pages under ``docs/`` that exist,
or upstream files named with their project — never the design notes the code was written from."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Notes kept outside the repository while it was built; a reader cannot open them.
OUTSIDE = re.compile(r"DESIGN\.md|reference/[\w-]+\.md|seeds/")
DOCS_PAGE = re.compile(r"docs/[\w./-]+\.md")


def _sources() -> list[Path]:
    found = [ROOT / "README.md"]
    for folder in ("sbt_core", "plugins", "examples", "docs", "tests", "benchmarks"):
        found += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".toml")
                  and ".venv" not in p.parts and "build" not in p.parts]
    return found


def test_no_reference_to_notes_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in _sources() if p.resolve() != this
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "\n".join(hits)


def test_every_docs_page_named_exists() -> None:
    missing = sorted({f"{p.relative_to(ROOT)}: {name}" for p in _sources()
                      for name in DOCS_PAGE.findall(p.read_text(encoding="utf-8"))
                      if not (ROOT / name).exists()})
    assert not missing, "\n".join(missing)
