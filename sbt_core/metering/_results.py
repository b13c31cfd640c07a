"""The bulk ingest entry points every metering provider offers besides the hooks: their outcomes, and the
checks of ``ingest_columns``' arguments that do not depend on how events are stored."""

from __future__ import annotations

from collections.abc import Mapping, Sized

import attrs

from ..errors import BadRequestError
from ..models import Meter, MeterStatus

__all__ = ["ColumnsResult", "IngestResult", "check_columns"]


def check_columns(meter: Meter | None, event_name: str, n: int, tenant_ids: Sized, timestamps: Sized,
                  values: Sized | None, dimensions: Mapping[str, Sized] | None) -> None:
    """Refuse an ``ingest_columns`` call before any row is read: no meter counts ``event_name``, the meter
    is inactive, a column has not ``n`` rows like the identifiers, or a dimension is not one of the meter's
    ``groupBy`` names.

    :raises BadRequestError: naming the first of those problems.
    """
    if meter is None:
        raise BadRequestError(f"no meter counts eventName {event_name!r}")
    if meter.status is not MeterStatus.ACTIVE:
        raise BadRequestError(f"meter {meter.meter_id!r} ({event_name}) is inactive and accepts no new events")
    columns: dict[str, Sized] = {"tenant_ids": tenant_ids, "timestamps": timestamps, **(dimensions or {})}
    if values is not None:
        columns["values"] = values
    wrong = [name for name, column in columns.items() if len(column) != n]
    if wrong:
        raise BadRequestError(f"columns {', '.join(wrong)} do not have {n} rows like identifiers")
    unknown_dims = sorted(set(dimensions or {}) - set(meter.group_by))
    if unknown_dims:
        raise BadRequestError(f"{', '.join(unknown_dims)} are not groupBy names of meter {meter.meter_id!r}")


@attrs.frozen
class IngestResult:
    """Outcome of one event of ``ingest_batch``: ``status`` is ``accepted``, ``duplicate`` (identifier
    seen within the dedup window), ``dropped`` (unknown event name under ``unknown_event = "drop"``) or
    ``rejected`` (``error`` says why, as the hook's BadRequestError would)."""

    index: int
    identifier: str | None
    status: str
    error: str | None = None


@attrs.frozen
class ColumnsResult:
    """Outcome of ``ingest_columns``: how many events were stored and how many were duplicates."""

    accepted: int
    duplicates: int
