"""The ``memory`` provider: IMetering hooks over the in-memory :class:`~._engine.Engine`.

Hooks are thin: they translate the contract's records to engine calls. The provider also exposes the
engine's bulk and maintenance entry points (``ingest_batch``, ``ingest_columns``, ``purge_tenant``,
``flush``, ``stats``) for the bus, bulk loads and operators.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sbt_core import BadRequestError, Provider, ProviderContext, StartupError, hookimpl
from sbt_core.models import (
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

from . import _snapshot
from ._durable import Durable, InUseError
from ._engine import ColumnsResult, Engine, IngestResult
from ._snapshot import SnapshotError
from ._wal import LogCorruptError
from .settings import MemoryMeteringSettings

__all__ = ["MemoryMetering"]


def _tenant_of(event: Event) -> str:
    tenant = event.detail.get("tenantId") if isinstance(event.detail, dict) else None
    if not isinstance(tenant, str) or not tenant:
        raise BadRequestError(f"event {event.id!r} ({event.detail_type}) has no tenantId in its detail")
    return tenant


class MemoryMetering(Provider):
    """IMetering in one process's memory: exact Stripe/OpenMeter semantics, columnar and pre-aggregated.

    Settings: :class:`MemoryMeteringSettings` (``[providers.metering]``). Thread-safe.
    """

    settings_class = MemoryMeteringSettings

    def __init__(self, settings: MemoryMeteringSettings | None, context: ProviderContext) -> None:
        super().__init__(settings if settings is not None else MemoryMeteringSettings(), context)
        self.engine = Engine(self.settings)
        #: The snapshot and write-ahead log, once :meth:`sbt_startup` opened them (``durable = true``).
        self.durable: Durable | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def snapshot_path(self) -> Path:
        """Where the snapshot lives: ``snapshot_path`` or ``<state_dir>/<type name>/metering.npz``; the
        write-ahead log's segments sit beside it."""
        if self.settings.snapshot_path is not None:
            return Path(self.settings.snapshot_path)
        return self.context.data_dir / "metering.npz"

    @hookimpl
    def sbt_startup(self) -> None:
        """With ``durable`` (the default): load the snapshot, replay the write-ahead log and start logging
        every change. Idempotent.

        :raises StartupError: the snapshot or a log segment is damaged (the message names the file);
            nothing is overwritten, so the files can be inspected or restored from a backup.
        """
        if not self.settings.durable or self.durable is not None:
            return
        durable = Durable(self.engine, self.settings, self.snapshot_path, self.context.logger)
        try:
            recovery = durable.open()
        except InUseError as exc:
            raise StartupError(f"memory metering: {exc}; one process owns a state folder (use the sql metering "
                               "provider for several)") from exc
        except SnapshotError as exc:
            raise StartupError(f"memory metering: the snapshot {exc.path} cannot be read: {exc.why}; nothing was "
                               "overwritten: restore it from a backup, or move it and the log segments beside it "
                               "away to start empty") from exc
        except LogCorruptError as exc:
            raise StartupError(f"memory metering: the write-ahead log {exc.path} cannot be replayed: {exc.why} "
                               f"at byte {exc.offset}; nothing was overwritten") from exc
        self.durable = durable
        self.context.logger.info(
            "memory metering: recovered %d events from %s and %d log records in %.2f s%s",
            recovery.snapshot_events, self.snapshot_path, recovery.records, recovery.seconds,
            f" (a torn last record of {recovery.torn_bytes} bytes was dropped)" if recovery.torn_bytes else "")

    @hookimpl
    def sbt_shutdown(self) -> None:
        """Compact the log into the snapshot (a fast next start-up) and close it."""
        if self.durable is not None:
            durable, self.durable = self.durable, None
            durable.close()

    def save_snapshot(self, path: Path | None = None) -> int:
        """Write a snapshot now; returns the number of events. Without ``path`` on a started durable
        provider this is a compaction (the log it holds is dropped); with ``path``, an export that
        leaves the log alone.

        :raises RuntimeError: no ``path`` on a durable provider not started: its files were not loaded,
            so writing over them would lose them.
        """
        if path is None and self.durable is not None:
            return self.durable.compact()
        if path is None and self.settings.durable:
            raise RuntimeError("start the provider (sbt_startup) before compacting its snapshot, or pass a path")
        return _snapshot.save(self.engine, path or self.snapshot_path)

    def load_snapshot(self, path: Path | None = None) -> int:
        """Replace everything with a snapshot; returns the number of events loaded. On a started
        durable provider the replacement is made durable before this returns.

        :raises ValueError: the file is damaged or not a snapshot (``SnapshotError``).
        """
        if self.durable is not None:
            return self.durable.replace(path or self.snapshot_path)
        return _snapshot.load(self.engine, path or self.snapshot_path)[0]

    # -- meters --------------------------------------------------------------------------------------

    @hookimpl
    def metering_create_meter(self, meter: MeterCreate) -> Meter:
        """Create a meter. :raises ConflictError: its eventName is taken (Stripe: one meter per event name)."""
        return self.engine.create_meter(meter)

    @hookimpl
    def metering_fetch_meter(self, meter_id: str) -> Meter:
        """One meter. :raises NotFoundError: no such meter."""
        return self.engine.fetch_meter(meter_id)

    @hookimpl
    def metering_fetch_all_meters(self, limit: int, next_token: str | None) -> Page[Meter]:
        """A page of meters, oldest first. :raises BadRequestError: a malformed token."""
        return self.engine.fetch_all_meters(limit, next_token)

    @hookimpl
    def metering_update_meter(self, meter_id: str, update: MeterUpdate) -> Meter:
        """Change name, description or status (``inactive`` refuses new events, as Stripe's deactivate)."""
        return self.engine.update_meter(meter_id, update)

    @hookimpl
    def metering_delete_meter(self, meter_id: str) -> Meter | None:
        """Delete a meter and its events. :raises NotFoundError: no such meter."""
        return self.engine.delete_meter(meter_id)

    # -- usage ---------------------------------------------------------------------------------------

    @hookimpl
    def metering_ingest_usage_event(self, usage_event: UsageEvent) -> None:
        """Record one usage event; a repeated identifier within the dedup window is ignored.

        :raises BadRequestError: unknown eventName (``unknown_event = "reject"``), tenant refused by
            ``unknown_tenant = "reject"``, inactive meter, bad value, timestamp outside the horizon.
        """
        self.engine.ingest(usage_event)

    @hookimpl
    def metering_ingest_usage_events(self, usage_events: list[UsageEvent]) -> list[str | None]:
        """The batch form the bus delivers bursts of ``ingestUsage`` through: one outcome per event, None
        when recorded (or a duplicate, or dropped by policy), else why it was refused."""
        return [r.error if r.status == "rejected" else None for r in self.engine.ingest_batch(usage_events)]

    def ingest_batch(self, events: Iterable[UsageEvent | dict[str, Any]]) -> list[IngestResult]:
        """Record many events; one :class:`IngestResult` per event (accepted, duplicate, dropped, rejected)."""
        return self.engine.ingest_batch(events)

    def ingest_columns(self, event_name: str, tenant_ids: Sequence[str] | np.ndarray,
                       timestamps: Sequence[int] | np.ndarray, values: Sequence[Any] | np.ndarray | None,
                       identifiers: Sequence[str] | np.ndarray,
                       dimensions: dict[str, Sequence[Any] | np.ndarray] | None = None) -> ColumnsResult:
        """Bulk-load columns of one meter's events (timestamps in epoch ms); all-or-nothing validation.
        See :meth:`Engine.ingest_columns`."""
        return self.engine.ingest_columns(event_name, tenant_ids, timestamps, values, identifiers, dimensions)

    @hookimpl
    def metering_fetch_usage(self, meter_id: str, query: UsageQuery) -> Page[UsageRow]:
        """A page of usage rows over ``[from, to)``. :raises NotFoundError: no such meter.
        :raises BadRequestError: a groupBy the meter does not declare, a bad token, too many windows."""
        return self.engine.fetch_usage(meter_id, query)

    @hookimpl
    def metering_cancel_usage_events(self, request: CancelUsageRequest) -> CancelResult:
        """Cancel events by identifiers or meter + (tenant) + range; counts only newly cancelled events.
        :raises NotFoundError: the meter of a range cancel does not exist."""
        return self.engine.cancel(request)

    # -- customers -----------------------------------------------------------------------------------

    @hookimpl
    def metering_create_customer(self, event: Event) -> None:
        """Register ``detail.tenantId`` as a metering customer (idempotent)."""
        self.engine.create_customer(_tenant_of(event))

    @hookimpl
    def metering_delete_customer(self, event: Event) -> None:
        """Offboard ``detail.tenantId``; its usage stays queryable until :meth:`purge_tenant`."""
        self.engine.delete_customer(_tenant_of(event))

    def purge_tenant(self, tenant_id: str) -> int:
        """Erase a tenant's events from every meter; returns how many were removed."""
        return self.engine.purge_tenant(tenant_id)

    def flush(self) -> None:
        """Fold buffered one-at-a-time events into the store (queries do it themselves)."""
        self.engine.flush()

    def stats(self) -> dict[str, int]:
        """Counters: meters, events, cancelled, pending, dropped, bytes."""
        return self.engine.stats()
