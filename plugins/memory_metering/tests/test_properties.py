"""Property tests: the engine against the brute-force oracle of :mod:`sbt_core.testing.metering_oracle`.

Every aggregation, window size, time zone, group-by, tenant filter, dedup, cancellation and pagination
(see the oracle's module); here with the pre-aggregation grid on and off, tiny zone-map blocks and the
sort path of UNIQUE_COUNT, as each scenario's ``grid`` and ``block`` say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from sbt_memory_metering import MemoryMetering, MemoryMeteringSettings, _query, _store

from sbt_core import ProviderContext
from sbt_core.testing.metering_oracle import NOW_MS, check_against_oracle, scenarios


def make_provider(tmp_path: Path, **options: Any) -> MemoryMetering:
    provider = MemoryMetering(MemoryMeteringSettings(**options), ProviderContext("memory", "metering", tmp_path))
    provider.engine.clock = lambda: NOW_MS
    return provider


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(scenarios())
def test_engine_matches_oracle(tmp_path: Path, case: dict[str, Any]) -> None:
    # Tiny zone-map blocks exercise block skipping on small data, and a zero bitmap budget the
    # sort path of UNIQUE_COUNT.
    small = case["block"] == 3
    saved = _store.BLOCK, _query.BITMAP_CELLS
    _store.BLOCK, _query.BITMAP_CELLS = (3, 0) if small else saved
    try:
        provider = make_provider(tmp_path, rollup_cells_per_event=1.0 if case["grid"] else 0.0,
                                 pending_flush_events=5)
        check_against_oracle(provider, case)
    finally:
        _store.BLOCK, _query.BITMAP_CELLS = saved
