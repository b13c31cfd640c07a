"""Pre-aggregation of a meter by (series, 15-minute bucket): exact SUM, COUNT, AVG, MIN and MAX.

Why 15 minutes: every UTC offset in use is a multiple of 15 minutes, so the windows of any time zone
are unions of whole buckets, and only a query's own ``from``/``to`` may cut a bucket (the query
engine reads those edge pieces from raw events). The grid is bucket-major ``(buckets, series)`` so
growing it in time appends untouched (not resident) pages.

Exactness: counts are int64 prefix sums (exact). Sums use float64 prefix sums only while every value
of the meter is an integer and the total of magnitudes stays below 2**53, where float addition is
exact in any order; otherwise windows are summed cell by cell. MIN and MAX read cells. The grid is
rebuilt from raw events after a cancellation or purge, never patched by subtraction.
"""

from __future__ import annotations

import numpy as np

from sbt_core.metering import QUARTER_MS

__all__ = ["Partials", "Rollup"]

_EXACT = float(2**53)


class Partials:
    """Aggregates of a 2-D block of cells: ``cnt`` (int64) and, as the meter needs, ``sum``, ``mn``,
    ``mx`` (float64; ``mn``/``mx`` are +inf/-inf where ``cnt`` is 0)."""

    __slots__ = ("cnt", "mn", "mx", "sum")

    def __init__(self, cnt: np.ndarray, sum_: np.ndarray | None, mn: np.ndarray | None, mx: np.ndarray | None) -> None:
        self.cnt, self.sum, self.mn, self.mx = cnt, sum_, mn, mx

    def merge(self, other: Partials) -> None:
        """Fold ``other`` (same shape) into this one."""
        self.cnt += other.cnt
        if self.sum is not None and other.sum is not None:
            self.sum += other.sum
        if self.mn is not None and other.mn is not None:
            np.minimum(self.mn, other.mn, out=self.mn)
        if self.mx is not None and other.mx is not None:
            np.maximum(self.mx, other.mx, out=self.mx)


