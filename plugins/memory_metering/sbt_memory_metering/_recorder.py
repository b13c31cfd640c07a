"""What the engine tells its write-ahead log: one call per accepted change, then ``commit``.

The engine calls a recorder under its lock right after applying a change, and :meth:`Recorder.commit`
after releasing the lock, before returning to the caller. This base records nothing (the in-memory
mode, and replay itself); :class:`._journal.Journal` writes the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sbt_core.models import Meter

if TYPE_CHECKING:
    from ._store import MeterStore

__all__ = ["Recorder"]


class Recorder:
    """Records nothing."""

    def meter_created(self, meter: Meter) -> None:
        """A meter was created (its record in full: id, creation time, sequence)."""

    def meter_updated(self, meter: Meter) -> None:
        """A meter's name, description or status changed (its new record)."""

    def meter_deleted(self, meter_id: str) -> None:
        """A meter and its events were deleted."""

    def customer(self, tenant_id: str, active: bool) -> None:
        """A tenant was onboarded (``active``) or offboarded."""

    def purged(self, tenant_id: str) -> None:
        """A tenant's events were erased."""

    def cancelled_ids(self, identifiers: list[str]) -> None:
        """Events were cancelled by identifier."""

    def cancelled_range(self, meter_id: str, from_ms: int, to_ms: int, tenant_id: str | None) -> None:
        """A meter's events with event time in ``[from_ms, to_ms)`` (of one tenant) were cancelled."""

    def ingested_one(self, store: MeterStore, ms: int, value: float, series: int, recv: int,
                     identifier: str) -> None:
        """One validated event went to ``store``'s pending buffer."""

    def ingested(self, store: MeterStore, ts: np.ndarray, val: np.ndarray, ser: np.ndarray,
                 hashes: np.ndarray, recv: int) -> None:
        """Validated events were appended to ``store`` (deduplicated against ``recv``)."""

    def dropped(self, count: int) -> None:
        """Events were dropped by ``unknown_event = "drop"`` (a counter only)."""

    def commit(self) -> None:
        """Return once what was recorded is as durable as the fsync policy makes it."""
