"""``metering_fetch_usage`` on the database: windows from rollup cells where whole buckets fit, events at
the edges, then ``memory``'s grouping, order and pages.

Each window ``[a, b)`` (cut to the query's ``[from, to)``) splits into whole UTC days, whole UTC half hours
around them and raw pieces the half-hour grid cannot cover (a ``from``/``to`` off the grid, the quarter
hours of Asia/Kathmandu's windows); each part is read with one statement per source (day cells, 30-minute
cells, events), folded by (series, window) then grouped by tenant (and dimensions when the query groups by
any) in the database, so a 30-day DAY query in UTC reads one cell per series and day, in Europe/Paris or
Asia/Kolkata 46 to 50 half-hour cells per series and day. A query by tenant alone whose windows are whole
UTC days reads the tenant day cells instead: one per tenant and day. When every window is one UTC day a
cell is a row, and a page is one statement walking the cells' key from the token's row on
(:func:`_single_day_page`). A cell's window: PostgreSQL's ``width_bucket``
over the window edges (a binary search); on SQLite a ``CASE`` over the ranges. LATEST takes the cell with
the latest (event time, event id). UNIQUE_COUNT reads events only (distinct texts cannot be added up), as
does every window once more than :data:`_MAX_PIECES` raw pieces would be needed (MINUTE windows, HOUR
windows of a quarter-hour zone).

Pages: rows are ordered by (tenant, window, group values); the token carries the last row's key, and a
page computes only the tenants from that key on, a few at a time until it has ``limit`` rows and knows
whether one more follows. So every page costs about its own rows, however many pages the query has,
and a write between pages neither repeats nor skips a row (a token without a key, from an older
release, still reads as an offset into the whole answer).
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sbt_core.errors import BadRequestError
from sbt_core.metering import (
    ceil_ms,
    decode_usage_position,
    encode_usage_token,
    ms_to_datetime,
    window_edges,
)
from sbt_core.models import Aggregation, Page, UsageQuery, UsageRow, WindowSize

from ._schema import DAY, HALF_HOUR
from ._store import MeterRow, Store

__all__ = ["fetch_usage"]

_MAX_PIECES = 64  # beyond this many raw runs one pass over the range's events is cheaper
_RANGES_PER_READ = 400  # SQLite: ranges per CASE (one statement each)
_TENANTS_PER_READ = 5000  # tenants named in one statement (SQLite takes 32,766 parameters at most)
#: A count summed as an integer: PostgreSQL sums bigints as numeric, which psycopg reads as Decimal (slow to
#: make and to turn into an int, for each of a page's rows).
_COUNT = "CAST(sum(count) AS BIGINT)"
_MALFORMED = "next_token is malformed; pass the token of the previous page unchanged"

# Partials of one (series or group, window): [count, sum, min, max, latest_ts, latest_id, latest_value].
_Cell = list[Any]
_Key = tuple[str, int, tuple[str, ...]]  # (tenant id, window index, group values): the rows' order
_Ranges = list[tuple[int, int, int]]  # (window, first, end): bucket numbers or event times
_Project = Callable[[str], tuple[str, ...]]  # stored dims JSON -> the query's group values


def _split(edges: list[int], from_ms: int, to_ms: int) -> tuple[_Ranges, dict[int, _Ranges]]:
    """Raw pieces (window, lo ms, hi ms) and, per width, bucket ranges (window, first, end)."""
    raw: _Ranges = []
    cells: dict[int, _Ranges] = {HALF_HOUR: [], DAY: []}
    for w in range(len(edges) - 1):
        a, b = max(edges[w], from_ms), min(edges[w + 1], to_ms)
        if a >= b:
            continue
        ha, hb = -(-a // HALF_HOUR) * HALF_HOUR, b // HALF_HOUR * HALF_HOUR
        if ha >= hb:
            raw.append((w, a, b))
            continue
        if a < ha:
            raw.append((w, a, ha))
        if hb < b:
            raw.append((w, hb, b))
        da, db = -(-ha // DAY) * DAY, hb // DAY * DAY
        if da < db:
            cells[DAY].append((w, da // DAY, db // DAY))
            if ha < da:
                cells[HALF_HOUR].append((w, ha // HALF_HOUR, da // HALF_HOUR))
            if db < hb:
                cells[HALF_HOUR].append((w, db // HALF_HOUR, hb // HALF_HOUR))
        else:
            cells[HALF_HOUR].append((w, ha // HALF_HOUR, hb // HALF_HOUR))
    return raw, cells


def _runs(ranges: _Ranges) -> list[tuple[int, int]]:
    """The union of ranges as maximal [lo, hi) runs (adjacent windows' ranges join)."""
    runs: list[list[int]] = []
    for _, lo, hi in sorted(ranges, key=lambda r: r[1]):
        if runs and runs[-1][1] == lo:
            runs[-1][1] = hi
        else:
            runs.append([lo, hi])
    return [(lo, hi) for lo, hi in runs]


def _within(column: str, runs: list[tuple[int, int]]) -> str:
    # Integers computed here, so inlined (a handful of runs; the statement stays small). The outer bounds
    # first, so that an index on the column is walked over them only.
    ors = " OR ".join(f"({column} >= {int(lo)} AND {column} < {int(hi)})" for lo, hi in runs)
    bounds = f"{column} >= {int(runs[0][0])} AND {column} < {int(runs[-1][1])}"
    return bounds + (f" AND ({ors})" if len(runs) > 1 else "")


def _case(column: str, ranges: _Ranges) -> str:
    return "CASE " + " ".join(f"WHEN {column} >= {int(lo)} AND {column} < {int(hi)} THEN {int(w)}"
                              for w, lo, hi in ranges) + " END"


class _Read:
    """What every statement of one page shares: the meter, the query's shape, the tenants read."""

    def __init__(self, conn: Connection, meter_seq: int, edges: list[int], tenants: list[str] | None,
                 by_dims: bool, latest: bool, postgres: bool, project: _Project) -> None:
        self.conn, self.meter_seq, self.edges, self.tenants = conn, meter_seq, edges, tenants
        self.by_dims, self.latest, self.postgres, self.project = by_dims, latest, postgres, project

    def series_filter(self, always: bool = False) -> str:
        """The series of the tenants read; ``always``: even when every tenant is read, since rollups are
        keyed by series before bucket (PostgreSQL then walks the key once per series: an array, not a
        join the planner could turn into a scan of every bucket of the width)."""
        if self.tenants is None and not always:
            return ""
        tenants = "" if self.tenants is None else "AND tenant_id IN :tenants"
        select = f"SELECT series_id FROM sbt_metering_series WHERE meter_seq = :meter {tenants}"
        return f"AND series_id = ANY(ARRAY({select}))" if self.postgres else f"AND series_id IN ({select})"

    def execute(self, sql: str, params: dict[str, Any]) -> Sequence[Any]:
        stmt = sa.text(sql)
        params = {**params, "meter": self.meter_seq}
        if self.tenants is not None:
            stmt = stmt.bindparams(sa.bindparam("tenants", expanding=True))
            params["tenants"] = self.tenants
        return self.conn.execute(stmt, params).all()  # one fetch, not one per row

    def cells(self, width: int, ranges: _Ranges, out: dict[_Key, _Cell]) -> None:
        """Rollup cells of one width over bucket ranges, merged into ``out``."""
        cols = "series_id, count, sum, min, max, latest_ts, latest_id, latest_value"
        where = f"FROM sbt_metering_rollups WHERE meter_seq = :meter AND width = {int(width)}"
        if self.postgres:
            self.group(f"SELECT {cols}, width_bucket(bucket * {int(width)}, CAST(:edges AS bigint[])) - 1 AS w "
                       f"{where} AND {_within('bucket', _runs(ranges))} {self.series_filter(True)}",
                       {"edges": self.edges}, out, fold=any(hi - lo > 1 for _, lo, hi in ranges))
            return
        for i in range(0, len(ranges), _RANGES_PER_READ):  # windows are disjoint: chunks merge exactly
            chunk = ranges[i:i + _RANGES_PER_READ]
            self.group(f"SELECT {cols}, {_case('bucket', chunk)} AS w {where} "
                       f"AND {_within('bucket', _runs(chunk))} {self.series_filter(True)}", {}, out)

    def tenant_days(self, ranges: _Ranges, out: dict[_Key, _Cell]) -> None:
        """Tenant day cells over day ranges, grouped by tenant and window in the database and merged into
        ``out``: a query by tenant alone whose windows are whole UTC days, some of them several, reads one
        row per tenant and day, whatever the tenant's number of series."""
        tenants = "AND tenant_id IN :tenants" if self.tenants is not None else ""
        cols = "tenant_id, count, sum, min, max, latest_ts, latest_id, latest_value"
        where = f"FROM sbt_metering_tenant_days WHERE meter_seq = :meter {tenants}"
        if self.postgres:
            self.group(f"SELECT {cols}, width_bucket(bucket * {DAY}, CAST(:edges AS bigint[])) - 1 AS w "
                       f"{where} AND {_within('bucket', _runs(ranges))}", {"edges": self.edges}, out, by_series=False)
            return
        for i in range(0, len(ranges), _RANGES_PER_READ):  # windows are disjoint: chunks merge exactly
            chunk = ranges[i:i + _RANGES_PER_READ]
            self.group(f"SELECT {cols}, {_case('bucket', chunk)} AS w {where} AND {_within('bucket', _runs(chunk))}",
                       {}, out, by_series=False)

    def events(self, pieces: _Ranges, out: dict[_Key, _Cell]) -> None:
        """Live events of raw pieces, each as a cell of one event, merged into ``out``."""
        cols = ("series_id, 1 AS count, value AS sum, value AS min, value AS max, ts AS latest_ts, "
                "event_id AS latest_id, value AS latest_value")
        def where(runs: list[tuple[int, int]]) -> str:
            return (f"FROM sbt_metering_events WHERE meter_seq = :meter AND {_within('ts', runs)} AND NOT cancelled "
                    f"{self.series_filter()}")

        if self.postgres:
            self.group(f"SELECT {cols}, width_bucket(ts, CAST(:edges AS bigint[])) - 1 AS w {where(_runs(pieces))}",
                       {"edges": self.edges}, out)
            return
        for i in range(0, len(pieces), _RANGES_PER_READ):
            chunk = pieces[i:i + _RANGES_PER_READ]
            self.group(f"SELECT {cols}, {_case('ts', chunk)} AS w {where(_runs(chunk))}", {}, out)

    def group(self, source: str, params: dict[str, Any], out: dict[_Key, _Cell], fold: bool = True,
              by_series: bool = True) -> None:
        """Group ``source`` (cells with a window ``w``) by tenant, (dimensions) and window in the database;
        ``fold``: by (series, window) first (worth it when a series has several cells per window);
        ``by_series``: the cells carry a ``series_id`` (else a ``tenant_id``, and the query no groupBy)."""
        # Texts grouped bytewise on PostgreSQL: the database's collation would compare them letter by
        # letter for nothing (the rows are put in order here).
        c = ' COLLATE "C"' if self.postgres else ""
        if by_series:
            tenant, dims = f"s.tenant_id{c}", f"s.dims{c}" if self.by_dims else "'[]'"
            joined = f"FROM ({source}) AS x JOIN sbt_metering_series AS s ON s.series_id = x.series_id"
        else:  # tenant day cells: one per tenant and day already (their column is collated "C")
            tenant, dims, joined, fold = "x.tenant_id", "'[]'", f"FROM ({source}) AS x", False
        group = f"{tenant}, {dims}, x.w" if self.by_dims else f"{tenant}, x.w"
        project = self.project
        if not self.latest:
            # Folded by (series, window) first: integers, hashed, so the texts' grouping sees one row per
            # series and window instead of one per cell or event.
            folded = (f"FROM (SELECT series_id, w, sum(count) AS count, sum(sum) AS sum, min(min) AS min, "
                      f"max(max) AS max FROM ({source}) AS c GROUP BY series_id, w) AS x "
                      "JOIN sbt_metering_series AS s ON s.series_id = x.series_id") if fold else joined
            for t, d, w, cnt, total, low, high in self.execute(
                    f"SELECT {tenant}, {dims}, x.w, {_COUNT}, sum(x.sum), min(x.min), max(x.max) {folded} "
                    f"GROUP BY {group}", params):
                _merge(out, (t, w, project(d)), [int(cnt), float(total), float(low), float(high), None, None, None])
            return
        # LATEST: per answer cell the source cell with the latest (time, id), and the count.
        for t, d, w, lts, lid, lval, cnt in self.execute(
                f"SELECT t, d, w, latest_ts, latest_id, latest_value, cnt FROM ("
                f"SELECT {tenant} AS t, {dims} AS d, x.w, x.latest_ts, x.latest_id, x.latest_value, "
                f"row_number() OVER (PARTITION BY {group} ORDER BY x.latest_ts DESC, x.latest_id DESC) AS rn, "
                f"sum(x.count) OVER (PARTITION BY {group}) AS cnt {joined}) AS y WHERE rn = 1", params):
            _merge(out, (t, w, project(d)), [int(cnt), 0.0, 0.0, 0.0, lts, lid, lval])

    def rows(self, lo: int, hi: int) -> Sequence[Any]:
        """Every live event in ``[lo, hi)``: (series id, time, value, text, event id)."""
        return self.execute(
            "SELECT series_id, ts, value, text, event_id FROM sbt_metering_events "
            f"WHERE meter_seq = :meter AND ts >= {int(lo)} AND ts < {int(hi)} AND NOT cancelled "
            f"{self.series_filter()}", {})


def _merge(out: dict[_Key, _Cell], key: _Key, cell: _Cell) -> None:
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


#: An answer cell's value per aggregation (UNIQUE_COUNT: the number of distinct texts, counted apart).
_VALUE: dict[Aggregation, Callable[[_Cell], float]] = {
    Aggregation.COUNT: lambda c: c[0], Aggregation.SUM: lambda c: c[1],
    Aggregation.AVG: lambda c: c[1] / c[0] if c[0] else 0.0, Aggregation.MIN: lambda c: c[2],
    Aggregation.MAX: lambda c: c[3], Aggregation.LATEST: lambda c: c[6], Aggregation.UNIQUE_COUNT: lambda c: 0.0}


def _after(raw: list[Any] | None, groups: int) -> _Key | None:
    """The last row's key of a token (tenant, window, group values), checked.

    :raises BadRequestError: not a key this module wrote."""
    if raw is None:
        return None
    if (len(raw) != 3 or not isinstance(raw[0], str) or not isinstance(raw[1], int) or isinstance(raw[1], bool)
            or not isinstance(raw[2], list) or len(raw[2]) != groups or not all(isinstance(g, str) for g in raw[2])):
        raise BadRequestError(_MALFORMED)
    return raw[0], raw[1], tuple(raw[2])


def fetch_usage(store: Store, conn: Connection, meter: MeterRow, query: UsageQuery,
                series_cache: dict[int, dict[int, tuple[str, tuple[str, ...]]]]) -> Page[UsageRow]:
    """One page of ``query`` on ``meter`` (see the module docstring).

    :raises BadRequestError: a groupBy the meter does not declare, a bad token, too many windows.
    """
    m = meter.meter
    unknown = [name for name in query.group_by if name not in m.group_by]
    if unknown:
        declared = ", ".join(m.group_by) or "none"
        raise BadRequestError(f"groupBy {', '.join(unknown)} is not a dimension of meter {m.meter_id} "
                              f"(declared: {declared})")
    offset, raw_after = decode_usage_position(m.meter_id, query)
    after = _after(raw_after, len(query.group_by))
    from_ms, to_ms = ceil_ms(query.from_), ceil_ms(query.to)
    edges = window_edges(from_ms, to_ms, query.window_size, query.zone)
    limit = query.limit
    if after is not None or not offset:
        days = _single_days(meter, query, edges, from_ms, to_ms)
        if days is not None:
            return _single_day_page(conn, meter, query, edges, days, offset, after)
    if store.postgres:
        # For this read-only transaction, in one statement: psycopg prepares a statement run five times,
        # and PostgreSQL's generic plan for it then guesses the bucket and tenant ranges instead of seeing
        # them. And (but for LATEST) no sorts: the planner cannot tell how many cells an array of series
        # selects, guesses a handful, and groups them by sorting; every grouping here is better hashed.
        # LATEST's window function must sort: forbidding it there turns the plan into nested loops a
        # hundred times slower.
        sort = "on" if m.aggregation is Aggregation.LATEST else "off"
        conn.exec_driver_sql(f"SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                             f"set_config('enable_sort', '{sort}', true)")

    # Tenants with any series of the meter, in row order, each with its series count (a bound on its
    # rows per window), so a page reads the few tenants it shows.
    c = "SELECT tenant_id, count(*) FROM sbt_metering_series WHERE meter_seq = :meter"
    params: dict[str, Any] = {"meter": meter.seq}
    if query.tenant_id is not None:
        c, params["tenant"] = c + " AND tenant_id = :tenant", query.tenant_id
    tenants = sorted((str(t), int(n)) for t, n in conn.execute(sa.text(c + " GROUP BY tenant_id"), params))
    names = [t for t, _ in tenants]

    found: list[_Key] = []
    groups: dict[_Key, _Cell] = {}
    texts: dict[_Key, set[str]] = {}
    if after is None and offset:
        # A token without a key: an offset into the whole answer.
        found, groups, texts = _answer(store, conn, meter, query, edges, from_ms, to_ms, series_cache,
                                       None if query.tenant_id is None else names)
        found = found[offset:]
    else:
        i = bisect_left(names, after[0]) if after is not None else 0
        windows = len(edges) - 1
        by_dims = bool(query.group_by)
        scale = 1
        while i < len(tenants) and len(found) <= limit:
            j, bound = i, 0
            while j < len(tenants) and bound < (limit + 1 - len(found)) * scale and j - i < _TENANTS_PER_READ:
                # The tenant of the token's key has rows only in the windows from the key's on.
                left = windows - after[1] if after is not None and names[j] == after[0] else windows
                bound += left * (tenants[j][1] if by_dims else 1)
                j += 1
            every = query.tenant_id is None and i == 0 and j == len(tenants)
            chunk = None if every else names[i:j]
            keys, got, txt = _answer(store, conn, meter, query, edges, from_ms, to_ms, series_cache, chunk)
            if after is not None:
                keys = [k for k in keys if k > after]
            found += keys
            groups.update(got)
            texts.update(txt)
            i, scale = j, scale * 4  # tenants with fewer rows than their bound: read more at once
    page = found[:limit]
    agg = m.aggregation
    unique = agg is Aggregation.UNIQUE_COUNT
    zone = query.zone
    starts: dict[int, datetime] = {}

    def at(ms: int) -> datetime:
        got = starts.get(ms)
        if got is None:
            got = starts[ms] = ms_to_datetime(ms, zone)
        return got

    value = _VALUE[agg]
    group_names = query.group_by
    items = []
    for key in page:
        w = key[1]
        if query.window_size is None:
            start, end = query.from_, query.to
        else:
            start, end = at(edges[w]), at(edges[w + 1])
        cell = groups[key]
        items.append(UsageRow(key[0], start, end, float(len(texts.get(key, ())) if unique else value(cell)),
                              dict(zip(group_names, key[2], strict=True))))
    token = None
    if len(found) > limit:
        last = page[-1]
        token = encode_usage_token(offset + len(page), m.meter_id, query, [last[0], last[1], list(last[2])])
    return Page(items=items, next_token=token)


def _single_days(meter: MeterRow, query: UsageQuery, edges: list[int], from_ms: int, to_ms: int) -> _Ranges | None:
    """Each window's day ``(window, day, day + 1)`` when the tenant day cells are the answer's rows one for
    one: DAY windows that are whole UTC days once cut to ``[from, to)``, no groupBy, an aggregation the
    cells keep; else None."""
    if (query.window_size is not WindowSize.DAY or query.group_by
            or meter.meter.aggregation is Aggregation.UNIQUE_COUNT):
        return None
    raw, ranges = _split(edges, from_ms, to_ms)
    days = ranges[DAY]
    if raw or ranges[HALF_HOUR] or not days or any(end - day != 1 for _, day, end in days):
        return None
    return days


#: The value of a row read from a tenant day cell, per aggregation: only the column it needs travels.
_DAY_VALUE = {Aggregation.COUNT: "count", Aggregation.SUM: "sum", Aggregation.AVG: "sum / count",
              Aggregation.MIN: "min", Aggregation.MAX: "max", Aggregation.LATEST: "latest_value"}


def _single_day_page(conn: Connection, meter: MeterRow, query: UsageQuery, edges: list[int], days: _Ranges,
                     offset: int, after: _Key | None) -> Page[UsageRow]:
    """A page of single-day windows (:func:`_single_days`) in one statement: it walks the tenant day cells'
    key (meter, tenant, day) from the token's row on and stops after ``limit + 1`` rows, so a page costs
    its own rows, with no list of tenants, no grouping and no sort. The driver's own cursor returns plain
    tuples (SQLAlchemy's Row per row would cost a fifth of a 1,000-row page)."""
    postgres = conn.dialect.name == "postgresql"
    window = {day: w for w, day, _ in days}
    params: dict[str, Any] = {"meter": meter.seq, "n": query.limit + 1}
    where = f"meter_seq = {{meter}} AND {_within('bucket', _runs(days))}"
    if query.tenant_id is not None:
        where, params["tenant"] = where + " AND tenant_id = {tenant}", query.tenant_id
    if after is not None:
        # Later tenants, or the key's tenant on a day after its window's.
        i = bisect_right([w for w, _, _ in days], after[1]) - 1
        where += " AND (tenant_id, bucket) > ({after}, {day})"
        params["after"], params["day"] = after[0], days[i][1] if i >= 0 else -(2**62)
    sql = (f"SELECT tenant_id, bucket, {_DAY_VALUE[meter.meter.aggregation]} FROM sbt_metering_tenant_days "
           f"WHERE {where} ORDER BY tenant_id, bucket LIMIT {{n}}")
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql.format(**{k: f"%({k})s" if postgres else f":{k}" for k in params}), params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    finally:
        cursor.close()
    page = rows[:query.limit]
    spans: dict[int, tuple[datetime, datetime]] = {}
    for _, day, _ in page:
        w = window[day]
        if w not in spans:
            spans[w] = (ms_to_datetime(edges[w], query.zone), ms_to_datetime(edges[w + 1], query.zone))
    items = [UsageRow(tenant, *spans[window[day]], float(value), {}) for tenant, day, value in page]
    token = None
    if len(rows) > query.limit:
        last = page[-1]
        token = encode_usage_token(offset + len(page), meter.meter.meter_id, query, [last[0], window[last[1]], []])
    return Page(items=items, next_token=token)


def _answer(store: Store, conn: Connection, meter: MeterRow, query: UsageQuery, edges: list[int], from_ms: int,
            to_ms: int, series_cache: dict[int, dict[int, tuple[str, tuple[str, ...]]]],
            tenants: Sequence[str] | None) -> tuple[list[_Key], dict[_Key, _Cell], dict[_Key, set[str]]]:
    """Every answer cell of ``query`` for ``tenants`` (None: all), ordered: (sorted keys, cells by key,
    UNIQUE_COUNT texts by key)."""
    m = meter.meter
    agg = m.aggregation
    positions = [m.group_by.index(name) for name in query.group_by]
    parsed: dict[str, tuple[str, ...]] = {}

    def project(dims: str) -> tuple[str, ...]:
        got = parsed.get(dims)
        if got is None:
            values = json.loads(dims)
            got = parsed[dims] = tuple(values[p] for p in positions) if positions else ()
        return got

    read = _Read(conn, meter.seq, edges, None if tenants is None else list(tenants), bool(positions),
                 agg is Aggregation.LATEST, store.postgres, project)
    groups: dict[_Key, _Cell] = {}
    texts: dict[_Key, set[str]] = defaultdict(set)
    in_sql = agg is not Aggregation.UNIQUE_COUNT
    use_rollups = in_sql and query.window_size is not WindowSize.MINUTE
    raw, ranges = _split(edges, from_ms, to_ms) if use_rollups else ([], {})
    if use_rollups and len(_runs(raw)) > _MAX_PIECES:
        use_rollups, raw = False, []
    if use_rollups and not positions and not raw and not ranges[HALF_HOUR]:
        read.tenant_days(ranges[DAY], groups)  # by tenant alone, in whole UTC days
    elif use_rollups:
        for width, rs in ranges.items():
            if rs:
                read.cells(width, rs, groups)
    elif from_ms < to_ms:
        raw = [(w, max(edges[w], from_ms), min(edges[w + 1], to_ms)) for w in range(len(edges) - 1)]
        raw = [r for r in raw if r[1] < r[2]]
    # Raw pieces grouped in the database, unless distinct texts are needed or (SQLite) so many windows
    # that a CASE per event would cost more than reading the events here.
    if raw and in_sql and (store.postgres or use_rollups or len(raw) <= _MAX_PIECES):
        read.events(raw, groups)
    elif raw:  # every window from events, over [from, to)
        rows = read.rows(min(p[1] for p in raw), max(p[2] for p in raw))
        series = series_cache.get(meter.seq)
        if series is None or any(r[0] not in series for r in rows):
            series = series_cache[meter.seq] = store.series_of_meter(conn, meter.seq)
        for sid, ts, value, text, event_id in rows:
            t, dims = series[sid]
            key = (t, bisect_right(edges, ts) - 1, tuple(dims[p] for p in positions))
            if agg is Aggregation.UNIQUE_COUNT:
                texts[key].add(text)
                _merge(groups, key, [1, 0.0, 0.0, 0.0, None, None, None])
            else:
                _merge(groups, key, [1, value, value, value, ts, event_id, value])
    return sorted(groups), groups, dict(texts)