class Rollup:
    """The ``(bucket, series)`` grid of one meter. Not thread-safe: the engine's lock guards it."""

    def __init__(self, minmax: bool) -> None:
        self.minmax = minmax
        self.b0 = 0  # absolute bucket (epoch ms // 15 min) of row 0
        self.nb = 0
        self.ns = 0
        self.lo = 0  # rows [lo, hi) hold data
        self.hi = 0
        self.sum = np.zeros((0, 0))
        self.cnt = np.zeros((0, 0), dtype=np.int64)
        self.mn: np.ndarray | None = None
        self.mx: np.ndarray | None = None
        self._psum: np.ndarray | None = None
        self._pcnt: np.ndarray | None = None
        self._stale = 0  # prefix rows > _stale are out of date
        self.all_int = True
        self.magnitude = 0.0

    @property
    def cells(self) -> int:
        """Cells of the grid (its memory is ~32 bytes per cell, 48 with MIN/MAX)."""
        return self.nb * self.ns

    @property
    def nbytes(self) -> int:
        """Bytes held by the grid and its prefix sums."""
        arrays = [self.sum, self.cnt, self.mn, self.mx, self._psum, self._pcnt]
        return sum(a.nbytes for a in arrays if a is not None)

    def _grow(self, bmin: int, bmax: int, smax: int) -> None:
        if self.nb and self.b0 <= bmin and bmax < self.b0 + self.nb and smax < self.ns:
            return
        if not self.nb:
            b0, nb_end = bmin - 4 * 96, bmax + 1 + 96
        else:
            span = self.nb
            b0 = min(self.b0, bmin - span // 8 - 96) if bmin < self.b0 else self.b0
            end = self.b0 + self.nb
            nb_end = max(end, bmax + 1 + span // 4 + 96) if bmax >= end else end
        ns = self.ns if smax < self.ns else smax + 1 + (smax + 1) // 8 + 8
        nb = nb_end - b0
        shift = self.b0 - b0
        def move(old: np.ndarray | None, fill: float, dtype: type) -> np.ndarray | None:
            if old is None:
                return None
            new: np.ndarray = np.full((nb, ns), fill, dtype=dtype) if fill else np.zeros((nb, ns), dtype=dtype)
            if self.hi > self.lo:
                new[self.lo + shift:self.hi + shift, :self.ns] = old[self.lo:self.hi]
            return new
        self.sum = move(self.sum, 0.0, np.float64)  # type: ignore[assignment]
        self.cnt = move(self.cnt, 0, np.int64)  # type: ignore[assignment]
        if self.minmax:
            self.mn = move(self.mn if self.mn is not None else np.zeros((0, 0)), np.inf, np.float64)
            self.mx = move(self.mx if self.mx is not None else np.zeros((0, 0)), -np.inf, np.float64)
        if self.hi > self.lo:
            self.lo += shift
            self.hi += shift
        self.b0, self.nb, self.ns = b0, nb, ns
        self._psum = self._pcnt = None
        self._stale = 0

    def can_subtract(self) -> bool:
        """Whether removing events by subtraction is exact (integer sums below 2**53, no MIN/MAX cells)."""
        return self.exact_prefix and not self.minmax

    def subtract(self, ts: np.ndarray, val: np.ndarray, ser: np.ndarray) -> None:
        """Remove cancelled events; only when :meth:`can_subtract` (exact integer arithmetic)."""
        assert self.can_subtract()
        self.add(ts, -val, ser, count=-1)

    def add(self, ts: np.ndarray, val: np.ndarray, ser: np.ndarray, count: int = 1) -> None:
        """Add events (epoch ms, values, series ids), already deduplicated and not cancelled."""
        if not len(ts):
            return
        buckets = ts // QUARTER_MS
        bmin, bmax = int(buckets.min()), int(buckets.max())
        self._grow(bmin, bmax, int(ser.max()))
        rows = buckets - self.b0
        lo, hi = bmin - self.b0, bmax - self.b0 + 1
        if self.hi > self.lo:
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        else:
            self.lo, self.hi = lo, hi
        self._stale = min(self._stale, lo)
        if self.all_int:
            self.all_int = bool(np.all(np.floor(val) == val))
        self.magnitude += float(np.abs(val).sum())
        width = self.ns
        flat = rows * width + ser
        span = (hi - lo) * width
        if len(ts) * 4 < span:
            np.add.at(self.sum.reshape(-1), flat, val)
            np.add.at(self.cnt.reshape(-1), flat, count)
        else:
            base = lo * width
            self.sum.reshape(-1)[base:base + span] += np.bincount(flat - base, weights=val, minlength=span)
            self.cnt.reshape(-1)[base:base + span] += count * np.bincount(flat - base, minlength=span)
        if self.minmax:
            assert self.mn is not None and self.mx is not None
            np.minimum.at(self.mn.reshape(-1), flat, val)
            np.maximum.at(self.mx.reshape(-1), flat, val)

    def _prefix(self) -> tuple[np.ndarray, np.ndarray]:
        """Prefix sums over buckets: row ``r`` holds the totals of rows ``[lo, lo + r)``."""
        rows = self.hi - self.lo
        if self._psum is None or self._pcnt is None or len(self._psum) != rows + 1:
            self._psum = np.zeros((rows + 1, self.ns))
            self._pcnt = np.zeros((rows + 1, self.ns), dtype=np.int64)
            self._stale = self.lo
        start = max(self._stale - self.lo, 0)
        if start < rows:
            np.cumsum(self.cnt[self.lo + start:self.hi], axis=0, out=self._pcnt[start + 1:])
            self._pcnt[start + 1:] += self._pcnt[start]
            if self.exact_prefix:
                np.cumsum(self.sum[self.lo + start:self.hi], axis=0, out=self._psum[start + 1:])
                self._psum[start + 1:] += self._psum[start]
        self._stale = self.hi
        return self._psum, self._pcnt

    @property
    def exact_prefix(self) -> bool:
        """Whether differences of float prefix sums are exact (integer values, total below 2**53)."""
        return self.all_int and self.magnitude < _EXACT

    def partials(self, series: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray, need_sum: bool) -> Partials:
        """Aggregates of ``series`` (in the given order) over the absolute bucket ranges
        ``[lo_b[i], hi_b[i])``, window-major: shaped ``(len(lo_b), len(series))``."""
        k = len(lo_b)
        lo = np.clip(lo_b - self.b0, self.lo, self.hi) - self.lo
        hi = np.clip(hi_b - self.b0, self.lo, self.hi) - self.lo
        hi = np.maximum(hi, lo)
        if self.hi <= self.lo or self.ns == 0:
            z = np.zeros((k, len(series)))
            return Partials(np.zeros((k, len(series)), dtype=np.int64), z if need_sum else None,
                            np.full_like(z, np.inf) if self.minmax else None,
                            np.full_like(z, -np.inf) if self.minmax else None)
        if len(series) and int(series.max()) >= self.ns:
            # A series created after the grid's last event (its events were duplicates or pending).
            self._grow(self.b0 + self.lo, self.b0 + self.hi - 1, int(series.max()))
        psum, pcnt = self._prefix()
        # Gather the k window rows first, then the selected series: O(k * series), not O(buckets * series).
        cnt = (pcnt[hi] - pcnt[lo])[:, series]
        total = None
        if need_sum:
            if self.exact_prefix:
                total = (psum[hi] - psum[lo])[:, series]
            else:
                total = self._reduce(np.add, self.sum, series, lo, hi, 0.0)
        mn = mx = None
        if self.minmax:
            assert self.mn is not None and self.mx is not None
            mn = self._reduce(np.minimum, self.mn, series, lo, hi, np.inf)
            mx = self._reduce(np.maximum, self.mx, series, lo, hi, -np.inf)
        return Partials(cnt, total, mn, mx)

    def _reduce(self, ufunc: np.ufunc, grid: np.ndarray, series: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                empty: float) -> np.ndarray:
        block = grid[self.lo:self.hi][:, series]
        block = np.vstack([block, np.full((1, len(series)), empty)])
        idx = np.empty(2 * len(lo), dtype=np.intp)
        idx[0::2], idx[1::2] = lo, hi
        out: np.ndarray = ufunc.reduceat(block, idx, axis=0)[0::2]
        out[hi == lo] = empty
        return out
