"""The in-memory metering engine behind the ``memory`` provider: meters, tenants, ingest, cancel, query.

One re-entrant lock guards everything, so concurrent ingest and queries see a consistent store; under
the GIL a finer lock would buy nothing for this CPU-bound work.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import numpy as np

from sbt_core.errors import BadRequestError, ConflictError, NotFoundError
from sbt_core.metering import (
    ColumnsResult,
    IngestResult,
    as_number,
    as_text,
    ceil_ms,
    check_columns,
    decode_meters_token,
    dimension_text,
    encode_meters_token,
    floor_ms,
)
from sbt_core.models import (
    CancelResult,
    CancelUsageRequest,
    Meter,
    MeterCreate,
    MeterStatus,
    MeterUpdate,
    Page,
    UsageEvent,
    UsageQuery,
    UsageRow,
)

from ._ids import id_hashes
from ._memory import release_free_heap
from ._query import UsageResult, run_query
from ._recorder import Recorder
from ._store import MeterStore
from .settings import MemoryMeteringSettings

__all__ = ["ColumnsResult", "Engine", "IngestResult"]

_DAY_MS = 86_400_000
#: Largest sum of value magnitudes a meter accepts: every SUM and AVG of a subset stays below it, so no
#: aggregate leaves the float range (max ~1.8e308), with room for rounding. A value that would pass it is
#: refused at ingest (400 / a rejected result), never stored to answer infinity later.
MAX_MAGNITUDE = 1e308
_BULK = 100_000  # rows of a bulk load after which freed heap is handed back (see _memory.py)


class _Rejected(Exception):
    def __init__(self, message: str, status: str = "rejected") -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _encode_texts(raw: Sequence[Any], n: int) -> tuple[np.ndarray, list[str]]:
    """Codes of the dimension texts of ``raw`` and the texts by code."""
    table: dict[str, int] = {}
    texts: list[str] = []

    def code_of(x: Any) -> int:
        text = x if type(x) is str else dimension_text(x)
        code = table.get(text)
        if code is None:
            code = table[text] = len(texts)
            texts.append(text)
        return code

    return np.fromiter(map(code_of, raw), dtype=np.int64, count=n), texts


def _numeric_column(values: Sequence[Any] | np.ndarray) -> np.ndarray | None:
    """``values`` as float64 when every one is an int or float (never a bool or a string), else None."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64) if values.dtype.kind in "iuf" else None
    try:
        column = np.asarray(values)
    except (ValueError, TypeError):
        return None
    # NumPy turns True into 1 and "3" into a string column; neither is a number here.
    if column.dtype.kind not in "iuf" or any(type(v) is bool for v in values):
        return None
    return column.astype(np.float64)


def _first_rows(first: np.ndarray, key: np.ndarray) -> None:
    # Writing row numbers in reverse leaves, for each key, its first row (later writes win).
    rows = np.arange(len(key) - 1, -1, -1)
    first[key[::-1]] = rows


