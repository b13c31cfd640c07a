"""Ingest: validate events with ``memory``'s rules, then store a meter's batch in one transaction.

Validation is the same as ``memory``'s (value, horizon, inactive meter, tenant policy, unknown event),
with the same messages. Storing a batch: series ids, dedup (within the batch in order, then against the
database's unique key: a COPY of new identifiers on PostgreSQL, an upsert when one is stored), event ids,
the events (binary COPY on PostgreSQL) and the rollup cells of the stored ones, all in one transaction, so
a rollup never holds an event the table does not.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import numpy as np
from psycopg.errors import NumericValueOutOfRange
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError

from sbt_core.metering import as_number, as_text, dimension_text, floor_ms
from sbt_core.models import Aggregation, MeterStatus, UsageEvent

from ._rollups import add_cells, batch_cells
from ._schema import DAY
from ._store import MeterRow, Store

__all__ = ["Batch", "Overflow", "Rejected", "check_event", "store_batch"]


class Overflow(Exception):
    """A batch would take a rollup's sum beyond the float range (raised inside the transaction, which
    then rolls back; the provider refuses the events that cause it, one by one)."""


class Rejected(Exception):
    """An event refused (the message names its identifier)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attrs.define
class Batch:
    """Validated events of one meter, in arrival order (``index``: position in the caller's input)."""

    meter: MeterRow
    index: list[int] = attrs.field(factory=list)
    tenants: list[str] = attrs.field(factory=list)
    dims: list[str] = attrs.field(factory=list)  # JSON list of dimension texts
    ts: list[int] = attrs.field(factory=list)
    values: list[float] = attrs.field(factory=list)
    texts: list[str] | None = None
    identifiers: list[str] = attrs.field(factory=list)


@attrs.frozen
class Policy:
    """The settings ingest checks against, in milliseconds."""

    past_ms: int
    future_ms: int
    dedup_ms: int
    reject_tenants: bool
    past_days: float
    future_seconds: float


def dims_key(values: list[str]) -> str:
    """The stored form of a series' dimension texts."""
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def check_event(event: UsageEvent, meter: MeterRow, now_ms: int, policy: Policy,
                customers: dict[str, bool]) -> tuple[int, float, str | None, str]:
    """``(event ms, value, UNIQUE_COUNT text, dims key)`` of a valid event.

    :raises Rejected: with ``memory``'s message (inactive meter, tenant policy, value, horizon).
    """
    m = meter.meter
    if m.status is not MeterStatus.ACTIVE:
        raise Rejected(f"usage event {event.identifier!r}: meter {m.meter_id!r} ({m.event_name}) is "
                       "inactive and accepts no new events; set its status to active to resume")
    tenant = event.tenant_id
    if policy.reject_tenants and not customers.get(tenant, False):
        what = "offboarded" if tenant in customers else "not a metering customer"
        raise Rejected(f"usage event {event.identifier!r}: tenant {tenant!r} is {what} "
                       "(policy unknown_tenant = reject)")
    props = event.properties
    text = None
    if m.value_property is None:
        value = 1.0
    else:
        raw = props.get(m.value_property)
        try:
            if m.aggregation is Aggregation.UNIQUE_COUNT:
                text, value = as_text(raw), 0.0
            else:
                value = as_number(raw)
        except ValueError as exc:
            raise Rejected(f"usage event {event.identifier!r}: {m.value_property} {exc}") from None
    ms = floor_ms(event.timestamp)
    if ms < now_ms - policy.past_ms or ms > now_ms + policy.future_ms:
        raise Rejected(f"usage event {event.identifier!r}: timestamp {event.timestamp.isoformat()} is outside "
                       f"the accepted horizon ({policy.past_days:g} days back, "
                       f"{policy.future_seconds:g} seconds ahead of now)")
    return ms, value, text, dims_key([dimension_text(props.get(n)) for n in m.group_by])


def _in_batch(identifiers: list[str], ts: list[int], cutoff: int) -> tuple[list[bool], dict[str, int]]:
    """Dedup within a batch, in order, as if no stored event had the identifiers: which rows are kept,
    and per identifier the latest kept event time (what the dedup table will hold)."""
    keep = [True] * len(ts)
    latest = dict(zip(identifiers, ts, strict=True))
    if len(latest) == len(ts):  # the usual batch: no identifier twice
        return keep, latest
    latest = {}
    for i, (ident, t) in enumerate(zip(identifiers, ts, strict=True)):
        seen = latest.get(ident)
        if seen is None:
            latest[ident] = t
        elif seen > cutoff:
            keep[i] = False
        else:
            latest[ident] = max(seen, t)
    return keep, latest


def store_batch(store: Store, conn: Connection, batch: Batch, now_ms: int, dedup_ms: int) -> list[bool]:
    """Store one meter's validated events inside ``conn``'s transaction; per event, whether it was stored
    (False: a duplicate)."""
    n = len(batch.ts)
    if not n:
        return []
    seq = batch.meter.seq
    store.lock_meter(conn, seq, exclusive=False)
    cutoff = now_ms - dedup_ms
    keep, latest = _in_batch(batch.identifiers, batch.ts, cutoff)
    won = store.claim_identifiers(conn, seq, latest, cutoff)
    if len(won) < len(latest):
        keep = [k and ident in won for k, ident in zip(keep, batch.identifiers, strict=True)]
    rows = [i for i, k in enumerate(keep) if k]
    if not rows:
        return keep
    every = len(rows) == n
    pick: Any = (lambda col: col) if every else (lambda col: [col[i] for i in rows])
    series = np.array(store.series_ids(conn, seq, list(zip(pick(batch.tenants), pick(batch.dims), strict=True))),
                      dtype=np.int64)
    ts = np.array(pick(batch.ts), dtype=np.int64)
    values = np.array(pick(batch.values), dtype=np.float64)
    ids = store.allocate_event_ids(conn, len(rows))
    store.insert_events(conn, seq, ids, series, ts, values, pick(batch.texts) if batch.texts is not None else None,
                        pick(batch.identifiers))
    if batch.meter.meter.aggregation is not Aggregation.UNIQUE_COUNT:
        cells = batch_cells(series, ts, values, ids)
        if not np.isfinite(cells.total).all():  # the batch's own sum in one cell
            raise Overflow("a rollup sum is beyond the float range")
        try:
            add_cells(conn, seq, cells)
        except (DataError, NumericValueOutOfRange):  # PostgreSQL: "value out of range: overflow"
            raise Overflow("a rollup sum is beyond the float range") from None
        if not store.postgres and store.sum_overflows(conn, seq, int(ts.min()) // DAY, int(ts.max()) // DAY):
            raise Overflow("a rollup sum is beyond the float range")  # SQLite sums to inf instead
    return keep
