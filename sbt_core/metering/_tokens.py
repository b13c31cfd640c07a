"""The opaque ``next_token`` of a provider's pages.

- ``metering_fetch_usage``: an offset bound to the query's parameters. A page is computed afresh from the
  current data; the token only says where the next page starts and refuses to be reused with other
  parameters (a BadRequestError, as OpenMeter refuses a foreign cursor). A provider may also put the
  key of the page's last row in it (``after``), so the next page computes only the rows after that key.
- ``metering_fetch_all_meters``: the creation sequence of the last meter of the page (meters are listed
  oldest first, so a meter created meanwhile is never skipped nor repeated).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from ..errors import BadRequestError
from ..models import UsageQuery

__all__ = ["decode_meters_token", "decode_usage_position", "decode_usage_token", "encode_meters_token",
           "encode_usage_token"]

_MALFORMED = "next_token is malformed; pass the token of the previous page unchanged"


def _encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, object]:
    """:raises BadRequestError: not a token this module wrote."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise BadRequestError(_MALFORMED) from None
    if not isinstance(data, dict):
        raise BadRequestError(_MALFORMED)
    return data


def encode_meters_token(after: int) -> str:
    """The token of the page of meters created after creation sequence ``after``."""
    return _encode({"after": after})


def decode_meters_token(limit: int, next_token: str | None) -> int:
    """The creation sequence a page of meters starts after (-1 without a token), ``limit`` checked.

    :raises BadRequestError: ``limit`` outside 1-1000, or a malformed token.
    """
    if not 1 <= limit <= 1000:
        raise BadRequestError("limit must be between 1 and 1000")
    if not next_token:
        return -1
    after = _decode(next_token).get("after")
    if not isinstance(after, int) or isinstance(after, bool):
        raise BadRequestError(_MALFORMED)
    return after


def _fingerprint(meter_id: str, q: UsageQuery) -> int:
    text = "|".join([meter_id, q.from_.isoformat(), q.to.isoformat(), str(q.window_size), q.window_time_zone,
                     q.tenant_id or "", ",".join(q.group_by)])
    return zlib.crc32(text.encode())


def encode_usage_token(offset: int, meter_id: str, query: UsageQuery, after: list[Any] | None = None) -> str:
    """The token of the page starting at row ``offset`` of ``query`` on ``meter_id``; ``after``, when
    given, is the last row's key (a JSON list the provider defines) and comes back from
    :func:`decode_usage_position`."""
    data: dict[str, Any] = {"o": offset, "q": _fingerprint(meter_id, query)}
    if after is not None:
        data["k"] = after
    return _encode(data)


def decode_usage_position(meter_id: str, query: UsageQuery) -> tuple[int, list[Any] | None]:
    """``(row offset, last row's key or None)`` of ``query.next_token`` (``(0, None)`` without a token).

    :raises BadRequestError: a malformed token, or one issued for other query parameters.
    """
    token = query.next_token
    if not token:
        return 0, None
    data = _decode(token)
    if "o" not in data or "q" not in data:
        raise BadRequestError(_MALFORMED)
    offset, seen, after = data["o"], data["q"], data.get("k")
    if not isinstance(offset, int) or offset < 0 or seen != _fingerprint(meter_id, query):
        raise BadRequestError("next_token belongs to another query; repeat the same query parameters")
    if after is not None and not isinstance(after, list):
        raise BadRequestError(_MALFORMED)
    return offset, after


def decode_usage_token(meter_id: str, query: UsageQuery) -> int:
    """The row offset ``query.next_token`` points at (0 without a token).

    :raises BadRequestError: a malformed token, or one issued for other query parameters.
    """
    return decode_usage_position(meter_id, query)[0]
