"""Tumbling windows in an IANA time zone, as instants in epoch milliseconds (OpenMeter's ``tumbleStart``).

A window boundary is an instant where the local clock of ``windowTimeZone`` starts a new minute, hour,
day or month. So a DAY window in Europe/Paris lasts 23 hours on the spring DST day and 25 on the
autumn one; an HOUR window in Paris on the autumn day is repeated (02:00 CEST, then 02:00 CET); when
midnight does not exist (a DST jump at 00:00), the day starts at the jump. Boundaries of HOUR windows
are found on the 15-minute grid (every UTC offset in use since 1970 is a multiple of 15 minutes), and
MINUTE windows are UTC minutes (offsets are whole minutes); zones' pre-1970 local mean times with
odd seconds are not modelled.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ..errors import BadRequestError
from ..models import WindowSize

__all__ = ["MAX_WINDOWS", "QUARTER_MS", "ceil_ms", "floor_ms", "ms_to_datetime", "window_edges"]

#: A query may span at most this many windows (a MINUTE query over two years would be 1M rows per group).
MAX_WINDOWS = 200_000
QUARTER_MS = 900_000
_HOUR_MS = 3_600_000
_MINUTE_MS = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_APPROX_MS = {WindowSize.MINUTE: _MINUTE_MS, WindowSize.HOUR: _HOUR_MS, WindowSize.DAY: 23 * _HOUR_MS,
              WindowSize.MONTH: 28 * 24 * _HOUR_MS}


def floor_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime, rounded down (event times keep millisecond precision)."""
    return (value - _EPOCH) // _MS


def ceil_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime, rounded up (query bounds: ``ts >= ceil(from)`` is
    ``ts >= from`` for millisecond event times, and the same for ``ts < ceil(to)``)."""
    return -((_EPOCH - value) // _MS)


def ms_to_datetime(ms: int, zone: ZoneInfo) -> datetime:
    """Epoch milliseconds as an aware datetime in ``zone``."""
    return datetime.fromtimestamp(ms / 1000, zone)


def _wall_ms(wall: datetime) -> int:
    # fold=0: an ambiguous wall time is its first occurrence; a wall time in a DST gap maps to the
    # instant of the jump, which is where the local day (or month) then starts.
    return floor_ms(wall)


def _is_hour(ms: int, zone: ZoneInfo) -> bool:
    local = ms_to_datetime(ms, zone)
    return local.minute == 0 and local.second == 0


def _hour_edges(from_ms: int, to_ms: int, zone: ZoneInfo) -> list[int]:
    t = from_ms - from_ms % QUARTER_MS
    for _ in range(8):
        if _is_hour(t, zone):
            break
        t -= QUARTER_MS
    else:  # an offset off the 15-minute grid (pre-1970 local mean time): fall back to UTC hours
        t = from_ms - from_ms % _HOUR_MS
    edges = [t]
    while t < to_ms:
        nxt = t + _HOUR_MS
        if not _is_hour(nxt, zone):
            # The UTC offset changed by a non-whole hour within the hour: scan the 15-minute grid.
            nxt = t + QUARTER_MS
            for _ in range(12):
                if _is_hour(nxt, zone):
                    break
                nxt += QUARTER_MS
            else:
                nxt = t + _HOUR_MS
        edges.append(nxt)
        t = nxt
    return edges


def _calendar_edges(from_ms: int, to_ms: int, size: WindowSize, zone: ZoneInfo) -> list[int]:
    local = ms_to_datetime(from_ms, zone)
    day = local.date() if size is WindowSize.DAY else date(local.year, local.month, 1)
    edges: list[int] = []
    while True:
        edge = _wall_ms(datetime(day.year, day.month, day.day, tzinfo=zone))
        if not edges or edge > edges[-1]:
            edges.append(edge)
        if edge >= to_ms:
            return edges
        if size is WindowSize.DAY:
            day += timedelta(days=1)
        else:
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)


def window_edges(from_ms: int, to_ms: int, size: WindowSize | None, zone: ZoneInfo) -> list[int]:
    """Boundaries ``e0 < e1 < ... < ek`` (epoch ms) of the windows meeting ``[from_ms, to_ms)``:
    ``e0 <= from_ms``, ``ek >= to_ms``. With no window size, ``[from_ms, to_ms]`` (one window).

    :raises BadRequestError: the range would hold more than :data:`MAX_WINDOWS` windows.
    """
    if size is None:
        return [from_ms, to_ms]
    if (to_ms - from_ms) // _APPROX_MS[size] > MAX_WINDOWS:
        raise BadRequestError(f"the range holds more than {MAX_WINDOWS} {size.value} windows; "
                              "narrow it or choose a larger windowSize")
    if size is WindowSize.MINUTE:
        start = from_ms - from_ms % _MINUTE_MS
        stop = to_ms + (-to_ms) % _MINUTE_MS
        return list(range(start, stop + 1, _MINUTE_MS))
    if size is WindowSize.HOUR:
        return _hour_edges(from_ms, to_ms, zone)
    return _calendar_edges(from_ms, to_ms, size, zone)
