"""``metering_fetch_usage`` on the database: windows from rollup cells where whole buckets fit, events at
the edges, then ``memory``'s grouping, order and pages.

Each window ``[a, b)`` (cut to the query's ``[from, to)``) splits into whole UTC days, whole quarters
around them and the raw pieces the 15-minute grid cannot cover (a ``from``/``to`` off the grid); each
part is read in one statement per width, joined to a small list of (window, first, last) ranges and
grouped by series and window, so a 30-day DAY query reads one cell per series and day. LATEST takes the
cell with the latest (event time, event id); UNIQUE_COUNT and MINUTE windows read events only.
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_right
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sbt_core.errors import BadRequestError
from sbt_core.metering import ceil_ms, decode_usage_token, encode_usage_token, ms_to_datetime, window_edges
from sbt_core.models import Aggregation, Page, UsageQuery, UsageRow, WindowSize

from ._schema import DAY, QUARTER
from ._store import MeterRow, Store

__all__ = ["Answers", "fetch_usage"]

_MAX_PIECES = 64  # beyond this many raw pieces one pass over the range's events is cheaper
_RANGES_PER_READ = 400

# Partials of one (series or group, window): [count, sum, min, max, latest_ts, latest_id, latest_value].
_Cell = list[Any]


_Ranges = list[tuple[int, int, int]]
_Project = Callable[[str], tuple[str, ...]]  # stored dims JSON -> the query's group values


def _split(edges: list[int], from_ms: int, to_ms: int) -> tuple[_Ranges, dict[int, _Ranges]]:
    """Raw pieces (window, lo ms, hi ms) and, per width, bucket ranges (window, first, end)."""
    raw: list[tuple[int, int, int]] = []
    cells: dict[int, list[tuple[int, int, int]]] = {QUARTER: [], DAY: []}
    for w in range(len(edges) - 1):
        a, b = max(edges[w], from_ms), min(edges[w + 1], to_ms)
        if a >= b:
            continue
        qa, qb = -(-a // QUARTER) * QUARTER, b // QUARTER * QUARTER
        if qa >= qb:
            raw.append((w, a, b))
            continue
        if a < qa:
            raw.append((w, a, qa))
        if qb < b:
            raw.append((w, qb, b))
        da, db = -(-qa // DAY) * DAY, qb // DAY * DAY
        if da < db:
            cells[DAY].append((w, da // DAY, db // DAY))
            if qa < da:
                cells[QUARTER].append((w, qa // QUARTER, da // QUARTER))
            if db < qb:
                cells[QUARTER].append((w, db // QUARTER, qb // QUARTER))
        else:
            cells[QUARTER].append((w, qa // QUARTER, qb // QUARTER))
    return raw, cells


def _series_filter(tenant: str | None) -> str:
    return ("" if tenant is None else
            "AND series_id IN (SELECT series_id FROM sbt_metering_series WHERE meter_seq = :meter "
            "AND tenant_id = :tenant)")


def _rollup_cells(conn: Connection, meter_seq: int, width: int, ranges: _Ranges, tenant: str | None,
                  by_dims: bool, latest: bool, out: dict[Any, _Cell], project: _Project) -> None:
    # Windows are disjoint, so chunks of ranges merge exactly (and keep each CASE small).
    for i in range(0, len(ranges), _RANGES_PER_READ):
        _rollup_chunk(conn, meter_seq, width, ranges[i:i + _RANGES_PER_READ], tenant, by_dims, latest, out, project)


def _rollup_chunk(conn: Connection, meter_seq: int, width: int, ranges: _Ranges, tenant: str | None,
                  by_dims: bool, latest: bool, out: dict[Any, _Cell], project: _Project) -> None:
    # The window of a cell: a CASE over the ranges (integers computed here, so inlined), grouped with the
    # series' tenant (and dimensions when the query groups by any) in the database: one row per answer cell.
    case = "CASE " + " ".join(f"WHEN bucket >= {int(lo)} AND bucket < {int(hi)} THEN {int(w)}"
                              for w, lo, hi in ranges) + " END"
    params = {"meter": meter_seq, "width": width, "lo": min(r[1] for r in ranges), "hi": max(r[2] for r in ranges),
              "tenant": tenant}
    cells = (f"SELECT series_id, count, sum, min, max, latest_ts, latest_id, latest_value, {case} AS w "
             "FROM sbt_metering_rollups WHERE meter_seq = :meter AND width = :width AND bucket >= :lo "
             f"AND bucket < :hi {_series_filter(tenant)}")
    dims = "s.dims" if by_dims else "'[]'"
    group = "s.tenant_id, s.dims, x.w" if by_dims else "s.tenant_id, x.w"
    joined = f"FROM ({cells}) AS x JOIN sbt_metering_series AS s ON s.series_id = x.series_id WHERE x.w IS NOT NULL"
    if not latest:
        rows = conn.execute(sa.text(
            f"SELECT s.tenant_id, {dims}, x.w, sum(x.count), sum(x.sum), min(x.min), max(x.max) {joined} "
            f"GROUP BY {group}"), params).all()
        for t, d, w, cnt, total, low, high in rows:
            _merge(out, (t, project(d), w), [int(cnt), float(total), float(low), float(high), None, None, None])
        return
    # LATEST: per answer cell the rollup cell with the latest (time, id), and the count.
    rows = conn.execute(sa.text(
        f"SELECT tenant_id, d, w, latest_ts, latest_id, latest_value, cnt FROM ("
        f"SELECT s.tenant_id, {dims} AS d, x.w, x.latest_ts, x.latest_id, x.latest_value, "
        f"row_number() OVER (PARTITION BY {group} ORDER BY x.latest_ts DESC, x.latest_id DESC) AS rn, "
        f"sum(x.count) OVER (PARTITION BY {group}) AS cnt {joined}) AS y WHERE rn = 1"), params).all()
    for t, d, w, lts, lid, lval, cnt in rows:
        _merge(out, (t, project(d), w), [int(cnt), 0.0, 0.0, 0.0, lts, lid, lval])


def _merge(out: dict[Any, _Cell], key: Any, cell: _Cell) -> None:
    have = out.get(key)
    if have is None:
        out[key] = cell
        return
    have[0] += cell[0]
    have[1] += cell[1]
    have[2] = min(have[2], cell[2])
    have[3] = max(have[3], cell[3])
    if cell[4] is not None and (have[4] is None or (cell[4], cell[5]) > (have[4], have[5])):
        have[4], have[5], have[6] = cell[4], cell[5], cell[6]


def _raw_events(conn: Connection, meter_seq: int, pieces: list[tuple[int, int]], tenant: str | None) -> Any:
    ors = " OR ".join(f"(ts >= :a{i} AND ts < :b{i})" for i in range(len(pieces)))
    params: dict[str, Any] = {"meter": meter_seq, "tenant": tenant}
    for i, (a, b) in enumerate(pieces):
        params[f"a{i}"], params[f"b{i}"] = a, b
    lo, hi = min(p[0] for p in pieces), max(p[1] for p in pieces)
    params["lo"], params["hi"] = lo, hi
    return conn.execute(sa.text(
        "SELECT series_id, ts, value, text, event_id FROM sbt_metering_events "
        f"WHERE meter_seq = :meter AND ts >= :lo AND ts < :hi AND NOT cancelled AND ({ors}) "
        + _series_filter(tenant)), params)


class Answers:
    """The last answers of usage queries on PostgreSQL, each kept with the database snapshot it was read
    under (``pg_current_snapshot()``): equal snapshots mean no transaction committed in between, so the
    answer is still exact. The pages of one query (``limit`` rows each) are then cut from one computation
    instead of one each, as long as nothing is written meanwhile. SQLite answers are not kept."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[Any, ...], tuple[list[Any], dict[Any, _Cell], dict[Any, set[str]]]] = (
            OrderedDict())

    def get(self, key: tuple[Any, ...]) -> tuple[list[Any], dict[Any, _Cell], dict[Any, set[str]]] | None:
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], answer: tuple[list[Any], dict[Any, _Cell], dict[Any, set[str]]]) -> None:
        with self._lock:
            self._kept[key] = answer
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)


