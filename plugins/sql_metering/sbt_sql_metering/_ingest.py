"""Ingest: validate events with ``memory``'s rules, then store a meter's batch in one transaction.

Validation is the same as ``memory``'s (value, horizon, inactive meter, tenant policy, unknown event),
with the same messages. Storing a batch: series ids, dedup (within the batch in order, then against the
database's unique key: a COPY of new identifiers on PostgreSQL, an upsert when one is stored), event ids,
the events (binary COPY on PostgreSQL) and the rollup cells of the stored ones, all in one transaction, so
a rollup never holds an event the table does not.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import numpy as np
from psycopg.errors import NumericValueOutOfRange
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError

from sbt_core.metering import as_number, as_text, dimension_text, floor_ms
from sbt_core.models import Aggregation, MeterStatus, UsageEvent

from ._rollups import Cells, add_cells, batch_cells, stage_payload, tenant_day_rows
from ._schema import DAY
from ._store import MeterRow, Store, event_payload

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


def _in_batch(identifiers: list[str], ts: list[int], cutoff: int) -> tuple[list[bool], dict[str, tuple[int, int]]]:
    """Dedup within a batch, in order, as if no stored event had the identifiers: which rows are kept,
    and per identifier the earliest and latest kept event time (what the dedup table will hold)."""
    keep = [True] * len(ts)
    spans = {ident: (t, t) for ident, t in zip(identifiers, ts, strict=True)}
    if len(spans) == len(ts):  # the usual batch: no identifier twice
        return keep, spans
    spans = {}
    for i, (ident, t) in enumerate(zip(identifiers, ts, strict=True)):
        seen = spans.get(ident)
        if seen is None:
            spans[ident] = (t, t)
        elif seen[1] > cutoff:
            keep[i] = False
        else:
            spans[ident] = (min(seen[0], t), max(seen[1], t))
    return keep, spans


@attrs.frozen
class _Rows:
    """The rows of a batch to store, as arrays, with their series and event ids."""

    series: np.ndarray
    ts: np.ndarray
    values: np.ndarray
    ids: np.ndarray
    texts: list[str] | None
    identifiers: list[str]
    tenant_of: dict[int, str]  # series id -> tenant id

    @classmethod
    def of(cls, store: Store, conn: Connection, batch: Batch, picked: list[int] | None) -> _Rows:
        """The rows ``picked`` (None: every row) of ``batch``; creates missing series, allocates ids."""
        pick: Any = (lambda col: col) if picked is None else (lambda col: [col[i] for i in picked])
        tenants = pick(batch.tenants)
        keys = list(zip(tenants, pick(batch.dims), strict=True))
        series = np.array(store.series_ids(conn, batch.meter.seq, keys), dtype=np.int64)
        distinct, first = np.unique(series, return_index=True)
        tenant_of = {sid: tenants[i] for sid, i in zip(distinct.tolist(), first.tolist(), strict=True)}
        return cls(series, np.array(pick(batch.ts), dtype=np.int64), np.array(pick(batch.values), dtype=np.float64),
                   store.allocate_event_ids(conn, len(keys)), pick(batch.texts) if batch.texts is not None else None,
                   pick(batch.identifiers), tenant_of)


@attrs.frozen
class _Payloads:
    """What a batch writes, computed before it is written: rollup cells (None: UNIQUE_COUNT keeps none),
    their tenant day cells and, on PostgreSQL, the COPY payloads of the events and of the cells."""

    cells: Cells | None
    days: list[tuple[Any, ...]] = attrs.field(factory=list)
    events: bytes | None = None
    stage: bytes | None = None


#: Rows from which a PostgreSQL batch prepares its payloads while the database takes its dedup claim.
_OVERLAP_ROWS = 20_000


def _prepare(store: Store, seq: int, rows: _Rows, counts_texts: bool) -> _Payloads:
    """Cells and payloads of ``rows``. :raises Overflow: the batch's own sum in one cell overflows."""
    cells, days = None, []
    if not counts_texts:
        cells = batch_cells(rows.series, rows.ts, rows.values, rows.ids)
        days = tenant_day_rows(seq, cells, rows.tenant_of)
        if not np.isfinite(cells.total).all() or not all(np.isfinite(d[4]) for d in days):
            raise Overflow("a rollup sum is beyond the float range")
    if not store.postgres:
        return _Payloads(cells, days)
    return _Payloads(cells, days, event_payload(seq, rows.ids, rows.series, rows.ts, rows.values, rows.texts,
                                                rows.identifiers),
                     stage_payload(seq, cells) if cells is not None else None)


def _write(store: Store, conn: Connection, seq: int, rows: _Rows, ready: _Payloads) -> None:
    store.insert_events(conn, seq, rows.ids, rows.series, rows.ts, rows.values, rows.texts, rows.identifiers,
                        ready.events)
    if ready.cells is None:
        return
    try:
        add_cells(conn, seq, ready.cells, ready.days, ready.stage)
    except (DataError, NumericValueOutOfRange):  # PostgreSQL: "value out of range: overflow"
        raise Overflow("a rollup sum is beyond the float range") from None
    if not store.postgres and store.sum_overflows(conn, seq, int(rows.ts.min()) // DAY, int(rows.ts.max()) // DAY):
        raise Overflow("a rollup sum is beyond the float range")  # SQLite sums to inf instead


def store_batch(store: Store, conn: Connection, batch: Batch, now_ms: int, dedup_ms: int) -> list[bool]:
    """Store one meter's validated events inside ``conn``'s transaction; per event, whether it was stored
    (False: a duplicate).

    A large PostgreSQL batch whose identifiers are all new to it (the usual bulk load) takes its dedup
    claim in a second thread while this one computes the cells and the COPY payloads, so that the
    database and Python work at once (the connection is used by one thread at a time); should the claim
    refuse an identifier, the rows are picked again and those payloads are thrown away.

    :raises Overflow: a rollup sum would go beyond the float range (the transaction must roll back).
    """
    n = len(batch.ts)
    if not n:
        return []
    seq = batch.meter.seq
    counts_texts = batch.meter.meter.aggregation is Aggregation.UNIQUE_COUNT
    store.lock_meter(conn, seq, exclusive=False)
    cutoff = now_ms - dedup_ms
    keep, spans = _in_batch(batch.identifiers, batch.ts, cutoff)
    if store.postgres and n >= _OVERLAP_ROWS and len(spans) == n:
        rows = _Rows.of(store, conn, batch, None)
        with ThreadPoolExecutor(max_workers=1) as pool:
            claim = pool.submit(store.claim_identifiers, conn, seq, spans, cutoff)
            try:
                ready = _prepare(store, seq, rows, counts_texts)
            finally:
                won = claim.result()  # the connection is free again (and the claim's own error raised)
        if len(won) == n:
            _write(store, conn, seq, rows, ready)
            return keep
    else:
        won = store.claim_identifiers(conn, seq, spans, cutoff)
    if len(won) < len(spans):
        keep = [k and ident in won for k, ident in zip(keep, batch.identifiers, strict=True)]
    picked = [i for i, k in enumerate(keep) if k]
    if picked:
        rows = _Rows.of(store, conn, batch, picked if len(picked) < n else None)
        _write(store, conn, seq, rows, _prepare(store, seq, rows, counts_texts))
    return keep
