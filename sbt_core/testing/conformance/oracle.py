"""A brute-force oracle of IMetering: every stored event kept in a list, every query answered by scanning it.

It names windows from calendar fields in the query's zone (``zoneinfo``), independently of any provider's
boundary arithmetic, so a provider that is compared with it is compared with the calendar itself. Used by
the conformance suite's property test and by providers' own property tests::

    oracle = UsageOracle(Aggregation.SUM, dedup_window_ms=32 * 86_400_000, now_ms=lambda: now)
    oracle.ingest({"tenant": "t-1", "ts": ms, "value": 3, "id": "e1", "region": "eu"})
    oracle.query(lo_ms, hi_ms, WindowSize.DAY, ZoneInfo("Europe/Paris"), None, ("region",))
    # {(tenant, window label, (group values...)): value}

Events are dicts: ``tenant``, ``ts`` (epoch ms), ``value``, ``id`` (the identifier), plus one key per
dimension (a missing or None dimension groups as ``""``). Semantics are DESIGN.md section 4's: LATEST is
the value with the latest event time (ties: the later ingested), UNIQUE_COUNT compares values as text
(``1``, ``1.0`` and ``"1"`` are one value), a repeated identifier within the dedup window is ignored,
cancelled events count nowhere and cancelling twice cancels once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ...models import Aggregation, WindowSize

__all__ = ["UsageOracle", "text_value", "window_label"]


def text_value(value: Any) -> str:
    """A value as UNIQUE_COUNT compares it: strings as they are, integral floats as integers."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def window_label(ms: int, size: WindowSize | None, zone: ZoneInfo) -> Hashable:
    """The window an instant (epoch ms) falls in, named by calendar fields in ``zone``; None without windows.

    HOUR and MINUTE labels carry the UTC offset, so the two 01:00-02:00 hours of an autumn DST change
    are two windows.
    """
    if size is None:
        return None
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)
    if size is WindowSize.MONTH:
        return (local.year, local.month)
    if size is WindowSize.DAY:
        return local.date()
    if size is WindowSize.HOUR:
        return (local.date(), local.hour, local.utcoffset())
    return (local.date(), local.hour, local.minute, local.utcoffset())


class UsageOracle:
    """The events of one meter and the answers the contract requires (see the module docstring).

    :param dedup_window_ms: an identifier is ignored while a stored event with that identifier has an
        event time less than this before now; None: identifiers are remembered for ever.
    :param now_ms: the clock of the dedup window (epoch ms).
    """

    def __init__(self, aggregation: Aggregation, group_by: Sequence[str] = (), *, dedup_window_ms: int | None = None,
                 now_ms: Callable[[], int] | None = None) -> None:
        self.aggregation, self.group_by = aggregation, tuple(group_by)
        self.dedup_window_ms = dedup_window_ms
        self.now_ms = now_ms or (lambda: int(datetime.now(UTC).timestamp() * 1000))
        self.stored: list[dict[str, Any]] = []

    def ingest(self, event: dict[str, Any]) -> bool:
        """Store ``event`` unless its identifier is a duplicate; True when stored."""
        horizon = None if self.dedup_window_ms is None else self.now_ms() - self.dedup_window_ms
        if any(s["id"] == event["id"] and (horizon is None or s["ts"] > horizon) for s in self.stored):
            return False
        self.stored.append({**event, "order": len(self.stored), "cancelled": False})
        return True

    def cancel_ids(self, ids: Sequence[str]) -> int:
        """Cancel the stored events with these identifiers; how many were not cancelled before."""
        return self._cancel([s for s in self.stored if s["id"] in ids])

    def cancel_range(self, lo: int, hi: int, tenant: str | None) -> int:
        """Cancel the events of ``tenant`` (None: every tenant) with ``lo <= ts < hi``; how many newly."""
        return self._cancel([s for s in self.stored if lo <= s["ts"] < hi and tenant in (None, s["tenant"])])

    @staticmethod
    def _cancel(hit: list[dict[str, Any]]) -> int:
        fresh = [s for s in hit if not s["cancelled"]]
        for s in fresh:
            s["cancelled"] = True
        return len(fresh)

    def query(self, lo: int, hi: int, size: WindowSize | None, zone: ZoneInfo, tenant: str | None,
              group_by: Sequence[str]) -> dict[tuple[Any, ...], float]:
        """``{(tenant, window_label, (group values...)): value}`` over ``[lo, hi)`` (epoch ms)."""
        cells: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for s in self.stored:
            if s["cancelled"] or not lo <= s["ts"] < hi or tenant not in (None, s["tenant"]):
                continue
            groups = tuple(s.get(g) or "" for g in group_by)
            cells[(s["tenant"], window_label(s["ts"], size, zone), groups)].append(s)
        return {key: self._fold(events) for key, events in cells.items()}

    def _fold(self, events: list[dict[str, Any]]) -> float:
        agg = self.aggregation
        if agg is Aggregation.COUNT:
            return float(len(events))
        if agg is Aggregation.UNIQUE_COUNT:
            return float(len({text_value(e["value"]) for e in events}))
        if agg is Aggregation.LATEST:
            return float(max(events, key=lambda e: (e["ts"], e["order"]))["value"])
        values = [float(e["value"]) for e in events]
        if agg is Aggregation.SUM:
            return math.fsum(values)
        if agg is Aggregation.AVG:
            return math.fsum(values) / len(values)
        return min(values) if agg is Aggregation.MIN else max(values)
