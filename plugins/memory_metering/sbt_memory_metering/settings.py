"""Settings of the ``memory`` metering provider: the ``[providers.metering]`` table of ``sbt.toml``.

Example::

    [providers.metering]
    type = "memory"
    horizon_past_days = 35          # Stripe: events up to 35 days old
    horizon_future_seconds = 300    # Stripe: up to 5 minutes ahead
    dedup_window_days = 32          # OpenMeter: identifiers remembered 32 days
    unknown_event = "reject"        # or "drop"
    unknown_tenant = "accept"       # or "reject"
    durable = true                  # write-ahead log + snapshot in <state_dir>/memory (false: memory only)
    fsync = "batch"                 # or "interval" (every fsync_interval_ms) or "off"
"""

from __future__ import annotations

from pathlib import Path

import attrs

from ._wal import FSYNC_POLICIES

__all__ = ["FSYNC_POLICIES", "MemoryMeteringSettings", "UNKNOWN_EVENT_POLICIES", "UNKNOWN_TENANT_POLICIES"]

#: ``reject``: a usage event naming no meter raises BadRequestError (the bus records the failure).
#: ``drop``: it is ignored and counted in :attr:`MemoryMetering.stats` (Stripe's ``no_meter`` error report,
#: without failing the producer).
UNKNOWN_EVENT_POLICIES = ("reject", "drop")
#: ``accept``: any tenant id is metered (usage may arrive before the onboarding event).
#: ``reject``: only tenants registered by ``metering_create_customer`` and not deleted are metered
#: (Stripe's ``meter_event_customer_not_found``).
UNKNOWN_TENANT_POLICIES = ("accept", "reject")


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
    - ``durable`` (bool, default on): every accepted change (meters, events, cancellations, customers,
      purges) is appended to a write-ahead log before the call returns, and the log is compacted into
      a snapshot in the background; ``sbt_startup`` loads the snapshot and replays the log, so what a
      call acknowledged survives ``kill -9``. Off: everything lives in memory only and is lost when the
      process stops (tests, throwaway runs); nothing is read or written.
    - ``fsync``: when the log reaches stable storage (see :data:`FSYNC_POLICIES`). Every policy writes
      a change to the operating system before the call returns, so all survive the process being
      killed; they differ on a power cut or kernel crash. ``batch`` (default): fsync before returning,
      once per delivered batch (concurrent callers share one fsync); nothing acknowledged is lost,
      at the cost of one fsync (0.1-10 ms, disk-dependent) per call. ``interval``: fsync every
      ``fsync_interval_ms`` in the background; a power cut loses at most that much acknowledged
      work; calls never wait for the disk. ``off``: the operating system flushes when it likes
      (Linux: within about 30 s); fastest, a power cut may lose the last seconds.
    - ``fsync_interval_ms`` (ms, > 0): the period of ``fsync = "interval"``.
    - ``compact_log_bytes`` (bytes, >= 0): compact the log into the snapshot once it holds this many
      bytes (default 64 MiB: a few million events; start-up replays at most about that much). 0
      compacts only on shutdown.
    - ``snapshot_path``: file of the snapshot; the log's segments ``<stem>.<n>.wal`` sit beside it.
      Default ``<state_dir>/memory/metering.npz``.
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

    horizon_past_days: float = attrs.field(default=35.0, validator=attrs.validators.gt(0))
    horizon_future_seconds: float = attrs.field(default=300.0, validator=attrs.validators.ge(0))
    dedup_window_days: float = attrs.field(default=32.0, validator=attrs.validators.gt(0))
    unknown_event: str = attrs.field(default="reject", validator=attrs.validators.in_(UNKNOWN_EVENT_POLICIES))
    unknown_tenant: str = attrs.field(default="accept", validator=attrs.validators.in_(UNKNOWN_TENANT_POLICIES))
    durable: bool = True
    fsync: str = attrs.field(default="batch", validator=attrs.validators.in_(FSYNC_POLICIES))
    fsync_interval_ms: int = attrs.field(default=200, validator=attrs.validators.gt(0))
    compact_log_bytes: int = attrs.field(default=64 << 20, validator=attrs.validators.ge(0))
    snapshot_path: Path | None = None
    rollup_cells_per_event: float = attrs.field(default=1.5, validator=attrs.validators.ge(0))
    pending_flush_events: int = attrs.field(default=65536, validator=attrs.validators.gt(0))
    release_memory: bool = True
