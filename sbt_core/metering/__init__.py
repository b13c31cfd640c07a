"""Pure helpers every IMetering provider shares, so that switching provider changes no number billed.

- values: :func:`as_number`, :func:`as_text`, :func:`dimension_text` (OpenMeter's parsing rules);
- windows: :func:`window_edges` and the millisecond conversions (tumbling windows in a time zone);
- pages: :func:`encode_usage_token` / :func:`decode_usage_token` / :func:`decode_usage_position`
  (``metering_fetch_usage`` tokens),
  :func:`encode_meters_token` / :func:`decode_meters_token` (``metering_fetch_all_meters`` tokens);
- bulk ingest: :class:`IngestResult`, :class:`ColumnsResult`, :func:`check_columns`.
"""

from ._results import ColumnsResult, IngestResult, check_columns
from ._tokens import (
    decode_meters_token,
    decode_usage_position,
    decode_usage_token,
    encode_meters_token,
    encode_usage_token,
)
from ._values import as_number, as_text, dimension_text
from ._windows import MAX_WINDOWS, QUARTER_MS, ceil_ms, floor_ms, ms_to_datetime, window_edges

__all__ = ["MAX_WINDOWS", "QUARTER_MS", "ColumnsResult", "IngestResult", "as_number", "as_text", "ceil_ms",
           "check_columns", "decode_meters_token", "decode_usage_position", "decode_usage_token", "dimension_text",
           "encode_meters_token", "encode_usage_token", "floor_ms", "ms_to_datetime", "window_edges"]
