"""The ``sql`` provider: IMetering hooks over one SQL database (PostgreSQL for many processes, SQLite for one).

Every hook is one transaction; nothing is cached that another process could change (meters, customers
and statuses are read in the transaction that uses them), so two ``sbt serve`` processes on one
PostgreSQL database see each other's meters, events and cancellations at their next call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs
import numpy as np
import sqlalchemy as sa
import typer
from sqlalchemy.exc import IntegrityError

from sbt_core import BadRequestError, Provider, ProviderContext, hookimpl
from sbt_core.errors import ConflictError, NotFoundError
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
    Aggregation,
    CancelResult,
    CancelUsageRequest,
    Event,
    Meter,
    MeterCreate,
    MeterUpdate,
    Page,
    UsageEvent,
    UsageQuery,
    UsageRow,
)

from . import _schema as s
from ._ingest import Batch, Overflow, Policy, Rejected, check_event, dims_key, store_batch
from ._query import fetch_usage
from ._rollups import recompute
from ._store import MeterRow, Store, meter_values
from .settings import SqlMeteringSettings

__all__ = ["SqlMetering"]

_DAY_MS = 86_400_000
_SPANS_PER_STATEMENT = 500  # identifiers of one cancellation per UPDATE (an OR of index ranges)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _tenant_of(event: Event) -> str:
    tenant = event.detail.get("tenantId") if isinstance(event.detail, dict) else None
    if not isinstance(tenant, str) or not tenant:
        raise BadRequestError(f"event {event.id!r} ({event.detail_type}) has no tenantId in its detail")
    return tenant


class SqlMetering(Provider):
    """IMetering in a SQL database with ``memory``'s exact semantics; safe across processes.

    Settings: :class:`SqlMeteringSettings` (``[providers.metering]``). Thread-safe (a connection pool).
    """

    settings_class = SqlMeteringSettings

    def __init__(self, settings: SqlMeteringSettings | None, context: ProviderContext) -> None:
        super().__init__(settings if settings is not None else SqlMeteringSettings(), context)
        self.settings: SqlMeteringSettings = self.settings
        self.store = Store(self.settings.url(context.data_dir))
        st = self.settings
        self.policy = Policy(int(st.horizon_past_days * _DAY_MS), int(st.horizon_future_seconds * 1000),
                             int(st.dedup_window_days * _DAY_MS), st.unknown_tenant == "reject",
                             st.horizon_past_days, st.horizon_future_seconds)
        #: Epoch milliseconds now; tests replace it to pin the horizon and the dedup window.
        self.clock: Callable[[], int] = _now_ms
        self._series: dict[int, dict[int, tuple[str, tuple[str, ...]]]] = {}
        self._migrated = False

    # -- lifecycle -----------------------------------------------------------------------------------

    def _ready(self) -> Store:
        if not self._migrated:
            applied = self.store.migrate()
            if applied:
                self.context.logger.info("metering database %s: schema versions %s applied", self.store.describe(),
                                         applied)
            self._migrated = True
        return self.store

    @hookimpl
    def sbt_startup(self) -> None:
        """Create or migrate the schema."""
        self._ready()

    @hookimpl
    def sbt_shutdown(self) -> None:
        """Close the connection pool."""
        self.store.dispose()

    @staticmethod
    @hookimpl
    def sbt_register_commands(cli: typer.Typer) -> None:
        """Add ``sbt metering stats`` and ``sbt metering check`` (see :mod:`sbt_sql_metering.cli`)."""
        from .cli import register

        register(cli)

    # -- meters --------------------------------------------------------------------------------------

    def _meter(self, conn: Any, meter_id: str) -> MeterRow:
        row = self.store.meter(conn, meter_id)
        if row is None:
            raise NotFoundError(f"meter {meter_id!r} not found")
        return row

    @hookimpl
    def metering_create_meter(self, meter: MeterCreate) -> Meter:
        """Create a meter. :raises ConflictError: its eventName is taken (Stripe: one meter per event name)."""
        store = self._ready()
        created = Meter.new(str(uuid.uuid4()), meter)
        try:
            with store.write() as conn:
                conn.execute(sa.insert(s.meters).values(**meter_values(created)))
        except IntegrityError:
            with store.read() as conn:
                other = store.meters_by_event(conn, [meter.event_name]).get(meter.event_name)
            if other is None:
                raise
            raise ConflictError(f"meter {other.meter.meter_id!r} already uses eventName {meter.event_name!r}; "
                                "one meter per event name") from None
        return created

    @hookimpl
    def metering_fetch_meter(self, meter_id: str) -> Meter:
        """One meter. :raises NotFoundError: no such meter."""
        with self._ready().read() as conn:
            return self._meter(conn, meter_id).meter

    @hookimpl
    def metering_fetch_all_meters(self, limit: int, next_token: str | None) -> Page[Meter]:
        """A page of meters, oldest first. :raises BadRequestError: a malformed token or limit."""
        after = decode_meters_token(limit, next_token)
        with self._ready().read() as conn:
            rows = self.store.meter_page(conn, after, limit + 1)
        page, token = rows[:limit], None
        if len(rows) > limit:
            token = encode_meters_token(page[-1].seq)
        return Page(items=[r.meter for r in page], next_token=token)

    @hookimpl
    def metering_update_meter(self, meter_id: str, update: MeterUpdate) -> Meter:
        """Change name, description or status (``inactive`` refuses new events, as Stripe's deactivate)."""
        with self._ready().write() as conn:
            row = self._meter(conn, meter_id)
            meter = update.apply(row.meter)
            conn.execute(sa.update(s.meters).where(s.meters.c.meter_seq == row.seq).values(
                name=meter.name, description=meter.description, status=str(meter.status), modified=meter.modified))
            return meter

    @hookimpl
    def metering_delete_meter(self, meter_id: str) -> Meter | None:
        """Delete a meter and its events. :raises NotFoundError: no such meter."""
        with self._ready().write() as conn:
            row = self._meter(conn, meter_id)
            self.store.lock_meter(conn, row.seq, exclusive=True)
            self.store.delete_meter_rows(conn, row.seq)
            return row.meter

    # -- ingest --------------------------------------------------------------------------------------

    @hookimpl
    def metering_ingest_usage_event(self, usage_event: UsageEvent) -> None:
        """Record one usage event; a repeated identifier within the dedup window is ignored.

        :raises BadRequestError: unknown eventName (``unknown_event = "reject"``), tenant refused by
            ``unknown_tenant = "reject"``, inactive meter, bad value, timestamp outside the horizon.
        """
        result = self.ingest_batch([usage_event])[0]
        if result.status == "rejected":
            raise BadRequestError(result.error or "refused")

    @hookimpl
    def metering_ingest_usage_events(self, usage_events: list[UsageEvent]) -> list[str | None]:
        """The batch form the bus delivers bursts of ``ingestUsage`` through: one outcome per event, None
        when recorded (or a duplicate, or dropped by policy), else why it was refused."""
        return [r.error if r.status == "rejected" else None for r in self.ingest_batch(usage_events)]

    def ingest_batch(self, events: Iterable[UsageEvent | dict[str, Any]]) -> list[IngestResult]:
        """Record many events in one transaction, each validated on its own; one result per event, in
        order (``accepted``, ``duplicate`` (within the batch too), ``dropped``, ``rejected``). A dict is
        parsed as an ``ingestUsage`` detail (:meth:`UsageEvent.from_detail`)."""
        store = self._ready()
        parsed: list[UsageEvent | IngestResult] = []
        for i, item in enumerate(events):
            try:
                parsed.append(item if isinstance(item, UsageEvent) else UsageEvent.from_detail(item))
            except BadRequestError as exc:
                ident = item.get("identifier") if isinstance(item, dict) else None
                parsed.append(IngestResult(i, ident if isinstance(ident, str) else None, "rejected", exc.message))
        results: list[IngestResult | None] = [p if isinstance(p, IngestResult) else None for p in parsed]
        good = [(i, p) for i, p in enumerate(parsed) if isinstance(p, UsageEvent)]
        if not good:
            return [r for r in results if r is not None]
        try:
            return self._ingest(store, good, results)
        except Overflow:
            if len(good) == 1:
                i, event = good[0]
                results[i] = IngestResult(i, event.identifier, "rejected", f"usage event {event.identifier!r}: "
                                          "the meter's sum would exceed the float range (about 1.8e308)")
                return [r for r in results if r is not None]
        # One event at a time, so that only the events that overflow are refused.
        for i, event in good:
            results[i] = attrs.evolve(self.ingest_batch([event])[0], index=i)
        return [r for r in results if r is not None]

    def _ingest(self, store: Store, good: list[tuple[int, UsageEvent]],
                results: list[IngestResult | None]) -> list[IngestResult]:
        with store.write() as conn:
            now = self.clock()
            meters = store.meters_by_event(conn, [e.event_name for _, e in good])
            customers = store.customers(conn, [e.tenant_id for _, e in good]) if self.policy.reject_tenants else {}
            batches: dict[int, Batch] = {}
            for i, event in good:
                meter = meters.get(event.event_name)
                if meter is None:
                    if self.settings.unknown_event == "drop":
                        results[i] = IngestResult(i, event.identifier, "dropped",
                                                  f"no meter counts eventName {event.event_name!r}")
                    else:
                        results[i] = IngestResult(i, event.identifier, "rejected", f"usage event {event.identifier!r}: "
                                                  f"no meter counts eventName {event.event_name!r}")
                    continue
                try:
                    ms, value, text, dims = check_event(event, meter, now, self.policy, customers)
                except Rejected as exc:
                    results[i] = IngestResult(i, event.identifier, "rejected", exc.message)
                    continue
                batch = batches.get(meter.seq)
                if batch is None:
                    batch = batches[meter.seq] = Batch(meter, texts=[] if text is not None else None)
                batch.index.append(i)
                batch.tenants.append(event.tenant_id)
                batch.dims.append(dims)
                batch.ts.append(ms)
                batch.values.append(value)
                if batch.texts is not None:
                    batch.texts.append(text or "")
                batch.identifiers.append(event.identifier)
            for seq in sorted(batches):  # one lock order for every process
                batch = batches[seq]
                kept = store_batch(store, conn, batch, now, self.policy.dedup_ms)
                for i, ident, ok in zip(batch.index, batch.identifiers, kept, strict=True):
                    results[i] = IngestResult(i, ident, "accepted" if ok else "duplicate")
        return [r for r in results if r is not None]

    def ingest_columns(self, event_name: str, tenant_ids: Sequence[str] | np.ndarray,
                       timestamps: Sequence[int] | np.ndarray, values: Sequence[Any] | np.ndarray | None,
                       identifiers: Sequence[str] | np.ndarray,
                       dimensions: dict[str, Sequence[Any] | np.ndarray] | None = None) -> ColumnsResult:
        """Bulk-load events of one meter from columns (timestamps in epoch **milliseconds** or aware
        datetimes), in one transaction; all-or-nothing validation, as ``memory``'s ``ingest_columns``.

        :raises BadRequestError: unknown or inactive meter, columns of other lengths, a groupBy name the
            meter does not declare, or any invalid row (the message names the first ones; nothing stored).
        """
        store = self._ready()
        n = len(identifiers)
        ids = identifiers.tolist() if isinstance(identifiers, np.ndarray) else list(identifiers)
        tenants = tenant_ids.tolist() if isinstance(tenant_ids, np.ndarray) else list(tenant_ids)
        with store.write() as conn:
            meter = store.meters_by_event(conn, [event_name]).get(event_name)
            check_columns(None if meter is None else meter.meter, event_name, n, tenants, timestamps, values,
                          dimensions)
            assert meter is not None
            m = meter.meter
            now = self.clock()
            if n and isinstance(timestamps[0], datetime):
                ms = np.fromiter((floor_ms(t) for t in timestamps), dtype=np.int64, count=n)  # type: ignore[arg-type]
            else:
                ms = np.asarray(timestamps, dtype=np.int64)
            ts = ms.tolist()
            bad: list[str] = []
            if not all(ids):
                bad += [f"row {i}: identifier is empty" for i, x in enumerate(ids) if not x][:5]
            texts: list[str] | None = None
            if m.value_property is None:
                vals = [1.0] * n
            elif m.aggregation is Aggregation.UNIQUE_COUNT:
                assert values is not None
                texts, vals = [], [0.0] * n
                for i, raw in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
                    try:
                        texts.append(as_text(raw))
                    except ValueError as exc:
                        bad.append(f"row {i} ({ids[i]}): {m.value_property} {exc}")
                        texts.append("")
            else:
                if values is None:
                    raise BadRequestError(f"values are required: meter {m.meter_id!r} aggregates {m.aggregation}")
                numbers = values.astype(np.float64) if isinstance(values, np.ndarray) and values.dtype.kind in "iuf" \
                    else None
                if numbers is not None and np.isfinite(numbers).all():  # as_number's result, without the loop
                    vals = numbers.tolist()
                else:
                    vals = []
                    for i, raw in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
                        try:
                            vals.append(as_number(raw))
                        except ValueError as exc:
                            bad.append(f"row {i} ({ids[i]}): {m.value_property} {exc}")
                            vals.append(0.0)
            lo, hi = now - self.policy.past_ms, now + self.policy.future_ms
            bad += [f"row {i} ({ids[i]}): timestamp outside the accepted horizon"
                    for i in np.flatnonzero((ms < lo) | (ms > hi))[:5].tolist()]
            distinct = set(tenants)
            if "" in distinct or not all(isinstance(t, str) for t in distinct):
                bad.append("tenant ids must be non-empty strings")
            if self.policy.reject_tenants:
                active = store.customers(conn, sorted(distinct))
                refused = sorted(t for t in distinct if not active.get(t, False))
                if refused:
                    bad.append(f"tenants {', '.join(map(repr, refused[:5]))} are not active metering customers "
                               "(policy unknown_tenant = reject)")
            if bad:
                raise BadRequestError(f"{len(bad)} problem(s), nothing stored: " + "; ".join(bad[:5]))
            dim_cols = [dimensions.get(name) if dimensions else None for name in m.group_by]
            dim_lists = [(c.tolist() if isinstance(c, np.ndarray) else c) if c is not None else None for c in dim_cols]
            if not dim_lists:
                dims = ["[]"] * n
            else:
                # One key per distinct combination of raw values (a handful), not per row; typed, since
                # 1, 1.0 and True are equal as dict keys but not as dimension texts.
                keys: dict[tuple[Any, ...], str] = {}
                combos = zip(*[col if col is not None else [None] * n for col in dim_lists], strict=True)
                dims = []
                for c in combos:
                    typed = (*c, *map(type, c))
                    key = keys.get(typed)
                    if key is None:
                        key = keys[typed] = dims_key([dimension_text(v) for v in c])
                    dims.append(key)
            batch = Batch(meter, list(range(n)), tenants, dims, ts, vals, texts, ids)
            try:
                kept = store_batch(store, conn, batch, now, self.policy.dedup_ms)
            except Overflow:
                raise BadRequestError("nothing stored: the meter's sum would exceed the float range "
                                      "(about 1.8e308)") from None
        accepted = sum(kept)
        return ColumnsResult(accepted, n - accepted)

    # -- query and cancel ----------------------------------------------------------------------------

    @hookimpl
    def metering_fetch_usage(self, meter_id: str, query: UsageQuery) -> Page[UsageRow]:
        """A page of usage rows over ``[from, to)``. :raises NotFoundError: no such meter.
        :raises BadRequestError: a groupBy the meter does not declare, a bad token, too many windows."""
        store = self._ready()
        with store.read() as conn:
            return fetch_usage(store, conn, self._meter(conn, meter_id), query, self._series)

    @hookimpl
    def metering_cancel_usage_events(self, request: CancelUsageRequest) -> CancelResult:
        """Cancel events by identifiers or meter + (tenant) + range; counts only newly cancelled events.
        Touched rollup cells are recomputed from the events in the same transaction.
        :raises NotFoundError: the meter of a range cancel does not exist."""
        store = self._ready()
        e = s.events.c
        with store.write() as conn:
            # Which events: by identifiers, those of each stored identifier's dedup entry, found in its
            # meter's time index between the entry's earliest and latest time; by range, the range's.
            wheres: list[tuple[int, sa.ColumnElement[bool]]] = []
            if request.identifiers:
                seqs = sorted({seq for seq, *_ in store.identifier_spans(conn, request.identifiers)})
                for seq in seqs:
                    store.lock_meter(conn, seq, exclusive=True)
                # Read again under the locks: a batch committed meanwhile may have widened a span.
                spans = store.identifier_spans(conn, request.identifiers)
                for seq in seqs:
                    mine = [(i, lo, hi) for m, i, lo, hi in spans if m == seq]
                    for k in range(0, len(mine), _SPANS_PER_STATEMENT):
                        wheres.append((seq, sa.or_(*(sa.and_(e.ts >= lo, e.ts <= hi, e.identifier == i)
                                                     for i, lo, hi in mine[k:k + _SPANS_PER_STATEMENT]))))
            else:
                assert request.meter_id is not None and request.from_ is not None and request.to is not None
                seqs = [self._meter(conn, request.meter_id).seq]
                where = sa.and_(e.ts >= ceil_ms(request.from_), e.ts < ceil_ms(request.to))
                if request.tenant_id is not None:
                    where = sa.and_(where, e.series_id.in_(sa.select(s.series.c.series_id).where(
                        s.series.c.meter_seq == seqs[0], s.series.c.tenant_id == request.tenant_id)))
                wheres.append((seqs[0], where))
                store.lock_meter(conn, seqs[0], exclusive=True)
            touched: dict[int, list[tuple[int, int]]] = {}
            for seq, where in wheres:
                for sid, ts in conn.execute(sa.update(s.events).where(e.meter_seq == seq, where, e.cancelled.is_(False))
                                            .values(cancelled=True).returning(e.series_id, e.ts)):
                    touched.setdefault(seq, []).append((sid, ts))
            for seq, cells in sorted(touched.items()):
                recompute(conn, seq, cells)
            return CancelResult(sum(len(c) for c in touched.values()))

    # -- customers -----------------------------------------------------------------------------------

    @hookimpl
    def metering_create_customer(self, event: Event) -> None:
        """Register ``detail.tenantId`` as a metering customer (idempotent)."""
        tenant = _tenant_of(event)
        with self._ready().write() as conn:
            self.store.set_customer(conn, tenant, True)

    @hookimpl
    def metering_delete_customer(self, event: Event) -> None:
        """Offboard ``detail.tenantId``; its usage stays queryable until :meth:`purge_tenant`."""
        tenant = _tenant_of(event)
        with self._ready().write() as conn:
            self.store.set_customer(conn, tenant, False)

    def purge_tenant(self, tenant_id: str) -> int:
        """Erase a tenant's events from every meter, in one transaction (rollup cells and dedup entries
        included: its identifiers may be stored again), and forget it as a metering customer; returns how
        many events were removed (0 for an unknown tenant). Other tenants' usage is untouched. The only way
        usage of an offboarded tenant goes away, as ``memory``'s ``purge_tenant``."""
        with self._ready().write() as conn:
            return self.store.purge_tenant(conn, tenant_id)

    def stats(self) -> dict[str, Any]:
        """Counters of the database: meters, customers, series, events, cancelled, rollup cells, bytes."""
        return self._ready().stats()
