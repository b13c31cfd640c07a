"""schemathesis hooks of ``test_schemathesis.py``: the few failures a check reports where sbt behaves as
sbt-aws (or the rule is one JSON Schema cannot state), each dropped by ``filter_failure`` only for its
operation, status and message, with its reason. Everything else fails the run.

docs/operating.md ("What schemathesis is told") lists the same rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import attrs
import schemathesis

#: ST201 "schema-violating request accepted", ST202 "schema-valid request rejected", ST301 "deleted
#: resource still available" (``st explain <code>``).
ACCEPTED_INVALID, REJECTED_VALID, STILL_AVAILABLE = "ST201", "ST202", "ST301"


def _body(response: Any) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _refused(pattern: str) -> Callable[[Any], bool]:
    """A 400 whose message matches ``pattern`` (from its start)."""
    def match(response: Any) -> bool:
        body = _body(response)
        return response.status_code == 400 and isinstance(body, dict) \
            and re.match(pattern, str(body.get("message", ""))) is not None
    return match


def _partial_failure(response: Any) -> bool:
    body = _body(response)
    return response.status_code == 200 and isinstance(body, dict) and body.get("FailedEntryCount", 0) > 0


def _soft_deleted(response: Any) -> bool:
    body = _body(response)
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and isinstance(data.get("tenantRegistration"), dict):  # PATCH's answer
        data = data["tenantRegistration"]
    return response.status_code == 200 and isinstance(data, dict) and data.get("sbtaws_active") is False


@attrs.frozen
class Known:
    """A failure schemathesis reports that is sbt's documented behaviour: ``code`` on ``operations``
    (``"METHOD /path"``) when ``response`` matches; ``reason`` says why."""

    code: str
    operations: tuple[str, ...]
    response: Callable[[Any], bool]
    reason: str


KNOWN = (
    Known(ACCEPTED_INVALID, ("POST /events",), _partial_failure,
          "EventBridge PutEvents' partial failure (sbt-aws's bus): a bad entry is answered 200 with "
          "FailedEntryCount and its ErrorCode, so one bad entry never rejects the others; the document says so"),
    Known(STILL_AVAILABLE, ("GET /tenants/{tenantId}", "PUT /tenants/{tenantId}",
                            "GET /tenant-registrations/{tenantRegistrationId}",
                            "PATCH /tenant-registrations/{tenantRegistrationId}"),
          _soft_deleted,
          "sbt-aws's soft delete: a deleted tenant or registration is still there, answered with sbtaws_active "
          "false (reads and updates 200, as upstream's DynamoDB items stay)"),
    Known(REJECTED_VALID, ("GET /users", "GET /meters", "GET /usage/{meterId}", "GET /tenants",
                           "GET /tenant-registrations"),
          _refused("next_token (is malformed|belongs to another query)"),
          "next_token is opaque: only the next_token of the previous page (or none) is valid, which no schema "
          "can generate"),
    Known(REJECTED_VALID, ("GET /usage/{meterId}", "DELETE /usage"),
          _refused("from must be before to|the range holds more than [0-9]+ [A-Z]+ windows"),
          "from before to, and a usage range of at most 200000 windows: JSON Schema cannot compare or combine "
          "two values"),
    Known(REJECTED_VALID, ("GET /tenant-config",), _refused("name the tenant"),
          "one of ?tenantId=, ?tenantName= or an Origin header is needed: JSON Schema cannot require one of "
          "several parameters in different places"),
    Known(REJECTED_VALID, ("GET /usage/{meterId}",), _refused("groupBy .* is not a dimension of meter"),
          "a usage query groups by the meter's own dimensions (its groupBy): the document cannot know a meter's"),
    Known(REJECTED_VALID, ("POST /meters", "GET /usage/{meterId}"),
          _refused("groupBy names must be distinct|valueProperty cannot also be a groupBy name"),
          "groupBy names are distinct once trimmed (blank items ignored), and valueProperty is not one of them: "
          "uniqueItems compares raw items, and JSON Schema cannot compare two fields"),
)


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but the :data:`KNOWN` ones."""
    label = case.operation.label
    return not any(failure.code == k.code and label in k.operations and k.response(response) for k in KNOWN)
