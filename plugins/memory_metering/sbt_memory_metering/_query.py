"""``metering_fetch_usage`` over a :class:`MeterStore`: windows, groups, exact aggregation, pages.

Two paths give the same numbers. The grid path (SUM, COUNT, AVG, MIN, MAX) reads whole 15-minute
buckets from the pre-aggregation grid and only the pieces of buckets cut by ``from``/``to`` from raw
events. The raw path (LATEST, UNIQUE_COUNT, or a meter without a grid) scans the meter's columns.
Rows come out ordered by tenant id, window start, then group values (text order), and only for
(tenant, window, group) cells holding at least one event that is not cancelled (as OpenMeter's
GROUP BY answers).
"""

from __future__ import annotations

import functools
from typing import cast
from zoneinfo import ZoneInfo

import attrs
import numpy as np

from sbt_core.errors import BadRequestError
from sbt_core.metering import QUARTER_MS, ceil_ms, decode_usage_token, encode_usage_token, ms_to_datetime, window_edges
from sbt_core.models import Aggregation, Page, UsageQuery, UsageRow, WindowSize

from ._rollup import Partials
from ._store import MeterStore

__all__ = ["UsageResult", "run_query"]

_NEEDS_SUM = {Aggregation.SUM, Aggregation.AVG}
#: UNIQUE_COUNT marks distinct (cell, text) pairs in a bitmap up to this many bits (or 8 per event).
BITMAP_CELLS = 1 << 24
_MAX_PIECES = 64  # beyond this many raw pieces (odd zones, many windows) one raw pass is cheaper


@attrs.define
class UsageResult:
    """All rows of a query, as arrays in answer order (a page turns a slice into :class:`UsageRow`)."""

    query: UsageQuery
    edges: np.ndarray
    tenant: list[str]  # per group
    groups: list[dict[str, str]]  # per group
    group_idx: np.ndarray
    window_idx: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def page(self, meter_id: str) -> Page[UsageRow]:
        """The page ``query.next_token`` points at, with the token of the next one."""
        q = self.query
        offset = decode_usage_token(meter_id, q)
        stop = min(offset + q.limit, len(self.values))
        g_idx, w_idx = self.group_idx[offset:stop].tolist(), self.window_idx[offset:stop].tolist()
        values = self.values[offset:stop].tolist()
        tenant, groups = self.tenant, self.groups
        if q.window_size is None:
            start, end = q.from_, q.to
            items = [UsageRow(tenant[g], start, end, v, dict(groups[g])) for g, v in zip(g_idx, values, strict=True)]
        else:
            zone = q.zone
            used = set(w_idx)
            at = {w: ms_to_datetime(int(self.edges[w]), zone) for w in used | {w + 1 for w in used}}
            items = [UsageRow(tenant[g], at[w], at[w + 1], v, dict(groups[g]))
                     for g, w, v in zip(g_idx, w_idx, values, strict=True)]
        token = encode_usage_token(stop, meter_id, q) if stop < len(self.values) else None
        return Page(items=items, next_token=token)