def fetch_usage(store: Store, conn: Connection, meter: MeterRow, query: UsageQuery,
                series_cache: dict[int, dict[int, tuple[str, tuple[str, ...]]]],
                answers: Answers | None = None) -> Page[UsageRow]:
    """One page of ``query`` on ``meter`` (see the module docstring).

    :raises BadRequestError: a groupBy the meter does not declare, a bad token, too many windows.
    """
    m = meter.meter
    unknown = [name for name in query.group_by if name not in m.group_by]
    if unknown:
        declared = ", ".join(m.group_by) or "none"
        raise BadRequestError(f"groupBy {', '.join(unknown)} is not a dimension of meter {m.meter_id} "
                              f"(declared: {declared})")
    offset = decode_usage_token(m.meter_id, query)
    from_ms, to_ms = ceil_ms(query.from_), ceil_ms(query.to)
    edges = window_edges(from_ms, to_ms, query.window_size, query.zone)
    key = None
    if answers is not None and store.postgres:
        snapshot = conn.execute(sa.text("SELECT pg_current_snapshot()::text")).scalar()
        key = (meter.seq, m.aggregation, from_ms, to_ms, query.window_size, query.window_time_zone,
               query.tenant_id, query.group_by, snapshot)
    answer = answers.get(key) if answers is not None and key is not None else None
    if answer is None:
        answer = _answer(store, conn, meter, query, edges, from_ms, to_ms, series_cache)
        if answers is not None and key is not None:
            answers.put(key, answer)
    keys, groups, texts = answer
    agg = m.aggregation
    page = keys[offset:offset + query.limit]
    zone = query.zone
    items = []
    for key_ in page:
        cnt, total, low, high, _, _, lval = groups[key_]
        value = {Aggregation.COUNT: float(cnt), Aggregation.SUM: total, Aggregation.AVG: total / cnt if cnt else 0.0,
                 Aggregation.MIN: low, Aggregation.MAX: high, Aggregation.LATEST: lval,
                 Aggregation.UNIQUE_COUNT: float(len(texts.get(key_, ())))}[agg]
        w = key_[2]
        if query.window_size is None:
            start, end = query.from_, query.to
        else:
            start, end = ms_to_datetime(edges[w], zone), ms_to_datetime(edges[w + 1], zone)
        items.append(UsageRow(key_[0], start, end, float(value), dict(zip(query.group_by, key_[1], strict=True))))
    stop = offset + len(page)
    token = encode_usage_token(stop, m.meter_id, query) if stop < len(keys) else None
    return Page(items=items, next_token=token)


