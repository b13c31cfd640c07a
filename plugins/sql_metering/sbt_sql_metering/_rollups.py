"""Pre-aggregated rollup cells: added to in the events' own transaction, recomputed exactly from events.

A cell holds count, sum, min, max and the latest value (by event time, then event id: a tie goes to the
event ingested last) of the live events of one series in one bucket. Ingest adds a batch's cells with
one upsert (add counts and sums, keep the smaller min, the larger max, the later latest). A cancellation
cannot subtract a min, a max or a latest, so the cells it touches are recomputed from the events, as is
every cell by ``sbt metering check --repair``; :func:`differences` compares stored and recomputed cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._schema import WIDTHS, cells_from_events, meters, rollups
from ._upsert import upsert

__all__ = ["CELL_COLUMNS", "add_cells", "batch_cells", "differences", "keeps_rollups", "recompute"]

CELL_COLUMNS = ("count", "sum", "min", "max", "latest_ts", "latest_id", "latest_value")
_KEY = ("meter_seq", "width", "bucket", "series_id")
_CHUNK = 2500  # rows per multi-row statement (11 parameters each: below SQLite's and PostgreSQL's limits)


def batch_cells(meter_seq: int, series_ids: np.ndarray, ts: np.ndarray, values: np.ndarray,
                event_ids: np.ndarray) -> list[tuple[Any, ...]]:
    """The rollup cells of one meter's new events, every width: one tuple per cell, in key order."""
    cells: list[tuple[Any, ...]] = []
    if not len(ts):
        return cells
    for width in WIDTHS:
        bucket = ts // width
        # Sorted by (bucket, series, ts, id): a cell's rows are contiguous and its last row is its latest.
        order = np.lexsort((event_ids, ts, series_ids, bucket))
        b, s = bucket[order], series_ids[order]
        v = values[order]
        starts = np.flatnonzero(np.r_[True, (b[1:] != b[:-1]) | (s[1:] != s[:-1])])
        ends = np.r_[starts[1:], len(b)] - 1
        count = np.diff(np.r_[starts, len(b)])
        total = np.add.reduceat(v, starts)
        low = np.minimum.reduceat(v, starts)
        high = np.maximum.reduceat(v, starts)
        last = order[ends]
        cells += [(meter_seq, width, *row) for row in zip(
            b[starts].tolist(), s[starts].tolist(), count.tolist(), total.tolist(), low.tolist(), high.tolist(),
            ts[last].tolist(), event_ids[last].tolist(), values[last].tolist(), strict=True)]
    return cells


_COLUMNS = [("meter_seq", "integer"), ("width", "integer"), ("bucket", "bigint"), ("series_id", "integer"),
            ("count", "bigint"), ("sum", "float8"), ("min", "float8"), ("max", "float8"), ("latest_ts", "bigint"),
            ("latest_id", "bigint"), ("latest_value", "float8")]
_T = "sbt_metering_rollups"
_LATER = (f"(excluded.latest_ts > {_T}.latest_ts OR (excluded.latest_ts = {_T}.latest_ts "
          f"AND excluded.latest_id > {_T}.latest_id))")
_ADD = ", ".join([
    f"count = {_T}.count + excluded.count", f"sum = {_T}.sum + excluded.sum",
    f"min = CASE WHEN excluded.min < {_T}.min THEN excluded.min ELSE {_T}.min END",
    f"max = CASE WHEN excluded.max > {_T}.max THEN excluded.max ELSE {_T}.max END",
    *[f"{c} = CASE WHEN {_LATER} THEN excluded.{c} ELSE {_T}.{c} END"
      for c in ("latest_value", "latest_id", "latest_ts")]])  # every SET expression reads the old row


def add_cells(conn: Connection, cells: Sequence[tuple[Any, ...]]) -> None:
    """Fold new cells (tuples in :data:`_COLUMNS` order, sorted by key, so two processes adding to the
    same cells lock them in the same order) into the stored ones."""
    upsert(conn, _T, _COLUMNS, cells, list(_KEY), _ADD)


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


def recompute(conn: Connection, meter_seq: int, touched: Iterable[tuple[int, int]]) -> None:
    """Recompute from the events every cell holding one of ``touched`` (series id, event time ms): the
    cells of those series over the buckets of those times, every width (cancel runs this; cells whose
    events are all cancelled disappear)."""
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
        ordered = sorted(buckets)
        # Runs of consecutive buckets: one delete and one read per run.
        runs: list[list[int]] = [[ordered[0], ordered[0]]]
        for b in ordered[1:]:
            if b == runs[-1][1] + 1:
                runs[-1][1] = b
            else:
                runs.append([b, b])
        for first, last in runs:
            conn.execute(sa.delete(rollups).where(
                r.meter_seq == meter_seq, r.width == width, r.bucket >= first, r.bucket <= last,
                r.series_id.in_(sorted(ids))))
            cells = _computed(conn, meter_seq, width, first * width, (last + 1) * width, ids)
            for i in range(0, len(cells), _CHUNK):
                conn.execute(sa.insert(rollups).values(cells[i:i + _CHUNK]))


def differences(conn: Connection, meter_seq: int, *, repair: bool = False) -> list[str]:
    """Every cell of a meter whose stored rollup differs from the one recomputed from its events, as
    one line each (``width bucket series: stored ... != events ...``); with ``repair``, replace them."""
    found: list[str] = []
    r = rollups.c
    if not keeps_rollups(conn, meter_seq):
        return found
    for width in WIDTHS:
        stored = {(row.bucket, row.series_id): tuple(getattr(row, c) for c in CELL_COLUMNS)
                  for row in conn.execute(sa.select(rollups).where(r.meter_seq == meter_seq, r.width == width))}
        computed = {(c["bucket"], c["series_id"]): tuple(c[k] for k in CELL_COLUMNS)
                    for c in _computed(conn, meter_seq, width, -(2**62), 2**62, None)}
        bad = []
        for key in sorted(stored.keys() | computed.keys()):
            a, b = stored.get(key), computed.get(key)
            if not _same(a, b):
                found.append(f"width {width} ms, bucket {key[0]}, series {key[1]}: rollup {a} != events {b}")
                bad.append(key)
        if repair and bad:
            for bucket, series_id in bad:
                conn.execute(sa.delete(rollups).where(r.meter_seq == meter_seq, r.width == width,
                                                      r.bucket == bucket, r.series_id == series_id))
                cell = computed.get((bucket, series_id))
                if cell is not None:
                    conn.execute(sa.insert(rollups).values(
                        meter_seq=meter_seq, width=width, bucket=bucket, series_id=series_id,
                        **dict(zip(CELL_COLUMNS, cell, strict=True))))
    return found


def _same(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    # Sums are float additions in another order: equal up to rounding; everything else exactly.
    return all(x == y if i != 1 else abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))
               for i, (x, y) in enumerate(zip(a, b, strict=True)))
