"""Pre-aggregated rollup cells: added to in the events' own transaction, recomputed exactly from events.

A cell holds count, sum, min, max and the latest value (by event time, then event id: a tie goes to the
event ingested last) of the live events of one series in one bucket. Ingest adds a batch's cells with
one upsert (add counts and sums, keep the smaller min, the larger max, the later latest). A cancellation
cannot subtract a min, a max or a latest, so the cells it touches are recomputed from the events, as is
every cell by ``sbt metering check --repair``; :func:`differences` compares stored and recomputed cells.
A tenant day cell is the same fold of one tenant's day cells, all its series together: added to with the
batch's cells, recomputed from the series' day cells after a cancellation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._copy import binary_copy, copy_payload
from ._schema import (
    DAY,
    TENANT_DAY_COLUMNS,
    WIDTHS,
    cells_from_events,
    meters,
    rollups,
    series,
    tenant_days,
    tenant_days_from_cells,
)
from ._upsert import upsert

__all__ = ["CELL_COLUMNS", "STAGE", "Cells", "add_cells", "batch_cells", "create_stage", "differences", "keeps_rollups",
           "recompute", "stage_payload", "tenant_day_rows"]

CELL_COLUMNS = ("count", "sum", "min", "max", "latest_ts", "latest_id", "latest_value")
_KEY = ("meter_seq", "width", "series_id", "bucket")  # the table's primary key, in its order
_CHUNK = 2500  # rows per multi-row statement (11 parameters each: below SQLite's and PostgreSQL's limits)


@attrs.frozen
class Cells:
    """Rollup cells of one meter's new events as columns (one entry per cell, every width, in key order:
    width, series, bucket): ``count`` int64, ``total``/``low``/``high``/``latest_value`` float64, the
    others int64."""

    width: np.ndarray
    series: np.ndarray
    bucket: np.ndarray
    count: np.ndarray
    total: np.ndarray
    low: np.ndarray
    high: np.ndarray
    latest_ts: np.ndarray
    latest_id: np.ndarray
    latest_value: np.ndarray

    def __len__(self) -> int:
        return len(self.width)

    def rows(self, meter_seq: int) -> list[tuple[Any, ...]]:
        """One tuple per cell in :data:`_COLUMNS` order (the multi-row statement's form)."""
        return [(meter_seq, *row) for row in zip(*(getattr(self, f).tolist() for f in _FIELDS), strict=True)]


_FIELDS = ("width", "series", "bucket", "count", "total", "low", "high", "latest_ts", "latest_id", "latest_value")


def batch_cells(series_ids: np.ndarray, ts: np.ndarray, values: np.ndarray, event_ids: np.ndarray) -> Cells:
    """The rollup cells of one meter's new events, every width, in key order."""
    parts: list[list[np.ndarray]] = []
    for width in WIDTHS if len(ts) else ():
        bucket = ts // width
        # Sorted by (series, bucket, ts, id), the key's order: a cell's rows are contiguous and its last
        # row is its latest.
        order = np.lexsort((event_ids, ts, bucket, series_ids))
        b, s = bucket[order], series_ids[order]
        v = values[order]
        starts = np.flatnonzero(np.r_[True, (s[1:] != s[:-1]) | (b[1:] != b[:-1])])
        last = order[np.r_[starts[1:], len(b)] - 1]
        with np.errstate(over="ignore"):  # a sum beyond the float range: the caller refuses the batch
            total = np.add.reduceat(v, starts)
        parts.append([np.full(len(starts), width, dtype=np.int64), s[starts], b[starts],
                      np.diff(np.r_[starts, len(b)]), total, np.minimum.reduceat(v, starts),
                      np.maximum.reduceat(v, starts), ts[last], event_ids[last], values[last]])
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Cells(*(empty for _ in _FIELDS))
    return Cells(*(np.concatenate(col) for col in zip(*parts, strict=True)))


_COLUMNS = [("meter_seq", "integer"), ("width", "integer"), ("series_id", "integer"), ("bucket", "bigint"),
            ("count", "bigint"), ("sum", "float8"), ("min", "float8"), ("max", "float8"), ("latest_ts", "bigint"),
            ("latest_id", "bigint"), ("latest_value", "float8")]
_T = "sbt_metering_rollups"
_TD = "sbt_metering_tenant_days"


def _add(table: str) -> str:
    """The upsert's SET list folding ``excluded`` into a stored cell of ``table``: add counts and sums,
    keep the smaller min, the larger max and the later (time, id) latest."""
    later = (f"(excluded.latest_ts > {table}.latest_ts OR (excluded.latest_ts = {table}.latest_ts "
             f"AND excluded.latest_id > {table}.latest_id))")
    return ", ".join([
        f"count = {table}.count + excluded.count", f"sum = {table}.sum + excluded.sum",
        f"min = CASE WHEN excluded.min < {table}.min THEN excluded.min ELSE {table}.min END",
        f"max = CASE WHEN excluded.max > {table}.max THEN excluded.max ELSE {table}.max END",
        *[f"{c} = CASE WHEN {later} THEN excluded.{c} ELSE {table}.{c} END"
          for c in ("latest_value", "latest_id", "latest_ts")]])  # every SET expression reads the old row


_ADD = _add(_T)
_TD_COLUMNS = [("meter_seq", "integer"), ("tenant_id", "text"), ("bucket", "bigint"), ("count", "bigint"),
               ("sum", "float8"), ("min", "float8"), ("max", "float8"), ("latest_ts", "bigint"),
               ("latest_id", "bigint"), ("latest_value", "float8")]

#: Per-session staging table of the PostgreSQL path (see :func:`add_cells`), created by :func:`create_stage`.
STAGE = "sbt_metering_stage_cells"
_NAMES = ", ".join(c for c, _ in _COLUMNS)
_FOLD = (f"INSERT INTO {_T} ({_NAMES}) SELECT {_NAMES} FROM {STAGE} "
         f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {_ADD}")
_BINARY = {"integer": "int4", "bigint": "int8", "float8": "float8"}


def create_stage(cursor: Any) -> None:
    """Create this session's staging table (PostgreSQL: a temporary table emptied at every commit, so
    nothing of it outlives the transaction that filled it, nor is logged)."""
    cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} ("
                   + ", ".join(f"{c} {t}" for c, t in _COLUMNS) + ") ON COMMIT DELETE ROWS")


def stage_payload(meter_seq: int, cells: Cells) -> bytes:
    """The binary COPY payload of ``cells`` for the staging table (see :func:`add_cells`)."""
    return binary_copy([("int4", np.full(len(cells), meter_seq)), *(
        (_BINARY[kind], getattr(cells, f)) for f, (_, kind) in zip(_FIELDS, _COLUMNS[1:], strict=True))])


def tenant_day_rows(meter_seq: int, cells: Cells, tenant_of: Mapping[int, str]) -> list[tuple[Any, ...]]:
    """The tenant day cells of a batch, from its day cells (``tenant_of``: series id -> tenant id), as
    rows in the columns of ``sbt_metering_tenant_days``, in key order (tenant, day)."""
    day = cells.width == DAY
    if not day.any():
        return []
    series, bucket = cells.series[day], cells.bucket[day]
    latest_ts, latest_id = cells.latest_ts[day], cells.latest_id[day]
    names = sorted({tenant_of[sid] for sid in np.unique(series).tolist()})
    code = {t: i for i, t in enumerate(names)}
    tenant = np.array([code[tenant_of[sid]] for sid in series.tolist()], dtype=np.int64)
    # Sorted by (tenant, day, latest time, latest id): a tenant day's cells are contiguous, its last the latest.
    order = np.lexsort((latest_id, latest_ts, bucket, tenant))
    t, b = tenant[order], bucket[order]
    starts = np.flatnonzero(np.r_[True, (t[1:] != t[:-1]) | (b[1:] != b[:-1])])
    last = order[np.r_[starts[1:], len(b)] - 1]
    with np.errstate(over="ignore"):  # a sum beyond the float range: the caller refuses the batch
        total = np.add.reduceat(cells.total[day][order], starts)
    columns = [t[starts], b[starts], np.add.reduceat(cells.count[day][order], starts), total,
               np.minimum.reduceat(cells.low[day][order], starts), np.maximum.reduceat(cells.high[day][order], starts),
               latest_ts[last], latest_id[last], cells.latest_value[day][last]]
    return [(meter_seq, names[row[0]], *row[1:]) for row in zip(*(c.tolist() for c in columns), strict=True)]


def add_cells(conn: Connection, meter_seq: int, cells: Cells, days: Sequence[tuple[Any, ...]],
              payload: bytes | None = None) -> None:
    """Fold new cells (in key order, so two processes adding to the same cells lock them in the same
    order) into the stored ones, then their tenant day cells (``days``: :func:`tenant_day_rows`; a
    multi-row upsert, a few rows per tenant). Rollup cells on PostgreSQL: a binary COPY into the
    session's staging table (``payload``: :func:`stage_payload`, when already built), one ``INSERT ...
    SELECT ... ON CONFLICT DO UPDATE``, then ``TRUNCATE`` of the stage (cheaper than a ``DELETE ...
    RETURNING`` feeding the insert); on SQLite (or a session without the staging table) multi-row upserts.

    :raises psycopg.errors.NumericValueOutOfRange: (PostgreSQL) a sum beyond the float range.
    """
    if not len(cells):
        return
    _add_series_cells(conn, meter_seq, cells, payload)
    upsert(conn, _TD, _TD_COLUMNS, days, ["meter_seq", "tenant_id", "bucket"], _add(_TD))


def _add_series_cells(conn: Connection, meter_seq: int, cells: Cells, payload: bytes | None) -> None:
    if conn.dialect.name != "postgresql" or not conn.connection.info.get(STAGE):
        upsert(conn, _T, _COLUMNS, cells.rows(meter_seq), list(_KEY), _ADD)
        return
    raw: Any = conn.connection.driver_connection
    if payload is None:
        payload = stage_payload(meter_seq, cells)
    copy_payload(raw, STAGE, [c for c, _ in _COLUMNS], payload)
    with raw.cursor() as cur:
        cur.execute(_FOLD)
        cur.execute(f"TRUNCATE {STAGE}")


def _computed(conn: Connection, meter_seq: int, width: int, lo: int, hi: int,
              series_ids: Iterable[int] | None) -> list[dict[str, Any]]:
    text = cells_from_events(width)
    params: dict[str, Any] = {"meter": meter_seq, "lo": lo, "hi": hi}
    if series_ids is None:
        stmt = sa.text(text.format(series=""))
    else:
        stmt = sa.text(text.format(series="AND series_id IN :series")).bindparams(
            sa.bindparam("series", expanding=True))
        params["series"] = sorted(set(series_ids))
    return [{"meter_seq": meter_seq, "width": width, **row._asdict()} for row in conn.execute(stmt, params)]


def keeps_rollups(conn: Connection, meter_seq: int) -> bool:
    """Whether a meter has rollup cells (every aggregation but UNIQUE_COUNT, which reads its events)."""
    agg = conn.execute(sa.select(meters.c.aggregation).where(meters.c.meter_seq == meter_seq)).scalar()
    return agg is not None and agg != "UNIQUE_COUNT"


def _runs(buckets: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted buckets as runs of consecutive ones, (first, last) each."""
    runs: list[list[int]] = []
    for b in sorted(buckets):
        if runs and b == runs[-1][1] + 1:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    return [(first, last) for first, last in runs]


def recompute(conn: Connection, meter_seq: int, touched: Iterable[tuple[int, int]]) -> None:
    """Recompute from the events every cell holding one of ``touched`` (series id, event time ms): the
    cells of those series over the buckets of those times, every width, then the tenant day cells of
    their tenants over those days (cancel runs this; cells whose events are all cancelled disappear)."""
    if not keeps_rollups(conn, meter_seq):
        return
    by_width: dict[int, tuple[set[int], set[int]]] = {w: (set(), set()) for w in WIDTHS}
    for series_id, ts in touched:
        for width, (buckets, ids) in by_width.items():
            buckets.add(ts // width)
            ids.add(series_id)
    r = rollups.c
    for width, (buckets, ids) in by_width.items():
        if not buckets:
            continue
        for first, last in _runs(buckets):  # one delete and one read per run of consecutive buckets
            conn.execute(sa.delete(rollups).where(
                r.meter_seq == meter_seq, r.width == width, r.bucket >= first, r.bucket <= last,
                r.series_id.in_(sorted(ids))))
            cells = _computed(conn, meter_seq, width, first * width, (last + 1) * width, ids)
            for i in range(0, len(cells), _CHUNK):
                conn.execute(sa.insert(rollups).values(cells[i:i + _CHUNK]))
    days, ids = by_width[DAY]
    if not days:
        return
    tenants = sorted(conn.execute(sa.select(series.c.tenant_id).distinct().where(
        series.c.series_id.in_(sorted(ids)))).scalars())
    t = tenant_days.c
    for first, last in _runs(days):  # the tenants' day cells summed again from their series' day cells
        conn.execute(sa.delete(tenant_days).where(t.meter_seq == meter_seq, t.tenant_id.in_(tenants),
                                                  t.bucket >= first, t.bucket <= last))
        conn.execute(sa.text(f"INSERT INTO {_TD} ({TENANT_DAY_COLUMNS}) " + tenant_days_from_cells(
            "AND r.meter_seq = :meter AND s.tenant_id IN :tenants AND r.bucket >= :first AND r.bucket <= :last"))
            .bindparams(sa.bindparam("tenants", expanding=True)),
            {"meter": meter_seq, "tenants": tenants, "first": first, "last": last})


def differences(conn: Connection, meter_seq: int, *, repair: bool = False) -> list[str]:
    """Every cell of a meter whose stored rollup differs from the one recomputed from its events, as
    one line each (``width bucket series: stored ... != events ...``, ``tenant day ...`` for the tenant
    day cells, whose expected values are the sums of their series' day cells recomputed from the
    events); with ``repair``, replace them."""
    found: list[str] = []
    r, t = rollups.c, tenant_days.c
    if not keeps_rollups(conn, meter_seq):
        return found
    days: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for width in WIDTHS:
        stored = {(row.bucket, row.series_id): tuple(getattr(row, c) for c in CELL_COLUMNS)
                  for row in conn.execute(sa.select(rollups).where(r.meter_seq == meter_seq, r.width == width))}
        computed = {(c["bucket"], c["series_id"]): tuple(c[k] for k in CELL_COLUMNS)
                    for c in _computed(conn, meter_seq, width, -(2**62), 2**62, None)}
        if width == DAY:
            days = _by_tenant(conn, meter_seq, computed)
        # _compare calls it at once: the loop's width is the one meant.
        label = f"width {width} ms, bucket {{}}, series {{}}".format
        for bucket, series_id in _compare(stored, computed, found, lambda k: label(*k)):  # noqa: B023
            if repair:
                conn.execute(sa.delete(rollups).where(r.meter_seq == meter_seq, r.width == width,
                                                      r.bucket == bucket, r.series_id == series_id))
                cell = computed.get((bucket, series_id))
                if cell is not None:
                    conn.execute(sa.insert(rollups).values(
                        meter_seq=meter_seq, width=width, bucket=bucket, series_id=series_id,
                        **dict(zip(CELL_COLUMNS, cell, strict=True))))
    stored = {(row.tenant_id, row.bucket): tuple(getattr(row, c) for c in CELL_COLUMNS)
              for row in conn.execute(sa.select(tenant_days).where(t.meter_seq == meter_seq))}
    for tenant, bucket in _compare(stored, days, found, lambda k: f"tenant day {k[1]}, tenant {k[0]!r}"):
        if repair:
            conn.execute(sa.delete(tenant_days).where(t.meter_seq == meter_seq, t.tenant_id == tenant,
                                                      t.bucket == bucket))
            cell = days.get((tenant, bucket))
            if cell is not None:
                conn.execute(sa.insert(tenant_days).values(meter_seq=meter_seq, tenant_id=tenant, bucket=bucket,
                                                           **dict(zip(CELL_COLUMNS, cell, strict=True))))
    return found


def _compare(stored: dict[tuple[Any, ...], tuple[Any, ...]], computed: dict[tuple[Any, ...], tuple[Any, ...]],
             found: list[str], describe: Callable[[tuple[Any, ...]], str]) -> list[tuple[Any, ...]]:
    """Keys whose stored and computed cells differ, each reported in ``found`` as ``describe(key)``."""
    bad = []
    for key in sorted(stored.keys() | computed.keys()):
        a, b = stored.get(key), computed.get(key)
        if not _same(a, b):
            found.append(f"{describe(key)}: rollup {a} != events {b}")
            bad.append(key)
    return bad


def _by_tenant(conn: Connection, meter_seq: int,
               day_cells: dict[tuple[Any, ...], tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Day cells ((day, series) -> cell) folded per (tenant, day) as ingest folds a batch's
    (:func:`tenant_day_rows`)."""
    if not day_cells:
        return {}
    tenant_of: dict[int, str] = {sid: tenant for sid, tenant in conn.execute(
        sa.select(series.c.series_id, series.c.tenant_id).where(series.c.meter_seq == meter_seq))}
    keys = sorted(day_cells)
    values = [np.array(column) for column in zip(*(day_cells[k] for k in keys), strict=True)]
    cells = Cells(np.full(len(keys), DAY), np.array([k[1] for k in keys]), np.array([k[0] for k in keys]), *values)
    return {(row[1], row[2]): tuple(row[3:]) for row in tenant_day_rows(meter_seq, cells, tenant_of)}


def _same(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    # Sums are float additions in another order: equal up to rounding; everything else exactly.
    return all(x == y if i != 1 else abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))
               for i, (x, y) in enumerate(zip(a, b, strict=True)))
