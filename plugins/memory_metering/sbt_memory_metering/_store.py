"""Columnar storage of one meter's events: append, deduplicate, cancel, purge, pre-aggregate.

Per stored event: event time (int64 epoch ms), value (float64; for UNIQUE_COUNT the code of its
text), series id (int32: one series per (tenant, group-by dimension values)), a flag byte
(cancelled), and one dedup-index entry (uint64 identifier hash + uint32 row) - 33 bytes, plus the
meter's share of the 15-minute pre-aggregation grid (:mod:`._rollup`).

Events taken one at a time go to a small pending buffer first (``p_*``, appended by the engine's hot
path); :meth:`MeterStore.flush` folds it in
vectorized (hashing, dedup, pre-aggregation). Every read flushes first, so the buffer is invisible.
Not thread-safe by itself: the engine's lock guards every call.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np

from sbt_core.models import Aggregation, Meter

from ._ids import id_hashes
from ._rollup import Rollup
from ._windows import QUARTER_MS

__all__ = ["CANCELLED", "MeterStore"]

CANCELLED = 1  # flag bit of a cancelled event
#: Rows per zone-map block: the min and max event time of each block let a scan of a time range skip
#: blocks (events mostly arrive in time order, so recent ranges touch the last blocks only).
BLOCK = 1 << 16
_ROLLUP_AGGS = {Aggregation.SUM, Aggregation.COUNT, Aggregation.AVG, Aggregation.MIN, Aggregation.MAX}
_MIN_ROLLUP_CELLS = 1 << 18  # 8 MB: a young meter gets a grid while it is cheap


def _grown(old: np.ndarray, used: int, need: int) -> np.ndarray:
    # np.empty pages are not resident until written, so doubling the capacity costs no memory.
    new = np.empty(max(need, 2 * len(old), 1024), dtype=old.dtype)
    new[:used] = old[:used]
    return new


def _merge(older: tuple[np.ndarray, np.ndarray], newer: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted runs in O(n): each newer entry goes after the older entries not greater than it."""
    (h1, r1), (h2, r2) = older, newer
    at = np.searchsorted(h1, h2, side="right") + np.arange(len(h2))
    from_newer = np.zeros(len(h1) + len(h2), dtype=bool)
    from_newer[at] = True
    hashes = np.empty(len(from_newer), dtype=h1.dtype)
    rows = np.empty(len(from_newer), dtype=r1.dtype)
    hashes[at], rows[at] = h2, r2
    from_older = ~from_newer
    hashes[from_older], rows[from_older] = h1, r1
    return hashes, rows