class Engine:
    """Meters and their events. Every public method takes the lock."""

    def __init__(self, settings: MemoryMeteringSettings, clock: Callable[[], int] = _now_ms) -> None:
        self.settings = settings
        #: Epoch milliseconds now; tests replace it to pin the ingestion horizon.
        self.clock = clock
        self.lock = threading.RLock()
        self.meters: dict[str, MeterStore] = {}
        self.by_event: dict[str, MeterStore] = {}
        self.seq: dict[str, int] = {}  # meter id -> creation sequence (the fetch-all cursor)
        self._next_seq = 0
        self.tenant_codes: dict[str, int] = {}
        self.tenant_names: list[str] = []
        self.customers: dict[str, bool] = {}  # tenant id -> active (False: offboarded, usage kept)
        self.dropped = 0
        self._past_ms = int(settings.horizon_past_days * _DAY_MS)
        self._future_ms = int(settings.horizon_future_seconds * 1000)
        self._dedup_ms = int(settings.dedup_window_days * _DAY_MS)
        self._reject_tenants = settings.unknown_tenant == "reject"
        self._drop_unknown = settings.unknown_event == "drop"
        self._flush_at = settings.pending_flush_events
        #: Told every accepted change under the lock, then asked to commit before a method returns:
        #: the write-ahead log (:class:`._journal.Journal`) when durable, else a no-op.
        self.recorder = Recorder()

    # -- meters --------------------------------------------------------------------------------------

    def _store(self, meter_id: str) -> MeterStore:
        store = self.meters.get(meter_id)
        if store is None:
            raise NotFoundError(f"meter {meter_id!r} not found")
        return store

    def create_meter(self, spec: MeterCreate, meter_id: str | None = None) -> Meter:
        """A new meter; :raises ConflictError: another meter counts ``spec.event_name``."""
        with self.lock:
            other = self.by_event.get(spec.event_name)
            if other is not None:
                raise ConflictError(f"meter {other.meter.meter_id!r} already uses eventName {spec.event_name!r}; "
                                    "one meter per event name")
            meter = Meter.new(meter_id or str(uuid.uuid4()), spec)
            self._add_store(meter)
            self.recorder.meter_created(meter)
        self.recorder.commit()
        return meter

    def _add_store(self, meter: Meter) -> MeterStore:
        store = MeterStore(meter, dedup_window_ms=self._dedup_ms,
                           rollup_cells_per_event=self.settings.rollup_cells_per_event)
        self.meters[meter.meter_id] = store
        self.by_event[meter.event_name] = store
        self.seq[meter.meter_id] = self._next_seq
        self._next_seq += 1
        return store

    def fetch_meter(self, meter_id: str) -> Meter:
        """:raises NotFoundError: no such meter."""
        with self.lock:
            return self._store(meter_id).meter

    def fetch_all_meters(self, limit: int, next_token: str | None) -> Page[Meter]:
        """Meters oldest first; the token is the creation sequence of the last one returned."""
        after = decode_meters_token(limit, next_token)
        with self.lock:
            stores = [s for s in self.meters.values() if self.seq[s.meter.meter_id] > after]
            page = stores[:limit]
            token = None
            if len(stores) > limit:
                last = self.seq[page[-1].meter.meter_id]
                token = encode_meters_token(last)
            return Page(items=[s.meter for s in page], next_token=token)

    def update_meter(self, meter_id: str, update: MeterUpdate) -> Meter:
        """Apply name/description/status; :raises NotFoundError: no such meter."""
        with self.lock:
            store = self._store(meter_id)
            meter = store.meter = update.apply(store.meter)
            self.recorder.meter_updated(meter)
        self.recorder.commit()
        return meter

    def delete_meter(self, meter_id: str) -> Meter:
        """Remove a meter and all its events; :raises NotFoundError: no such meter."""
        with self.lock:
            store = self._store(meter_id)
            del self.meters[meter_id], self.by_event[store.meter.event_name], self.seq[meter_id]
            self.recorder.meter_deleted(meter_id)
        self.recorder.commit()
        return store.meter

    # -- tenants -------------------------------------------------------------------------------------

    def tenant_code(self, tenant_id: str) -> int:
        """The small-int code of a tenant id, created if new."""
        code = self.tenant_codes.get(tenant_id)
        if code is None:
            code = self.tenant_codes[tenant_id] = len(self.tenant_names)
            self.tenant_names.append(tenant_id)
        return code

    def create_customer(self, tenant_id: str) -> None:
        """Register (or re-register) a tenant as an active metering customer."""
        with self.lock:
            self.customers[tenant_id] = True
            self.tenant_code(tenant_id)
            self.recorder.customer(tenant_id, True)
        self.recorder.commit()

    def delete_customer(self, tenant_id: str) -> None:
        """Offboard a tenant: its usage stays queryable; under ``unknown_tenant = "reject"`` new events are refused."""
        with self.lock:
            self.customers[tenant_id] = False
            self.recorder.customer(tenant_id, False)
        self.recorder.commit()

    def purge_tenant(self, tenant_id: str) -> int:
        """Erase a tenant's events from every meter (dedup memory included) and forget it as a customer;
        returns how many events were removed. The only way usage of an offboarded tenant goes away."""
        with self.lock:
            self.customers.pop(tenant_id, None)
            code = self.tenant_codes.get(tenant_id)
            removed = 0
            for store in self.meters.values() if code is not None else ():
                store.flush()
                removed += store.purge_series([s for s, t in enumerate(store.series_tenant) if t == code])
            self.recorder.purged(tenant_id)
        self.recorder.commit()
        if removed and self.settings.release_memory:
            release_free_heap()
        return removed

    # -- ingest --------------------------------------------------------------------------------------

    def _check(self, event: UsageEvent, now_ms: int) -> tuple[MeterStore, int, float, int] | None:
        """Validate one event: ``(store, event ms, value, series)``; None if dropped by policy."""
        store = self.by_event.get(event.event_name)
        if store is None:
            if self._drop_unknown:
                return None
            raise _Rejected(f"usage event {event.identifier!r}: no meter counts eventName {event.event_name!r}")
        meter = store.meter
        if meter.status is not MeterStatus.ACTIVE:
            raise _Rejected(f"usage event {event.identifier!r}: meter {meter.meter_id!r} ({meter.event_name}) is "
                            "inactive and accepts no new events; set its status to active to resume")
        tenant = event.tenant_id
        if self._reject_tenants and not self.customers.get(tenant, False):
            what = "offboarded" if tenant in self.customers else "not a metering customer"
            raise _Rejected(f"usage event {event.identifier!r}: tenant {tenant!r} is {what} "
                            "(policy unknown_tenant = reject)")
        props = event.properties
        prop = meter.value_property
        if prop is None:  # COUNT counts events; there is no value
            value = 1.0
        else:
            raw: Any = props.get(prop)
            kind = type(raw)
            if (kind is float and raw - raw == 0.0) or kind is int and -2**63 < raw < 2**63:
                value = float(raw)
                if store.unique:
                    value = float(store.text_code(as_text(raw)))
            else:
                try:
                    value = float(store.text_code(as_text(raw))) if store.unique else as_number(raw)
                except ValueError as exc:
                    raise _Rejected(f"usage event {event.identifier!r}: {prop} {exc}") from None
            if not store.unique:
                magnitude = store.magnitude + abs(value)
                if magnitude > MAX_MAGNITUDE:
                    raise _Rejected(f"usage event {event.identifier!r}: {prop} {value!r} would take meter "
                                    f"{meter.meter_id!r}'s aggregates beyond ±{MAX_MAGNITUDE:g}, which an answer "
                                    "cannot carry")
        ms = floor_ms(event.timestamp)
        if ms < now_ms - self._past_ms or ms > now_ms + self._future_ms:
            raise _Rejected(f"usage event {event.identifier!r}: timestamp {event.timestamp.isoformat()} is outside "
                            f"the accepted horizon ({self.settings.horizon_past_days:g} days back, "
                            f"{self.settings.horizon_future_seconds:g} seconds ahead of now)")
        # Series by (tenant id, dimension texts): one dict lookup on the hot path.
        names = meter.group_by
        key: Any
        if not names:
            key = tenant
        elif len(names) == 1:
            d = props.get(names[0])
            key = (tenant, d if type(d) is str else dimension_text(d))
        else:
            key = (tenant, *[dimension_text(props.get(n)) for n in names])
        sid = store.series_by_key.get(key)
        if sid is None:
            dims = () if not names else tuple(key[1:])
            sid = store.series_by_key[key] = store.series_id(self.tenant_code(tenant), dims)
        if prop is not None and not store.unique:
            store.magnitude += abs(value)  # checked above; counted once the event is accepted
        return store, ms, value, sid

    def ingest(self, event: UsageEvent) -> None:
        """Record one event (deduplicated at the next flush, invisibly to readers).

        :raises BadRequestError: see the ``metering_ingest_usage_event`` hookspec; the message names the event.
        """
        with self.lock:
            now = self.clock()
            try:
                checked = self._check(event, now)
            except _Rejected as exc:
                raise BadRequestError(exc.message) from None
            if checked is None:
                self.dropped += 1
                self.recorder.dropped(1)
            else:
                store, ms, value, sid = checked
                # MeterStore.add_pending, inlined: this is the per-event hot path.
                store.p_ts.append(ms)
                store.p_val.append(value)
                store.p_ser.append(sid)
                store.p_recv.append(now)
                ids = store.p_ids
                ids.append(event.identifier)
                self.recorder.ingested_one(store, ms, value, sid, now, event.identifier)
                if len(ids) >= self._flush_at:
                    store.flush()
        self.recorder.commit()

    def ingest_batch(self, events: Iterable[UsageEvent | dict[str, Any]]) -> list[IngestResult]:
        """Record many events, each validated on its own; one result per event, in order.

        A dict is parsed as an ``ingestUsage`` detail (:meth:`UsageEvent.from_detail`, canonical or
        Amberflo's flat form). Duplicates are reported as such, within the batch too.
        """
        results: list[IngestResult | None] = []
        batches: dict[str, tuple[MeterStore, list[int], list[int], list[float], list[int], list[str]]] = {}
        dropped = 0
        with self.lock:
            now = self.clock()
            for i, item in enumerate(events):
                ident = None
                try:
                    event = item if isinstance(item, UsageEvent) else UsageEvent.from_detail(item)
                    ident = event.identifier
                    checked = self._check(event, now)
                except BadRequestError as exc:
                    results.append(IngestResult(i, ident, "rejected", exc.message))
                    continue
                except _Rejected as exc:
                    results.append(IngestResult(i, ident, "rejected", exc.message))
                    continue
                if checked is None:
                    dropped += 1
                    results.append(IngestResult(i, ident, "dropped", f"no meter counts eventName {event.event_name!r}"))
                    continue
                store, ms, value, sid = checked
                entry = batches.setdefault(store.meter.meter_id, (store, [], [], [], [], []))
                entry[1].append(i)
                entry[2].append(ms)
                entry[3].append(value)
                entry[4].append(sid)
                entry[5].append(event.identifier)
                results.append(None)
            if dropped:
                self.dropped += dropped
                self.recorder.dropped(dropped)
            for store, idx, ts, val, ser, ids in batches.values():
                store.flush()  # earlier one-at-a-time events come first
                columns = (np.array(ts, dtype=np.int64), np.array(val, dtype=np.float64),
                           np.array(ser, dtype=np.int32), id_hashes(ids))
                keep = store.append(*columns, now)
                self.recorder.ingested(store, *columns, now)
                for j, ident, ok in zip(idx, ids, keep.tolist(), strict=True):
                    results[j] = IngestResult(j, ident, "accepted" if ok else "duplicate")
        self.recorder.commit()
        return [r for r in results if r is not None]

    def ingest_columns(self, event_name: str, tenant_ids: Sequence[str] | np.ndarray,
                       timestamps: Sequence[int] | np.ndarray, values: Sequence[Any] | np.ndarray | None,
                       identifiers: Sequence[str] | np.ndarray,
                       dimensions: dict[str, Sequence[Any] | np.ndarray] | None = None) -> ColumnsResult:
        """Bulk-load events of one meter from columns (the fast path: ~1M+ events/s).

        :param timestamps: event times as int epoch **milliseconds** (or aware datetimes).
        :param values: numbers (for UNIQUE_COUNT any text or number); None for a COUNT meter.
        :param dimensions: group-by name -> values (missing names or None values group as ``""``).
        :return: how many were stored and how many were duplicates.
        :raises BadRequestError: the meter is unknown (whatever ``unknown_event``, since nothing would
            be stored) or inactive, a column has the wrong length, or any row is invalid (value,
            horizon, tenant policy): the message names the first offending rows and nothing is stored.
        """
        with self.lock:
            store = self.by_event.get(event_name)
            n = len(identifiers)
            check_columns(None if store is None else store.meter, event_name, n, tenant_ids, timestamps, values,
                          dimensions)
            assert store is not None
            meter = store.meter
            now = self.clock()
            if n and isinstance(timestamps[0], datetime):
                ts = np.fromiter((floor_ms(cast(datetime, t)) for t in timestamps), dtype=np.int64, count=n)
            else:
                ts = np.asarray(timestamps, dtype=np.int64)
            bad: list[str] = []
            if n and min(map(len, identifiers)) == 0:
                bad += [f"row {i}: identifier is empty" for i, x in enumerate(identifiers) if not x][:5]
            if meter.value_property is None:
                val = np.ones(n)
            elif store.unique:
                assert values is not None
                codes = []
                for i, raw in enumerate(values):
                    try:
                        codes.append(store.text_code(as_text(raw)))
                    except ValueError as exc:
                        bad.append(f"row {i} ({identifiers[i]}): {meter.value_property} {exc}")
                        codes.append(0)
                val = np.array(codes, dtype=np.float64)
            else:
                if values is None:
                    raise BadRequestError(f"values are required: meter {meter.meter_id!r} "
                                          f"aggregates {meter.aggregation}")
                numeric = _numeric_column(values)
                if numeric is not None:
                    val = numeric
                else:  # strings, booleans or objects: the per-value rules, with their messages
                    val = np.zeros(n)
                    for i, raw in enumerate(values):
                        try:
                            val[i] = as_number(raw)
                        except ValueError as exc:
                            bad.append(f"row {i} ({identifiers[i]}): {meter.value_property} {exc}")
                for i in np.flatnonzero(~np.isfinite(val))[:5].tolist():
                    bad.append(f"row {i} ({identifiers[i]}): {meter.value_property} must be finite")
                magnitude = store.magnitude + float(np.abs(val).sum())
                if not bad and not magnitude <= MAX_MAGNITUDE:
                    bad.append(f"{meter.value_property}: these values would take meter {meter.meter_id!r}'s "
                               f"aggregates beyond ±{MAX_MAGNITUDE:g}, which an answer cannot carry")
            outside = np.flatnonzero((ts < now - self._past_ms) | (ts > now + self._future_ms))
            bad += [f"row {i} ({identifiers[i]}): timestamp outside the accepted horizon" for i in outside[:5].tolist()]
            tenant_list = tenant_ids.tolist() if isinstance(tenant_ids, np.ndarray) else tenant_ids
            distinct = set(tenant_list)
            if "" in distinct or not all(isinstance(t, str) for t in distinct):
                bad.append("tenant ids must be non-empty strings")
            if self._reject_tenants:
                refused = sorted(t for t in distinct if not self.customers.get(t, False))
                if refused:
                    bad.append(f"tenants {', '.join(map(repr, refused[:5]))} are not active metering customers "
                               "(policy unknown_tenant = reject)")
            if bad:
                raise BadRequestError(f"{len(bad)} problem(s), nothing stored: " + "; ".join(bad[:5]))
            for t in distinct:
                if t not in self.tenant_codes:
                    self.tenant_code(t)
            tenant = np.fromiter(map(self.tenant_codes.__getitem__, tenant_list), dtype=np.int64, count=n)
            ser = self._series_of_columns(store, tenant, dimensions or {}, n)
            store.flush()
            if meter.value_property is not None and not store.unique:
                store.magnitude = magnitude
            hashes = id_hashes(identifiers)
            keep = store.append(ts, val, ser, hashes, now)
            self.recorder.ingested(store, ts, val, ser, hashes, now)
            accepted = int(keep.sum())
        self.recorder.commit()
        if n >= _BULK and self.settings.release_memory:
            release_free_heap()
        return ColumnsResult(accepted, n - accepted)

    def _series_of_columns(self, store: MeterStore, tenant: np.ndarray, dimensions: dict[str, Any],
                           n: int) -> np.ndarray:
        """Series id of each row from its tenant code and dimension columns (created when new)."""
        key = tenant
        columns: list[tuple[np.ndarray, list[str]]] = []
        for name in store.meter.group_by:
            col = dimensions.get(name)
            if col is None:
                codes, texts = np.zeros(n, dtype=np.int64), [""]
            else:
                raw = col.tolist() if isinstance(col, np.ndarray) else col
                distinct = set(raw)
                if all(type(x) is str for x in distinct):  # fast path: one dict lookup per row
                    texts = sorted(distinct)
                    table = {t: i for i, t in enumerate(texts)}
                    codes = np.fromiter(map(table.__getitem__, raw), dtype=np.int64, count=n)
                else:  # 1, 1.0 and True are equal as set members but not as dimension texts
                    codes, texts = _encode_texts(raw, n)
            columns.append((codes, texts))
            key = key * max(len(texts), 1) + codes
        # Distinct (tenant, dimension) combinations: a dense lookup table when the key space is small
        # (the usual case: sorting a million keys would cost more than the rest of the load).
        top = int(key.max()) + 1 if n else 0
        if top <= 4 * n + 1024:
            first = np.full(top, n, dtype=np.int64)
            np.minimum.at(first, key, np.arange(n)) if n < 4096 else _first_rows(first, key)
            present = np.flatnonzero(first < n)
            lut = np.zeros(top, dtype=np.int32)
            for k_, row in zip(present.tolist(), first[present].tolist(), strict=True):
                dims = tuple(texts[int(codes[row])] for codes, texts in columns)
                lut[k_] = store.series_id(int(tenant[row]), dims)
            series: np.ndarray = lut[key]
            return series
        uniq, first_rows, inverse = np.unique(key, return_index=True, return_inverse=True)
        sids = np.empty(len(uniq), dtype=np.int32)
        for u, row in enumerate(first_rows.tolist()):
            dims = tuple(texts[int(codes[row])] for codes, texts in columns)
            sids[u] = store.series_id(int(tenant[row]), dims)
        return sids[inverse.reshape(-1)]

    def flush(self) -> None:
        """Fold every pending one-at-a-time event into the columns."""
        with self.lock:
            for store in self.meters.values():
                store.flush()

    # -- query and cancel ----------------------------------------------------------------------------

    def query(self, meter_id: str, query: UsageQuery) -> UsageResult:
        """Every row of a usage query (see :func:`._query.run_query`); :raises NotFoundError: no such meter."""
        with self.lock:
            store = self._store(meter_id)
            store.flush()
            code = None
            if query.tenant_id is not None:
                code = self.tenant_codes.get(query.tenant_id, -1)
            return run_query(store, query, code, self.tenant_names)

    def fetch_usage(self, meter_id: str, query: UsageQuery) -> Page[UsageRow]:
        """One page of usage rows."""
        with self.lock:
            return self.query(meter_id, query).page(meter_id)

    def cancel(self, request: CancelUsageRequest) -> CancelResult:
        """Cancel events by identifiers (in every meter) or by meter + tenant + event-time range."""
        if request.identifiers:
            return CancelResult(self.cancel_identifiers(list(request.identifiers)))
        assert request.meter_id is not None and request.from_ is not None and request.to is not None
        return CancelResult(self.cancel_range(request.meter_id, ceil_ms(request.from_), ceil_ms(request.to),
                                              request.tenant_id))

    def cancel_identifiers(self, identifiers: list[str]) -> int:
        """Cancel the events with these identifiers in every meter; returns how many were newly cancelled."""
        with self.lock:
            hashes = id_hashes(identifiers)
            total = 0
            for store in self.meters.values():
                store.flush()
                total += store.cancel_rows(store.rows_of_hashes(hashes))
            if total:
                self.recorder.cancelled_ids(identifiers)
        self.recorder.commit()
        return total

    def cancel_range(self, meter_id: str, from_ms: int, to_ms: int, tenant_id: str | None) -> int:
        """Cancel a meter's events with event time in ``[from_ms, to_ms)`` (of one tenant, when given);
        returns how many were newly cancelled. :raises NotFoundError: no such meter."""
        with self.lock:
            store = self._store(meter_id)
            store.flush()
            tenant = None
            if tenant_id is not None:
                tenant = self.tenant_codes.get(tenant_id)
                if tenant is None:
                    return 0
            cancelled = store.cancel_rows(store.rows_in_range(from_ms, to_ms, tenant))
            if cancelled:
                self.recorder.cancelled_range(meter_id, from_ms, to_ms, tenant_id)
        self.recorder.commit()
        return cancelled

    # -- reporting -----------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """``{meters, events, cancelled, pending, dropped, bytes}`` (bytes: columns, indexes and grids)."""
        with self.lock:
            return {"meters": len(self.meters), "events": sum(s.n for s in self.meters.values()),
                    "cancelled": sum(s.cancelled for s in self.meters.values()),
                    "pending": sum(len(s.p_ids) for s in self.meters.values()),
                    "dropped": self.dropped, "bytes": sum(s.nbytes for s in self.meters.values())}

