"""The database seam of the ``sql`` provider: engine, migrations, meters, customers, series, event writes.

Shared by the provider and the ``sbt metering`` commands (so neither imports the other). Writes that
must hold across processes are the database's: dedup is an upsert on the primary key of
``sbt_metering_dedup``; a cancellation takes a meter's advisory lock exclusively (PostgreSQL) while
ingest takes it shared, so a recomputed rollup never misses a concurrent batch (SQLite has one writer
at a time).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa
from psycopg.errors import UniqueViolation
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection

from sbt_core._sql import create_engine, read_only
from sbt_core.models import Meter

from . import _schema as s
from ._copy import binary_copy, copy_columns, copy_payload
from ._rollups import STAGE, create_stage
from ._upsert import upsert

__all__ = ["MeterRow", "Store", "event_payload"]

log = logging.getLogger("sbt.provider.sql")

_CHUNK = 8000  # dedup rows per multi-row upsert (3 parameters each)
_METER_LOCK = 0x5B7_3E00  # advisory-lock class of the per-meter lock (key: meter_seq)
#: ``Connection.info`` key of the series ids a write transaction created (see :meth:`Store.write`).
_PENDING = "sbt_metering_new_series"
#: Event ids per value of the PostgreSQL sequence (see :meth:`Store.allocate_event_ids`).
_ID_BLOCK = 1 << 20


def _on_connect(dbapi_connection: Any, record: Any) -> None:
    # The session's staging table, created once per connection, outside any transaction of ours. A role
    # without the TEMPORARY privilege gets none, and its cells take the multi-row upsert instead.
    try:
        with dbapi_connection.cursor() as cur:
            create_stage(cur)
        dbapi_connection.commit()
        record.info[STAGE] = True
    except psycopg.Error as exc:
        dbapi_connection.rollback()
        log.warning("no temporary staging table for rollup cells (%s); folding them with upserts", exc)


_EVENT_COLUMNS = ["event_id", "meter_seq", "series_id", "ts", "value", "cancelled", "text", "identifier"]


def event_payload(meter_seq: int, ids: np.ndarray, series_ids: np.ndarray, ts: np.ndarray, values: np.ndarray,
                  texts: Sequence[str] | None, identifiers: Sequence[str]) -> bytes:
    """The binary COPY payload of events (PostgreSQL), rows in time order: the time index then takes its
    entries at a few places of its tree instead of one random page each (ids stay with their rows)."""
    n = len(ids)
    if n > 1 and not bool((np.diff(ts) >= 0).all()):
        order = np.argsort(ts, kind="stable")
        ids, series_ids, ts, values = ids[order], series_ids[order], ts[order], values[order]
        at = order.tolist()
        texts = [texts[i] for i in at] if texts is not None else None
        identifiers = [identifiers[i] for i in at]
    return binary_copy([("int8", ids), ("int4", np.full(n, meter_seq)), ("int4", series_ids), ("int8", ts),
                        ("float8", values), ("bool", np.zeros(n, dtype=bool)), ("text", texts),
                        ("text", identifiers)])


class MeterRow:
    """A meter with its internal key."""

    __slots__ = ("meter", "seq")

    def __init__(self, seq: int, meter: Meter) -> None:
        self.seq, self.meter = seq, meter


def _meter(row: Any) -> MeterRow:
    return MeterRow(row.meter_seq, Meter(
        meter_id=row.meter_id, name=row.name, event_name=row.event_name, aggregation=row.aggregation,
        value_property=row.value_property, group_by=tuple(row.group_by), description=row.description,
        status=row.status, created=row.created, modified=row.modified))


def meter_values(meter: Meter) -> dict[str, Any]:
    """The columns of ``sbt_metering_meters`` for ``meter`` (its key excluded)."""
    return {"meter_id": meter.meter_id, "event_name": meter.event_name, "name": meter.name,
            "description": meter.description, "aggregation": str(meter.aggregation),
            "value_property": meter.value_property, "group_by": list(meter.group_by),
            "status": str(meter.status), "created": meter.created, "modified": meter.modified}


class Store:
    """One metering database (PostgreSQL or SQLite)."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.postgres = url.get_backend_name() == "postgresql"
        if self.postgres:
            sa.event.listen(self.engine, "connect", _on_connect)
        # (meter_seq, tenant, dims JSON) -> series id. Series rows are only ever added (a deleted
        # meter's series go with its meter_seq, never reused), so a cached id stays right.
        self._series: dict[tuple[int, str, str], int] = {}

    def describe(self) -> str:
        """The URL with its password hidden."""
        return self.url.render_as_string(hide_password=True)

    def migrate(self) -> list[int]:
        """Create or migrate the schema (see :mod:`._schema`); returns the versions applied."""
        with self.engine.begin() as conn:
            return s.migrate(conn)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction. The series ids it creates join the cache only once it commits: a rolled
        back transaction's ids do not exist, and an event stored under one would be counted nowhere."""
        pending: dict[tuple[int, str, str], int] = {}
        with self.engine.begin() as conn:
            conn.info[_PENDING] = pending
            try:
                yield conn
            finally:
                del conn.info[_PENDING]
        self._series.update(pending)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (on SQLite a deferred one)."""
        with read_only(self.engine) as conn:
            yield conn

    # -- meters and customers -------------------------------------------------------------------------

    def meter(self, conn: Connection, meter_id: str) -> MeterRow | None:
        row = conn.execute(sa.select(s.meters).where(s.meters.c.meter_id == meter_id)).first()
        return _meter(row) if row is not None else None

    def meters_by_event(self, conn: Connection, names: Sequence[str]) -> dict[str, MeterRow]:
        rows = conn.execute(sa.select(s.meters).where(s.meters.c.event_name.in_(sorted(set(names)))))
        return {r.event_name: _meter(r) for r in rows}

    def meter_page(self, conn: Connection, after: int, limit: int) -> list[MeterRow]:
        q = sa.select(s.meters).where(s.meters.c.meter_seq > after).order_by(s.meters.c.meter_seq).limit(limit)
        return [_meter(r) for r in conn.execute(q)]

    def customers(self, conn: Connection, tenants: Sequence[str]) -> dict[str, bool]:
        rows = conn.execute(sa.select(s.customers).where(s.customers.c.tenant_id.in_(sorted(set(tenants)))))
        return {r.tenant_id: bool(r.active) for r in rows}

    def set_customer(self, conn: Connection, tenant_id: str, active: bool) -> None:
        insert = postgresql.insert if self.postgres else sqlite.insert
        stmt = insert(s.customers).values(tenant_id=tenant_id, active=active)
        conn.execute(stmt.on_conflict_do_update(index_elements=["tenant_id"], set_={"active": active}))

    def lock_meter(self, conn: Connection, meter_seq: int, *, exclusive: bool) -> None:
        """Hold a meter's lock until the transaction ends: shared for ingest, exclusive for cancel."""
        if self.postgres:
            fn = sa.func.pg_advisory_xact_lock if exclusive else sa.func.pg_advisory_xact_lock_shared
            conn.execute(sa.select(fn(_METER_LOCK, meter_seq)))

    # -- series -----------------------------------------------------------------------------------------

    def series_ids(self, conn: Connection, meter_seq: int, keys: Sequence[tuple[str, str]]) -> list[int]:
        """Ids of (tenant, dims JSON) series of a meter, created when new (concurrently safe)."""
        cache = self._series
        pending: dict[tuple[int, str, str], int] = conn.info.get(_PENDING, cache)
        missing = sorted({k for k in keys if (meter_seq, *k) not in cache and (meter_seq, *k) not in pending})
        if missing:
            insert = postgresql.insert if self.postgres else sqlite.insert
            rows = [{"meter_seq": meter_seq, "tenant_id": t, "dims": d} for t, d in missing]
            for i in range(0, len(rows), _CHUNK):
                conn.execute(insert(s.series).values(rows[i:i + _CHUNK]).on_conflict_do_nothing())
            c = s.series.c
            tenants = sorted({t for t, _ in missing})
            for i in range(0, len(tenants), _CHUNK):
                for r in conn.execute(sa.select(c.series_id, c.tenant_id, c.dims).where(
                        c.meter_seq == meter_seq, c.tenant_id.in_(tenants[i:i + _CHUNK]))):
                    pending[(meter_seq, r.tenant_id, r.dims)] = r.series_id
        return [cache[key] if key in cache else pending[key] for key in ((meter_seq, t, d) for t, d in keys)]

    def series_of_meter(self, conn: Connection, meter_seq: int) -> dict[int, tuple[str, tuple[str, ...]]]:
        """Every series of a meter: id -> (tenant id, dimension texts)."""
        c = s.series.c
        return {r.series_id: (r.tenant_id, tuple(json.loads(r.dims)))
                for r in conn.execute(sa.select(c.series_id, c.tenant_id, c.dims).where(c.meter_seq == meter_seq))}

    # -- event writes -----------------------------------------------------------------------------------

    def claim_identifiers(self, conn: Connection, meter_seq: int, spans: dict[str, tuple[int, int]],
                          cutoff_ms: int) -> set[str]:
        """Record ``identifier -> (earliest, latest event time)`` for a batch and return the identifiers it
        may store: those with no stored event time after ``cutoff_ms`` (now - dedup window). The table's
        primary key decides, so the same identifier put to two processes at once is stored once.

        On PostgreSQL a batch of identifiers none of which is stored yet (the usual case) is one binary
        COPY under a savepoint; a unique violation rolls the savepoint back and the upsert below decides
        row by row (a stored identifier outside the window keeps its earliest time and takes the later
        latest one). Both write in identifier order: one lock order for every process."""
        items = sorted(spans.items())
        if self.postgres:
            raw: Any = conn.connection.driver_connection
            n = len(items)
            try:
                with conn.begin_nested():
                    copy_columns(raw, "sbt_metering_dedup", ["meter_seq", "identifier", "first_ts", "ts"], [
                        ("int4", np.full(n, meter_seq)), ("text", [k for k, _ in items]),
                        ("int8", np.fromiter((v[0] for _, v in items), dtype=np.int64, count=n)),
                        ("int8", np.fromiter((v[1] for _, v in items), dtype=np.int64, count=n))])
                return set(spans)
            except UniqueViolation:
                pass
        d = "sbt_metering_dedup"
        return set(upsert(conn, d, [("meter_seq", "integer"), ("identifier", "text"), ("first_ts", "bigint"),
                                    ("ts", "bigint")],
                          [(meter_seq, k, first, last) for k, (first, last) in items], ["meter_seq", "identifier"],
                          f"ts = CASE WHEN excluded.ts > {d}.ts THEN excluded.ts ELSE {d}.ts END, "
                          f"first_ts = CASE WHEN excluded.first_ts < {d}.first_ts THEN excluded.first_ts "
                          f"ELSE {d}.first_ts END",
                          where=f"{d}.ts <= {int(cutoff_ms)}", returning="identifier"))

    def identifier_spans(self, conn: Connection, identifiers: Sequence[str]) -> list[tuple[int, str, int, int]]:
        """``(meter_seq, identifier, earliest ms, latest ms)`` of every stored identifier among
        ``identifiers``, in every meter, ordered: where a cancellation finds their events."""
        d, m = s.dedup.c, s.meters.c
        found: list[tuple[int, str, int, int]] = []
        wanted = sorted(set(identifiers))
        seqs = conn.execute(sa.select(m.meter_seq).order_by(m.meter_seq)).scalars().all()
        for i in range(0, len(wanted), _CHUNK):
            # Per meter, so each lookup is a walk of the (meter, identifier) key.
            found += [(r.meter_seq, r.identifier, r.first_ts, r.ts) for r in conn.execute(
                sa.select(d.meter_seq, d.identifier, d.first_ts, d.ts).where(
                    d.meter_seq.in_(seqs), d.identifier.in_(wanted[i:i + _CHUNK])))]
        return sorted(found)

    def sum_overflows(self, conn: Connection, meter_seq: int, first_day: int, last_day: int) -> bool:
        """Whether a day cell or a tenant day cell of the meter in ``[first_day, last_day]`` holds a sum
        beyond the float range."""
        r, t = s.rollups.c, s.tenant_days.c
        big = 1.7976931348623157e308
        cells = sa.select(sa.func.count()).where(r.meter_seq == meter_seq, r.width == s.DAY, r.bucket >= first_day,
                                                 r.bucket <= last_day, sa.func.abs(r.sum) > big)
        days = sa.select(sa.func.count()).where(t.meter_seq == meter_seq, t.bucket >= first_day, t.bucket <= last_day,
                                                sa.func.abs(t.sum) > big)
        return conn.execute(cells).scalar() != 0 or conn.execute(days).scalar() != 0

    def allocate_event_ids(self, conn: Connection, n: int) -> np.ndarray:
        """``n`` increasing event ids (ingestion order: LATEST breaks ties on event time with them).

        PostgreSQL: one value of ``sbt_metering_event_ids`` per block of :data:`_ID_BLOCK` ids (``value *
        _ID_BLOCK + position``), not one per event; every id is above the ids of earlier batches, those
        stored one sequence value per event included."""
        if self.postgres:
            blocks = conn.execute(sa.text("SELECT nextval('sbt_metering_event_ids') FROM generate_series(1, :n)"),
                                  {"n": -(-n // _ID_BLOCK)}).scalars().all()
            rows = np.arange(n, dtype=np.int64)
            return np.sort(np.array(blocks, dtype=np.int64))[rows // _ID_BLOCK] * _ID_BLOCK + rows % _ID_BLOCK
        # SQLite: this write transaction holds the file's write lock (BEGIN IMMEDIATE), so max is ours.
        top = conn.execute(sa.select(sa.func.max(s.events.c.event_id))).scalar() or 0
        return np.arange(top + 1, top + 1 + n, dtype=np.int64)

    def insert_events(self, conn: Connection, meter_seq: int, ids: np.ndarray, series_ids: np.ndarray,
                      ts: np.ndarray, values: np.ndarray, texts: Sequence[str] | None,
                      identifiers: Sequence[str], payload: bytes | None = None) -> None:
        """Store events: a binary COPY on PostgreSQL (``payload``: their :func:`event_payload`, when
        already built), one executemany on SQLite."""
        if self.postgres:
            copy_payload(conn.connection.driver_connection, "sbt_metering_events", _EVENT_COLUMNS,
                         payload if payload is not None else event_payload(meter_seq, ids, series_ids, ts, values,
                                                                           texts, identifiers))
            return
        n = len(ids)
        text_col: Sequence[str | None] = texts if texts is not None else [None] * n
        conn.execute(sa.insert(s.events), [
            {"event_id": i, "meter_seq": meter_seq, "series_id": sid, "ts": t, "value": v, "text": x,
             "identifier": ident, "cancelled": False}
            for i, sid, t, v, x, ident in zip(ids.tolist(), series_ids.tolist(), ts.tolist(), values.tolist(),
                                              text_col, identifiers, strict=True)])

    def delete_meter_rows(self, conn: Connection, meter_seq: int) -> None:
        """Delete a meter and everything stored for it."""
        for table in (s.tenant_days, s.rollups, s.dedup, s.events, s.series, s.meters):
            conn.execute(sa.delete(table).where(table.c.meter_seq == meter_seq))

    def purge_tenant(self, conn: Connection, tenant_id: str) -> int:
        """Delete a tenant's events in every meter, with their rollup cells and dedup entries, and forget
        it as a customer; returns how many events (cancelled ones included) were removed.

        A dedup entry goes unless another tenant's event of the meter holds the same identifier: it then
        keeps those events' earliest and latest times, so identifiers the tenant used may be stored again, as in
        ``memory``. Rollup cells are per series and a series is one tenant's, so the others' cells are
        not touched. The tenant's series rows stay: other processes cache series ids, and a returning
        tenant gets its old ids back."""
        c, e, d, r = s.series.c, s.events.c, s.dedup.c, s.rollups.c
        seqs = sorted(conn.execute(sa.select(c.meter_seq).distinct().where(c.tenant_id == tenant_id)).scalars())
        removed = 0
        for seq in seqs:
            self.lock_meter(conn, seq, exclusive=True)  # no batch of this meter lands halfway through
            mine = sa.select(c.series_id).where(c.meter_seq == seq, c.tenant_id == tenant_id).scalar_subquery()
            used = sa.select(e.identifier).where(e.meter_seq == seq, e.series_id.in_(mine))
            conn.execute(sa.delete(s.dedup).where(d.meter_seq == seq, d.identifier.in_(used)))
            conn.execute(sa.insert(s.dedup).from_select(["meter_seq", "identifier", "first_ts", "ts"], sa.select(
                sa.literal(seq, sa.Integer), e.identifier, sa.func.min(e.ts), sa.func.max(e.ts)).where(
                e.meter_seq == seq, e.identifier.in_(used), e.series_id.not_in(mine)).group_by(e.identifier)))
            removed += conn.execute(sa.delete(s.events).where(e.meter_seq == seq, e.series_id.in_(mine))).rowcount
            conn.execute(sa.delete(s.rollups).where(r.meter_seq == seq, r.series_id.in_(mine)))
            conn.execute(sa.delete(s.tenant_days).where(s.tenant_days.c.meter_seq == seq,
                                                        s.tenant_days.c.tenant_id == tenant_id))
        conn.execute(sa.delete(s.customers).where(s.customers.c.tenant_id == tenant_id))
        return removed

    # -- reporting --------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Row counts and (PostgreSQL) bytes on disk per table, tables and indexes included."""
        out: dict[str, Any] = {"database": self.describe()}
        with self.read() as conn:
            out["schemaVersion"] = conn.execute(sa.select(sa.func.max(s.schema_versions.c.version))).scalar()
            out["meters"] = conn.execute(sa.select(sa.func.count()).select_from(s.meters)).scalar()
            out["customers"] = conn.execute(sa.select(sa.func.count()).select_from(s.customers)).scalar()
            out["series"] = conn.execute(sa.select(sa.func.count()).select_from(s.series)).scalar()
            e = s.events.c
            out["events"] = conn.execute(sa.select(sa.func.count()).select_from(s.events)).scalar()
            out["cancelled"] = conn.execute(sa.select(sa.func.count()).where(e.cancelled)).scalar()
            out["rollupCells"] = conn.execute(sa.select(sa.func.count()).select_from(s.rollups)).scalar()
            out["tenantDayCells"] = conn.execute(sa.select(sa.func.count()).select_from(s.tenant_days)).scalar()
            out["dedupEntries"] = conn.execute(sa.select(sa.func.count()).select_from(s.dedup)).scalar()
            if self.postgres:
                out["bytes"] = {t.name: conn.execute(sa.select(sa.func.pg_total_relation_size(t.name))).scalar()
                                for t in s.metadata.sorted_tables}
            elif self.url.database:
                out["bytes"] = {"file": conn.execute(sa.text(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")).scalar()}
        return out