class MeterStore:
    """Events of one meter. ``n`` rows are stored; row order is ingestion order."""

    def __init__(self, meter: Meter, *, dedup_window_ms: int, rollup_cells_per_event: float) -> None:
        self.meter = meter
        self.unique = meter.aggregation is Aggregation.UNIQUE_COUNT
        self.dedup_window_ms = dedup_window_ms
        self.rollup_cells_per_event = rollup_cells_per_event
        self.n = 0
        self.ts = np.empty(0, dtype=np.int64)
        self.val = np.empty(0, dtype=np.float64)
        self.ser = np.empty(0, dtype=np.int32)
        self.flags = np.empty(0, dtype=np.uint8)
        self.cancelled = 0
        # Series: (tenant code, dimension codes) -> series id.
        self.series: dict[tuple[int, tuple[int, ...]], int] = {}
        self.series_tenant: list[int] = []
        self.series_dims: list[tuple[int, ...]] = []
        self._series_by_text: dict[tuple[int, tuple[str, ...]], int] = {}
        #: Series by the engine's hot-path key: tenant id, or (tenant id, *dimension texts).
        self.series_by_key: dict[object, int] = {}
        self.dim_codes: list[dict[str, int]] = [{} for _ in meter.group_by]
        self.dim_values: list[list[str]] = [[] for _ in meter.group_by]
        self.texts: dict[str, int] = {}  # UNIQUE_COUNT value text -> code
        self.text_values: list[str] = []  # code -> text (the write-ahead log reads new ones by position)
        # Dedup index: sorted runs of (identifier hash, row), merged like an LSM tree.
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.rollup: Rollup | None = None
        self._rollup_wanted = meter.aggregation in _ROLLUP_AGGS and rollup_cells_per_event > 0
        self.min_ts = 0
        self.max_ts = -1
        self.zmin = np.zeros(0, dtype=np.int64)
        self.zmax = np.zeros(0, dtype=np.int64)
        # Pending one-at-a-time events.
        self.p_ts = array("q")
        self.p_val = array("d")
        self.p_ser = array("i")
        self.p_ids: list[str] = []
        self.p_recv = array("q")
        self._series_np: tuple[int, np.ndarray, np.ndarray] | None = None
        #: Query groupings by (series count, groupBy, tenant code): see ``_query._grouping``.
        self.groupings: dict[tuple[object, ...], object] = {}

    # -- codes ---------------------------------------------------------------------------------------

    def series_id(self, tenant: int, dims: tuple[str, ...]) -> int:
        """The series of a tenant code and dimension values (in ``meter.group_by`` order), created if new."""
        sid = self._series_by_text.get((tenant, dims))
        if sid is not None:
            return sid
        codes = []
        for i, text in enumerate(dims):
            table = self.dim_codes[i]
            code = table.get(text)
            if code is None:
                code = table[text] = len(table)
                self.dim_values[i].append(text)
            codes.append(code)
        key = (tenant, tuple(codes))
        sid = self.series.get(key)
        if sid is None:
            sid = self.series[key] = len(self.series_tenant)
            self.series_tenant.append(tenant)
            self.series_dims.append(key[1])
        self._series_by_text[(tenant, dims)] = sid
        return sid

    def text_code(self, text: str) -> int:
        """The code of a UNIQUE_COUNT value text."""
        code = self.texts.get(text)
        if code is None:
            code = self.texts[text] = len(self.texts)
            self.text_values.append(text)
        return code

    def series_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(tenant code per series, dimension codes per series (n_series, n_dims))``."""
        count = len(self.series_tenant)
        if self._series_np is None or self._series_np[0] != count:
            dims = np.array(self.series_dims, dtype=np.int64).reshape(count, len(self.meter.group_by))
            self._series_np = (count, np.array(self.series_tenant, dtype=np.int64), dims)
        return self._series_np[1], self._series_np[2]

    # -- ingest --------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Fold pending events into the columns (dedup, pre-aggregation)."""
        if not self.p_ids:
            return
        ts = np.frombuffer(self.p_ts, dtype=np.int64).copy()
        val = np.frombuffer(self.p_val, dtype=np.float64).copy()
        ser = np.frombuffer(self.p_ser, dtype=np.int32).copy()
        recv = np.frombuffer(self.p_recv, dtype=np.int64).copy()
        ids = self.p_ids
        self.p_ts, self.p_val, self.p_ser, self.p_recv, self.p_ids = array("q"), array("d"), array("i"), array("q"), []
        self.append(ts, val, ser, id_hashes(ids), recv)

    def append(self, ts: np.ndarray, val: np.ndarray, ser: np.ndarray, hashes: np.ndarray,
               recv: np.ndarray | int) -> np.ndarray:
        """Store validated events, dropping duplicates; returns the boolean mask of those stored.

        An event is a duplicate when a stored event (or an earlier one of this batch) has the same
        identifier hash and an event time later than its ``recv - dedup_window``. The clear cases are
        decided vectorized (a redelivered bulk load is a million clear duplicates); the rest - several
        stored occurrences, or occurrences older than the window - one by one, in ingestion order.
        """
        count = len(ts)
        if not count:
            return np.zeros(0, dtype=bool)
        recv_arr = np.broadcast_to(np.asarray(recv, dtype=np.int64), (count,))
        order = np.argsort(hashes)  # not stable (5x faster); ties are put in row order below
        sorted_h = hashes[order]
        repeat = np.zeros(count, dtype=bool)  # sorted positions whose hash repeats in the batch
        if count > 1:
            same = sorted_h[1:] == sorted_h[:-1]
            if same.any():
                repeat[1:] |= same
                repeat[:-1] |= same
                tied = np.flatnonzero(repeat)
                order[tied] = order[tied][np.lexsort((order[tied], sorted_h[tied]))]
        earliest = recv_arr[order] - self.dedup_window_ms
        dup = np.zeros(count, dtype=bool)  # sorted positions: clear duplicates
        unclear = np.zeros(count, dtype=bool)
        for run_h, run_rows in self.runs:
            pos = np.searchsorted(run_h, sorted_h)
            np.minimum(pos, len(run_h) - 1, out=pos)
            hit = run_h[pos] == sorted_h
            if hit.any():
                within = hit & (self.ts[run_rows[pos]] > earliest)
                dup |= within
                # The first stored occurrence is outside the window: another one may be inside.
                unclear |= hit & ~within
        if repeat.any():
            # Later occurrences in the batch are duplicates of the first one (lowest row) when it is
            # surely stored (no index hit) and inside their window. A group with anything less
            # clear goes one by one, whole.
            first = np.r_[True, sorted_h[1:] != sorted_h[:-1]]
            group = np.cumsum(first) - 1
            head = np.flatnonzero(first)[group]
            later = repeat & ~first
            head_stored = ~dup[head] & ~unclear[head]
            later_dup = later & (dup | (head_stored & (ts[order[head]] > earliest)))
            spoiled = np.zeros(int(group[-1]) + 1, dtype=bool)
            spoiled[group[(later & ~later_dup) | (repeat & unclear)]] = True
            dup |= later_dup
            unclear = (unclear & ~dup & ~repeat) | (repeat & spoiled[group])
        else:
            unclear &= ~dup
        keep_sorted = ~dup
        if unclear.any():
            positions = np.flatnonzero(unclear)
            by_row = positions[np.argsort(order[positions], kind="stable")]
            keep_sorted[by_row] = self._resolve(order[by_row], ts, hashes, recv_arr)
        if keep_sorted.all():
            self._store(ts, val, ser, sorted_h, order)
            return np.ones(count, dtype=bool)
        keep = np.zeros(count, dtype=bool)
        keep[order[keep_sorted]] = True
        rows = np.flatnonzero(keep)
        rank = np.empty(count, dtype=np.int64)
        rank[rows] = np.arange(len(rows))
        self._store(ts[rows], val[rows], ser[rows], sorted_h[keep_sorted], rank[order[keep_sorted]])
        return keep

    def _resolve(self, suspects: np.ndarray, ts: np.ndarray, hashes: np.ndarray, recv: np.ndarray) -> list[bool]:
        """The rare path, in ingestion order: events whose hash is already stored or repeats in the batch."""
        seen: dict[int, list[int]] = {}  # hash -> event times accepted so far in this batch
        out = []
        for i in suspects.tolist():
            h = int(hashes[i])
            earliest = int(recv[i]) - self.dedup_window_ms
            times = seen.get(h)
            if times is None:
                times = seen[h] = self._stored_times(h)
            dup = any(t > earliest for t in times)
            if not dup:
                times.append(int(ts[i]))
            out.append(not dup)
        return out

    def _stored_times(self, h: int) -> list[int]:
        return [int(t) for t in self.ts[self.rows_of_hashes(np.array([h], dtype=np.uint64))]]

    def rows_of_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """Rows whose identifier hash is in ``hashes`` (every stored occurrence)."""
        found = []
        needles = np.unique(hashes)
        for run_h, run_rows in self.runs:
            left = np.searchsorted(run_h, needles, side="left")
            right = np.searchsorted(run_h, needles, side="right")
            width = right - left
            found.append(run_rows[left[width == 1]])  # the usual case: one stored occurrence
            for a, b in zip(left[width > 1].tolist(), right[width > 1].tolist(), strict=True):
                found.append(run_rows[a:b])
        return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)

    def _store(self, ts: np.ndarray, val: np.ndarray, ser: np.ndarray, sorted_h: np.ndarray, order: np.ndarray) -> None:
        """Append rows; ``sorted_h`` are their identifier hashes sorted, ``order`` the matching row offsets."""
        count = len(ts)
        if not count:
            return
        start, end = self.n, self.n + count
        if end > len(self.ts):
            self.ts = _grown(self.ts, start, end)
            self.val = _grown(self.val, start, end)
            self.ser = _grown(self.ser, start, end)
            self.flags = _grown(self.flags, start, end)
        self.ts[start:end] = ts
        self.val[start:end] = val
        self.ser[start:end] = ser
        self.flags[start:end] = 0
        self.n = end
        lo, hi = int(ts.min()), int(ts.max())
        self.min_ts, self.max_ts = (lo, hi) if start == 0 else (min(self.min_ts, lo), max(self.max_ts, hi))
        self._zone_maps(start, end)
        self._add_run(sorted_h, (order + start).astype(np.uint32))
        self._roll(ts, val, ser)

    def _add_run(self, run_h: np.ndarray, run_rows: np.ndarray) -> None:
        self.runs.append((run_h, run_rows))
        # Merge while the newer run is at least half the older one: O(log n) runs, each merge a
        # (timsort) pass over two sorted runs.
        while len(self.runs) > 1 and 2 * len(self.runs[-1][0]) >= len(self.runs[-2][0]):
            self.runs[-2:] = [_merge(self.runs[-2], self.runs[-1])]

    def _zone_maps(self, start: int, end: int) -> None:
        """Update the min/max event time of the blocks holding rows ``[start, end)``."""
        first, last = start // BLOCK, (end - 1) // BLOCK
        if last >= len(self.zmin):
            grow = max(last + 1, 2 * len(self.zmin))
            self.zmin = np.concatenate([self.zmin, np.full(grow - len(self.zmin), np.iinfo(np.int64).max)])
            self.zmax = np.concatenate([self.zmax, np.full(grow - len(self.zmax), np.iinfo(np.int64).min)])
        for b in range(first, last + 1):
            part = self.ts[max(start, b * BLOCK):min(end, (b + 1) * BLOCK)]
            self.zmin[b] = min(int(self.zmin[b]), int(part.min()))
            self.zmax[b] = max(int(self.zmax[b]), int(part.max()))

    def _rebuild_zone_maps(self) -> None:
        self.zmin = np.zeros(0, dtype=np.int64)
        self.zmax = np.zeros(0, dtype=np.int64)
        if self.n:
            self._zone_maps(0, self.n)

    def row_ranges(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Row ranges that may hold event times in ``[lo, hi)`` (whole blocks, merged when adjacent)."""
        blocks = -(-self.n // BLOCK)
        hit = np.flatnonzero((self.zmax[:blocks] >= lo) & (self.zmin[:blocks] < hi))
        ranges: list[tuple[int, int]] = []
        for b in hit.tolist():
            a, z = b * BLOCK, min((b + 1) * BLOCK, self.n)
            if ranges and ranges[-1][1] == a:
                ranges[-1] = (ranges[-1][0], z)
            else:
                ranges.append((a, z))
        return ranges

    # -- pre-aggregation -----------------------------------------------------------------------------

    def _rollup_budget(self) -> int:
        return max(int(self.n * self.rollup_cells_per_event), _MIN_ROLLUP_CELLS)

    def _rollup_fits(self) -> bool:
        span = (self.max_ts // QUARTER_MS) - (self.min_ts // QUARTER_MS) + 1
        return len(self.series_tenant) * span <= self._rollup_budget()

    def _roll(self, ts: np.ndarray, val: np.ndarray, ser: np.ndarray) -> None:
        if not self._rollup_wanted:
            return
        if not self._rollup_fits():
            self.rollup = None  # answered from raw events until the grid fits the budget again
            return
        if self.rollup is None:
            self.rebuild_rollup()
            return
        self.rollup.add(ts, val, ser)

    def rebuild_rollup(self) -> None:
        """Recompute the grid from the live (not cancelled) events, if it fits the budget."""
        self.rollup = None
        if not self._rollup_wanted or not self.n or not self._rollup_fits():
            return
        live = self.flags[:self.n] == 0
        rollup = Rollup(minmax=self.meter.aggregation in (Aggregation.MIN, Aggregation.MAX))
        rollup.add(self.ts[:self.n][live], self.val[:self.n][live], self.ser[:self.n][live])
        self.rollup = rollup

    # -- cancel and purge ----------------------------------------------------------------------------

    def cancel_rows(self, rows: np.ndarray) -> int:
        """Cancel stored rows; returns how many were not cancelled before."""
        if not len(rows):
            return 0
        rows = np.unique(rows)
        fresh = rows[(self.flags[rows] & CANCELLED) == 0]
        if len(fresh):
            self.flags[fresh] |= CANCELLED
            self.cancelled += len(fresh)
            if self.rollup is not None and self.rollup.can_subtract():
                # Integer sums below 2**53 are exact in float64, so subtracting is exact too.
                self.rollup.subtract(self.ts[fresh], self.val[fresh], self.ser[fresh])
            else:
                self.rebuild_rollup()  # MIN/MAX or fractional values: recomputed, never patched
        return len(fresh)

    def rows_in_range(self, from_ms: int, to_ms: int, tenant: int | None) -> np.ndarray:
        """Rows with event time in ``[from_ms, to_ms)`` (of one tenant code, when given)."""
        found = []
        of_tenant = None if tenant is None else self.series_arrays()[0] == tenant
        for a, z in self.row_ranges(from_ms, to_ms):
            ts = self.ts[a:z]
            mask = (ts >= from_ms) & (ts < to_ms)
            if of_tenant is not None:
                mask &= of_tenant[self.ser[a:z]]
            found.append(np.flatnonzero(mask) + a)
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def purge_series(self, series_ids: Sequence[int]) -> int:
        """Physically remove the events of these series (dedup entries included); returns how many."""
        if not len(series_ids) or not self.n:
            return 0
        doomed = np.zeros(len(self.series_tenant), dtype=bool)
        doomed[list(series_ids)] = True
        drop = doomed[self.ser[:self.n]]
        removed = int(drop.sum())
        if not removed:
            return 0
        keep = ~drop
        self.series_by_key.clear()  # rebuilt lazily: a purged tenant may come back
        new_row = np.cumsum(keep) - 1
        self.cancelled -= int((self.flags[:self.n][drop] & CANCELLED != 0).sum())
        self.ts = self.ts[:self.n][keep].copy()
        self.val = self.val[:self.n][keep].copy()
        self.ser = self.ser[:self.n][keep].copy()
        self.flags = self.flags[:self.n][keep].copy()
        self.n = len(self.ts)
        runs = []
        for run_h, run_rows in self.runs:
            alive = keep[run_rows]
            runs.append((run_h[alive], new_row[run_rows[alive]].astype(np.uint32)))
        self.runs = [r for r in runs if len(r[0])]
        if self.n:
            self.min_ts, self.max_ts = int(self.ts.min()), int(self.ts.max())
        self._rebuild_zone_maps()
        self.rebuild_rollup()
        return removed

    # -- reporting -----------------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes of the columns (used part), the dedup index and the grid."""
        per_row = self.ts.itemsize + self.val.itemsize + self.ser.itemsize + self.flags.itemsize
        index = sum(h.nbytes + r.nbytes for h, r in self.runs)
        return self.n * per_row + index + (self.rollup.nbytes if self.rollup is not None else 0)

    def state(self) -> dict[str, Any]:
        """Arrays and tables of a snapshot (see :mod:`._snapshot`), taken quickly under the engine's lock
        and safe to write out after releasing it: rows below ``n`` of the columns and the dedup runs are
        never changed in place (appends go beyond ``n``, merges and purges build new arrays), so views
        of them stay as they are now; the flags (cancellations) and the tables are copied."""
        self.flush()
        return {
            "ts": self.ts[:self.n], "val": self.val[:self.n], "ser": self.ser[:self.n],
            "flags": self.flags[:self.n].copy(), "runs": list(self.runs),
            "series_tenant": np.array(self.series_tenant, dtype=np.int64),
            "series_dims": np.array(self.series_dims, dtype=np.int64).reshape(len(self.series_dims),
                                                                              len(self.meter.group_by)),
            "dim_values": [list(v) for v in self.dim_values], "texts": list(self.text_values),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        self.ts, self.val = state["ts"].astype(np.int64), state["val"].astype(np.float64)
        self.ser, self.flags = state["ser"].astype(np.int32), state["flags"].astype(np.uint8)
        self.n = len(self.ts)
        self.cancelled = int(((self.flags & CANCELLED) != 0).sum())
        self.dim_values = [list(v) for v in state["dim_values"]]
        self.dim_codes = [{t: i for i, t in enumerate(v)} for v in self.dim_values]
        self.series_tenant = [int(t) for t in state["series_tenant"]]
        self.series_dims = [tuple(int(c) for c in row) for row in state["series_dims"]]
        self.series = {(t, d): i for i, (t, d) in enumerate(zip(self.series_tenant, self.series_dims, strict=True))}
        self._series_by_text = {(t, tuple(self.dim_values[j][c] for j, c in enumerate(d))): i
                                for (t, d), i in self.series.items()}
        self.text_values = list(state["texts"])
        self.texts = {t: i for i, t in enumerate(self.text_values)}
        self._series_np = None
        self.groupings.clear()
        if "runs" in state:  # each run is sorted already
            self.runs = [(h.astype(np.uint64), r.astype(np.uint32)) for h, r in state["runs"] if len(h)]
        else:
            hashes, rows = state["hashes"].astype(np.uint64), state["rows"].astype(np.uint32)
            order = np.argsort(hashes, kind="stable")
            self.runs = [(hashes[order], rows[order])] if len(hashes) else []
        if self.n:
            self.min_ts, self.max_ts = int(self.ts.min()), int(self.ts.max())
        self._rebuild_zone_maps()
        self.rebuild_rollup()
