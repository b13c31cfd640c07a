"""Settings of the ``memory`` metering provider: the ``[providers.metering]`` table of ``sbt.toml``.

Example::

    [providers.metering]
    type = "memory"
    horizon_past_days = 35          # Stripe: events up to 35 days old
    horizon_future_seconds = 300    # Stripe: up to 5 minutes ahead
    dedup_window_days = 32          # OpenMeter: identifiers remembered 32 days
    unknown_event = "reject"        # or "drop"
    unknown_tenant = "accept"       # or "reject"
    snapshot = true                 # save on shutdown, load on start-up
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

__all__ = ["MemoryMeteringSettings", "UNKNOWN_EVENT_POLICIES", "UNKNOWN_TENANT_POLICIES"]

#: ``reject``: a usage event naming no meter raises BadRequestError (the bus records the failure).
#: ``drop``: it is ignored and counted in :attr:`MemoryMetering.stats` (Stripe's ``no_meter`` error report,
#: without failing the producer).
UNKNOWN_EVENT_POLICIES = ("reject", "drop")
#: ``accept``: any tenant id is metered (usage may arrive before the onboarding event).
#: ``reject``: only tenants registered by ``metering_create_customer`` and not deleted are metered
#: (Stripe's ``meter_event_customer_not_found``).
UNKNOWN_TENANT_POLICIES = ("accept", "reject")


def _one_of(choices: tuple[str, ...]) -> Callable[[object, attrs.Attribute, str], None]:  # type: ignore[type-arg]
    def check(_: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {', '.join(choices)}; got {value!r}")
    return check


def _positive(_: object, attribute: attrs.Attribute, value: float) -> None:  # type: ignore[type-arg]
    if not value > 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute, value: float) -> None:  # type: ignore[type-arg]
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be 0 or more, got {value!r}")


@attrs.frozen
class MemoryMeteringSettings:
    """Knobs of the in-memory metering engine. Every field has Stripe's or OpenMeter's default.

    - ``horizon_past_days`` (days, > 0): oldest accepted event time, relative to now (Stripe: 35 days).
    - ``horizon_future_seconds`` (seconds, >= 0): newest accepted event time ahead of now (Stripe: 5 minutes).
    - ``dedup_window_days`` (days, > 0): an event whose ``identifier`` matches a stored event whose event
      time is less than this before the moment of ingestion is ignored (OpenMeter: 32 days). Cancelled
      events still hold their identifier; purged ones do not.
    - ``unknown_event``: ``reject`` | ``drop`` (see :data:`UNKNOWN_EVENT_POLICIES`).
    - ``unknown_tenant``: ``accept`` | ``reject`` (see :data:`UNKNOWN_TENANT_POLICIES`).
    - ``snapshot`` (bool, default off): save every meter, customer and event to ``snapshot_path`` on
      ``sbt_shutdown`` and load it on ``sbt_startup``.
    - ``snapshot_path``: file of the snapshot; default ``<state_dir>/memory/metering.npz``.
    - ``rollup_cells_per_event`` (>= 0): memory budget of the 15-minute pre-aggregation grid of a meter,
      in grid cells (32 bytes each) per stored event, with a floor of 262,144 cells (8 MB); beyond it
      the meter answers from raw events only (slower, same results) until it has enough events.
      0 disables pre-aggregation.
    - ``release_memory`` (bool, default on): after a bulk load of at least 100,000 events, a purge or a
      snapshot load, hand freed heap back to the OS (glibc ``malloc_trim``), so the process's resident
      memory tracks what is stored rather than the load's freed temporaries.
    - ``pending_flush_events`` (> 0): events taken one at a time are buffered and folded into the
      columnar store (deduplicated, pre-aggregated) in batches of this many, or at the next query.
    """

    horizon_past_days: float = attrs.field(default=35.0, validator=_positive)
    horizon_future_seconds: float = attrs.field(default=300.0, validator=_non_negative)
    dedup_window_days: float = attrs.field(default=32.0, validator=_positive)
    unknown_event: str = attrs.field(default="reject", validator=_one_of(UNKNOWN_EVENT_POLICIES))
    unknown_tenant: str = attrs.field(default="accept", validator=_one_of(UNKNOWN_TENANT_POLICIES))
    snapshot: bool = False
    snapshot_path: Path | None = None
    rollup_cells_per_event: float = attrs.field(default=1.5, validator=_non_negative)
    pending_flush_events: int = attrs.field(default=65536, validator=_positive)
    release_memory: bool = True