def run_query(store: MeterStore, query: UsageQuery, tenant_code: int | None, tenant_names: list[str]) -> UsageResult:
    """Every row of ``query`` over ``store`` (already flushed). ``tenant_code`` is the code of
    ``query.tenant_id`` (None: no filter; -1: a tenant never seen, so no rows).

    :raises BadRequestError: a groupBy name the meter does not declare.
    """
    meter = store.meter
    unknown = [name for name in query.group_by if name not in meter.group_by]
    if unknown:
        declared = ", ".join(meter.group_by) or "none"
        raise BadRequestError(f"groupBy {', '.join(unknown)} is not a dimension of meter {meter.meter_id} "
                              f"(declared: {declared})")
    from_ms, to_ms = ceil_ms(query.from_), ceil_ms(query.to)
    edges = _edges(from_ms, to_ms, query.window_size, query.window_time_zone)
    empty = UsageResult(query, edges, [], [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    grouping = _grouping(store, query.group_by, tenant_code, tenant_names)
    if grouping is None:
        return empty
    agg = meter.aggregation
    # MINUTE windows are narrower than a grid bucket: every window would be a raw piece.
    if store.rollup is not None and query.window_size is not WindowSize.MINUTE:
        cnt, value = _grid_path(store, agg, edges, from_ms, to_ms, grouping)
    else:
        cnt, value = _raw_path(store, agg, edges, from_ms, to_ms, grouping.group_of_series, grouping.n_groups)
    # Answer order: tenant id, window start, group values (text order).
    g_idx, w_idx = _answer_order(grouping, cnt > 0)
    return UsageResult(query, edges, grouping.tenant, grouping.groups, g_idx, w_idx, value[g_idx, w_idx])


def _answer_order(grouping: _Grouping, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group, window) indices of ``present`` cells ordered by tenant id, window, group values."""
    by_rank = grouping.rank_order  # groups sorted by (tenant id, group values)
    if grouping.one_group_per_tenant:
        # Row-major over groups in rank order is already tenant, then window.
        r_idx, w_idx = np.nonzero(present[by_rank])
        return by_rank[r_idx], w_idx
    g_idx, w_idx = np.nonzero(present)
    k = present.shape[1]
    spread = int(grouping.d_rank.max()) + 1
    key = (grouping.t_rank[g_idx] * k + w_idx) * spread + grouping.d_rank[g_idx]
    order = np.argsort(key, kind="stable")
    return g_idx[order], w_idx[order]


@attrs.frozen
class _Grouping:
    """How the series of a meter fold into the groups of a query (cached per meter until a series is added)."""

    n_groups: int
    selected: np.ndarray  # selected series ids
    group_of_sel: np.ndarray  # group of each selected series
    group_of_series: np.ndarray  # group of every series, -1 when not selected
    series_by_group: np.ndarray  # selected series ids sorted by group
    starts: np.ndarray  # first position of each group in series_by_group
    tenant: list[str]  # tenant id of each group
    groups: list[dict[str, str]]  # dimension values of each group
    t_rank: np.ndarray  # dense rank of the tenant id
    d_rank: np.ndarray  # dense rank of the dimension values
    rank_order: np.ndarray  # groups sorted by (t_rank, d_rank)
    one_group_per_tenant: bool


def _grouping(store: MeterStore, group_by: tuple[str, ...], tenant_code: int | None,
              tenant_names: list[str]) -> _Grouping | None:
    tenants, dims = store.series_arrays()
    cache_key = (len(tenants), group_by, tenant_code)
    if cache_key in store.groupings:
        return cast("_Grouping | None", store.groupings[cache_key])
    result = None
    selected = np.arange(len(tenants)) if tenant_code is None else np.flatnonzero(tenants == tenant_code)
    if tenant_code != -1 and len(selected):
        positions = [store.meter.group_by.index(name) for name in group_by]
        keys = np.column_stack([tenants[selected]] + [dims[selected, p] for p in positions])
        uniq, group_of_sel = np.unique(keys, axis=0, return_inverse=True)
        group_of_sel = group_of_sel.reshape(-1)
        group_of_series = np.full(len(tenants), -1, dtype=np.int64)
        group_of_series[selected] = group_of_sel
        sel_order = np.argsort(group_of_sel, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(group_of_sel[sel_order]) != 0])
        names = [tenant_names[int(t)] for t in uniq[:, 0]]
        groups = [{name: store.dim_values[p][int(code)] for name, p, code in zip(group_by, positions, row[1:],
                                                                                 strict=True)}
                  for row in uniq.tolist()]
        t_rank, d_rank = _rank(names), _rank([tuple(g.values()) for g in groups])
        result = _Grouping(len(uniq), selected, group_of_sel, group_of_series, selected[sel_order], starts, names,
                           groups, t_rank, d_rank, np.lexsort((d_rank, t_rank)), len(set(names)) == len(names))
    if len(store.groupings) > 64:
        store.groupings.clear()
    store.groupings[cache_key] = result
    return result


@functools.lru_cache(maxsize=256)
def _edges(from_ms: int, to_ms: int, size: WindowSize | None, zone: str) -> np.ndarray:
    # Memo of pure calendar arithmetic (dashboards repeat the same ranges); read-only so it stays shared.
    edges = np.array(window_edges(from_ms, to_ms, size, ZoneInfo(zone)), dtype=np.int64)
    edges.flags.writeable = False
    return edges


def _rank(keys: list) -> np.ndarray:  # type: ignore[type-arg]
    """Dense rank of each key in sorted order (equal keys, equal rank)."""
    position = {key: i for i, key in enumerate(sorted(set(keys)))}
    return np.fromiter(map(position.__getitem__, keys), dtype=np.int64, count=len(keys))


def _finish(agg: Aggregation, p: Partials) -> np.ndarray:
    if agg is Aggregation.COUNT:
        return p.cnt.astype(np.float64)
    if agg is Aggregation.SUM:
        assert p.sum is not None
        return p.sum
    if agg is Aggregation.AVG:
        assert p.sum is not None
        with np.errstate(invalid="ignore", divide="ignore"):
            mean: np.ndarray = p.sum / p.cnt
            return mean
    if agg is Aggregation.MIN:
        assert p.mn is not None
        return p.mn
    assert p.mx is not None
    return p.mx


def _grid_path(store: MeterStore, agg: Aggregation, edges: np.ndarray, from_ms: int, to_ms: int,
               grouping: _Grouping) -> tuple[np.ndarray, np.ndarray]:
    rollup = store.rollup
    assert rollup is not None
    a = np.maximum(edges[:-1], from_ms)
    b = np.minimum(edges[1:], to_ms)
    lo_b = -(-a // QUARTER_MS)
    hi_b = b // QUARTER_MS
    whole = lo_b < hi_b
    # Pieces of buckets cut by the range (or by an odd boundary) come from raw events: before the
    # first whole bucket and after the last one of each window, or the whole window when it holds none.
    head_end = np.where(whole, lo_b * QUARTER_MS, b)
    tail_start = np.where(whole, hi_b * QUARTER_MS, b)
    lo_b = np.where(whole, lo_b, 0)
    hi_b = np.where(whole, hi_b, 0)
    starts = np.concatenate([a, tail_start])
    ends = np.concatenate([head_end, b])
    keep = starts < ends
    pieces = sorted(zip(starts[keep].tolist(), ends[keep].tolist(), strict=True))
    if len(pieces) > _MAX_PIECES:
        return _raw_path(store, agg, edges, from_ms, to_ms, grouping.group_of_series, grouping.n_groups)
    need_sum = agg in _NEEDS_SUM
    # Window-major cells of the selected series sorted by group; fold each group's columns with one
    # reduceat per aggregate, then turn the small (windows, groups) result into (groups, windows).
    p = rollup.partials(grouping.series_by_group, lo_b, hi_b, need_sum)
    starts = grouping.starts
    total = Partials(_fold(np.add, p.cnt, starts), _fold(np.add, p.sum, starts) if p.sum is not None else None,
                     _fold(np.minimum, p.mn, starts) if p.mn is not None else None,
                     _fold(np.maximum, p.mx, starts) if p.mx is not None else None)
    if pieces:
        total.merge(_raw_partials(store, edges, pieces, grouping.group_of_series, grouping.n_groups, need_sum,
                                  rollup.minmax))
    return total.cnt, _finish(agg, total)


def _fold(ufunc: np.ufunc, cells: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Fold the column groups of window-major ``cells`` (groups start at ``starts``): ``(groups, windows)``."""
    if len(starts) == cells.shape[1]:  # one series per group: nothing to fold
        return cells.T
    return ufunc.reduceat(cells, starts, axis=1).T


def _rows(store: MeterStore, pieces: list[tuple[int, int]], group_of_series: np.ndarray) -> np.ndarray:
    """Live rows with event time in one of ``pieces`` and a selected series (zone maps skip blocks)."""
    lo = min(p[0] for p in pieces)
    hi = max(p[1] for p in pieces)
    found = []
    for a, z in store.row_ranges(lo, hi):
        ts = store.ts[a:z]
        if len(pieces) == 1:
            mask = (ts >= lo) & (ts < hi)
        elif len(pieces) == 2:
            (a1, z1), (a2, z2) = pieces
            mask = ((ts >= a1) & (ts < z1)) | ((ts >= a2) & (ts < z2))
        else:  # sorted, disjoint pieces: inside one when an odd number of bounds are <= ts
            bounds = np.array(pieces, dtype=np.int64).reshape(-1)
            mask = np.searchsorted(bounds, ts, side="right") % 2 == 1
        rows = np.flatnonzero(mask) + a
        rows = rows[store.flags[rows] == 0]
        found.append(rows[group_of_series[store.ser[rows]] >= 0])
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _raw_partials(store: MeterStore, edges: np.ndarray, pieces: list[tuple[int, int]], group_of_series: np.ndarray,
                  n_groups: int, need_sum: bool, minmax: bool) -> Partials:
    k = len(edges) - 1
    rows = _rows(store, pieces, group_of_series)
    key = group_of_series[store.ser[rows]] * k + (np.searchsorted(edges, store.ts[rows], side="right") - 1)
    size = n_groups * k
    cnt = np.bincount(key, minlength=size).reshape(n_groups, k).astype(np.int64)
    total = np.bincount(key, weights=store.val[rows], minlength=size).reshape(n_groups, k) if need_sum else None
    mn: np.ndarray | None = None
    mx: np.ndarray | None = None
    if minmax:
        mn = np.full(size, np.inf)
        mx = np.full(size, -np.inf)
        np.minimum.at(mn, key, store.val[rows])
        np.maximum.at(mx, key, store.val[rows])
        mn, mx = mn.reshape(n_groups, k), mx.reshape(n_groups, k)
    return Partials(cnt, total, mn, mx)


def _raw_path(store: MeterStore, agg: Aggregation, edges: np.ndarray, from_ms: int, to_ms: int,
              group_of_series: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    k = len(edges) - 1
    size = n_groups * k
    if agg not in (Aggregation.LATEST, Aggregation.UNIQUE_COUNT):
        p = _raw_partials(store, edges, [(from_ms, to_ms)], group_of_series, n_groups, agg in _NEEDS_SUM,
                          agg in (Aggregation.MIN, Aggregation.MAX))
        return p.cnt, _finish(agg, p)
    rows = _rows(store, [(from_ms, to_ms)], group_of_series)
    ts = store.ts[rows]
    key = group_of_series[store.ser[rows]] * k + (np.searchsorted(edges, ts, side="right") - 1)
    cnt = np.bincount(key, minlength=size)
    value = np.zeros(size)
    if not len(rows):
        pass
    elif agg is Aggregation.LATEST:
        # Latest by event time (OpenMeter's argMax(value, time)); a tie goes to the later ingested.
        # Two passes of ufunc.at instead of a sort: the latest time per cell, then the last row among
        # the events at that time.
        latest = np.full(size, np.iinfo(np.int64).min)
        np.maximum.at(latest, key, ts)
        at_latest = ts == latest[key]
        last_row = np.full(size, -1)
        np.maximum.at(last_row, key[at_latest], rows[at_latest])
        filled = last_row >= 0
        value[filled] = store.val[last_row[filled]]
    else:
        # Distinct (cell, value text) pairs, counted per cell: a bitmap when it is small, else a sort.
        codes = store.val[rows].astype(np.int64)
        texts = max(len(store.texts), 1)
        pairs = key * texts + codes
        if size * texts <= max(8 * len(rows), BITMAP_CELLS):
            seen = np.zeros(size * texts, dtype=bool)
            seen[pairs] = True
            value = seen.reshape(size, texts).sum(axis=1).astype(np.float64)
        else:
            pairs.sort()
            distinct = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]
            value = np.bincount(distinct // texts, minlength=size).astype(np.float64)
    return cnt.reshape(n_groups, k), value.reshape(n_groups, k)
