"""Property tests: ``sql`` on SQLite and PostgreSQL against the brute-force oracle ``memory`` is tested with
(:mod:`sbt_core.testing.metering_oracle`); after each scenario every rollup cell also equals the one
recomputed from the events, cancellations included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from sbt_sql_metering import SqlMetering
from sbt_sql_metering._rollups import differences
from sbt_sql_metering._schema import meters

from sbt_core.testing.metering_oracle import check_against_oracle, scenarios


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(scenarios())
def test_provider_matches_oracle_and_rollups_match_events(emptied: Callable[[], SqlMetering],
                                                           case: dict[str, Any]) -> None:
    provider = emptied()
    check_against_oracle(provider, case)
    with provider.store.read() as conn:
        for seq in conn.execute(sa.select(meters.c.meter_seq)).scalars():
            assert differences(conn, seq) == []
