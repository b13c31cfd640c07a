"""The hook reference (docs/hooks/) is generated from the contract and stays true to it."""

from __future__ import annotations

import runpy
from pathlib import Path

from sbt_core.hookspecs import CONTRACT, INTERFACES

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = runpy.run_path(str(ROOT / "docs" / "hooks" / "generate.py"))


def test_every_page_is_what_the_generator_writes_today() -> None:
    pages = GENERATOR["pages"]()
    assert set(pages) == {f"{i}.md" for i in INTERFACES} | {"lifecycle.md"}
    stale = [name for name, text in pages.items() if (ROOT / "docs" / "hooks" / name).read_text() != text]
    assert not stale, f"out of date: {stale}; run python docs/hooks/generate.py"


def test_each_contract_hook_has_its_section_with_property_trigger_and_record_shapes() -> None:
    pages = GENERATOR["pages"]()
    for name, row in CONTRACT.items():
        page = pages[f"{row.interface}.md"]
        section = page.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert f"`{row.sbt_property}`" in section and "**Default trigger**" in section
    metering = pages["metering.md"]
    assert "`POST /meters`, scope `meter/meter_write`" in metering
    assert "### Meter\n\n```json\n" in metering and '"meterId"' in metering  # the record's JSON shape
    assert "- `ConflictError`: another meter uses" in metering  # errors from the docstring