def _answer(store: Store, conn: Connection, meter: MeterRow, query: UsageQuery, edges: list[int], from_ms: int,
            to_ms: int, series_cache: dict[int, dict[int, tuple[str, tuple[str, ...]]]],
            ) -> tuple[list[Any], dict[Any, _Cell], dict[Any, set[str]]]:
    """Every answer cell of ``query``, ordered: (sorted keys, cells by key, UNIQUE_COUNT texts by key)."""
    m = meter.meter
    agg = m.aggregation
    tenant = query.tenant_id
    positions = [m.group_by.index(name) for name in query.group_by]
    parsed: dict[str, tuple[str, ...]] = {}

    def project(dims: str) -> tuple[str, ...]:
        got = parsed.get(dims)
        if got is None:
            values = json.loads(dims)
            got = parsed[dims] = tuple(values[p] for p in positions) if positions else ()
        return got

    # Answer cells keyed by (tenant id, group values, window).
    groups: dict[tuple[str, tuple[str, ...], int], _Cell] = {}
    texts: dict[tuple[str, tuple[str, ...], int], set[str]] = defaultdict(set)
    use_rollups = agg is not Aggregation.UNIQUE_COUNT and query.window_size is not WindowSize.MINUTE
    raw, ranges = _split(edges, from_ms, to_ms) if use_rollups else ([], {})
    if use_rollups and len(raw) > _MAX_PIECES:
        use_rollups, raw = False, []
    if use_rollups:
        for width, rs in ranges.items():
            if rs:
                _rollup_cells(conn, meter.seq, width, rs, tenant, bool(positions), agg is Aggregation.LATEST,
                              groups, project)
        pieces = [(a, b) for _, a, b in raw]
    else:
        pieces = [(from_ms, to_ms)] if from_ms < to_ms else []
    if pieces:
        rows = _raw_events(conn, meter.seq, pieces, tenant).all()
        series = series_cache.get(meter.seq)
        if series is None or any(r[0] not in series for r in rows):
            series = series_cache[meter.seq] = store.series_of_meter(conn, meter.seq)
        for sid, ts, value, text, event_id in rows:
            t, dims = series[sid]
            key = (t, tuple(dims[p] for p in positions), bisect_right(edges, ts) - 1)
            if agg is Aggregation.UNIQUE_COUNT:
                texts[key].add(text)
                _merge(groups, key, [1, 0.0, 0.0, 0.0, None, None, None])
            else:
                _merge(groups, key, [1, value, value, value, ts, event_id, value])
    # Order: tenant id, window start, group values.
    keys = sorted(groups, key=lambda k: (k[0], k[2], k[1]))
    return keys, groups, dict(texts)
