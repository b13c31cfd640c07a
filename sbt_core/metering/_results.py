"""Outcomes of the bulk ingest entry points every metering provider offers besides the hooks."""

from __future__ import annotations

import attrs

__all__ = ["ColumnsResult", "IngestResult"]


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
