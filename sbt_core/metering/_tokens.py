"""The opaque ``next_token`` of ``metering_fetch_usage`` pages: an offset bound to the query's parameters.

A page is computed afresh from the current data; the token only says where the next page starts and
refuses to be reused with other parameters (a BadRequestError, as OpenMeter refuses a foreign cursor).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib

from ..errors import BadRequestError
from ..models import UsageQuery

__all__ = ["decode_usage_token", "encode_usage_token"]


def _fingerprint(meter_id: str, q: UsageQuery) -> int:
    text = "|".join([meter_id, q.from_.isoformat(), q.to.isoformat(), str(q.window_size), q.window_time_zone,
                     q.tenant_id or "", ",".join(q.group_by)])
    return zlib.crc32(text.encode())


def encode_usage_token(offset: int, meter_id: str, query: UsageQuery) -> str:
    """The token of the page starting at row ``offset`` of ``query`` on ``meter_id``."""
    raw = json.dumps({"o": offset, "q": _fingerprint(meter_id, query)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_usage_token(meter_id: str, query: UsageQuery) -> int:
    """The row offset ``query.next_token`` points at (0 without a token).

    :raises BadRequestError: a malformed token, or one issued for other query parameters.
    """
    token = query.next_token
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, seen = data["o"], data["q"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadRequestError("next_token is malformed; pass the token of the previous page unchanged") from None
    if not isinstance(offset, int) or offset < 0 or seen != _fingerprint(meter_id, query):
        raise BadRequestError("next_token belongs to another query; repeat the same query parameters")
    return offset
