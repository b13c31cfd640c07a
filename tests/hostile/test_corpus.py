"""The fixed hostile corpus: issue 26's reproducers, oversized strings, deep nesting, NUL bytes, duplicate
keys and wrong types, each sent to the route it attacks. After each: no 5xx, a refused request changed
nothing any read shows, and every read route still answers 200 — also once the stores are reopened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sbt_core.input_policy import MAX_DEPTH

from ._api import Api, broken_reads, raw_json, start, volatile

DEEP = b"[" * 10_000 + b"]" * 10_000
METER = {"name": "calls", "eventName": "calls", "aggregation": "SUM", "groupBy": ["region"]}


def ingest(detail: dict[str, Any]) -> bytes:
    return raw_json([{"source": "sbt.application.plane", "detail-type": "ingestUsage", "detail": detail}])


def usage(tenant: str = "t1", value: Any = 1, **props: Any) -> dict[str, Any]:
    return {"tenantId": tenant, "eventName": "calls", "properties": {"value": value, **props}}


#: (method, path — {meterId}, {tenantId}... filled with an existing id —, raw body, what the issue expects).
CORPUS: list[tuple[str, str, bytes | None, str]] = [
    # issue 26's reproducers
    ("POST", "/tenant-registrations", b'{"tenantData": {"tenantName": 1e999}}', "400"),
    ("POST", "/events", ingest(usage(value="__NAN__")), "400"),
    ("POST", "/events", ingest(usage(tenant="t\ud800")), "400"),
    ("PUT", "/meters/{meterId}", b'{"name": "\\ud800"}', "400"),
    ("POST", "/users", b'{"userName": "\\ud800", "userRole": "admin", "email": "a@example.com"}', "400"),
    ("POST", "/events", ingest(usage(value=1e308)), "2xx"),
    ("POST", "/events", ingest(usage(value=1e308)), "2xx"),  # accepted on the bus; metering refuses the sum
    ("POST", "/events", ingest(usage(region="\udc00")), "400"),
    *[(method, path, DEEP, "400") for method, path in (
        ("POST", "/meters"), ("PUT", "/meters/{meterId}"), ("POST", "/users"), ("PUT", "/users/{userId}"),
        ("POST", "/events"), ("DELETE", "/usage"), ("POST", "/dead-letters/replay"), ("POST", "/tenants"),
        ("POST", "/tenant-registrations"), ("PATCH", "/tenant-registrations/{tenantRegistrationId}"))],
    ("POST", "/events", json.dumps({"Entries": [{"Source": "x", "DetailType": "y",
                                                 "Detail": "[" * 10_000 + "]" * 10_000}]}).encode(), "2xx"),
    ("PATCH", "/tenant-registrations/{tenantRegistrationId}", b'{"tenantData": {"a": 1e999}}', "400"),
    ("POST", "/tenants", b'{"a": 1e999}', "400"),
    ("PUT", "/tenants/{tenantId}", b'{"a": -1e999}', "400"),
    ("POST", "/events", raw_json({"Entries": [{"Source": "x", "DetailType": "y", "Detail": "{}",
                                               "Time": "0848-09-01T00:00:00Z"}]}), "2xx"),
    # NaN and infinities in every free-form place
    ("POST", "/tenant-registrations", raw_json({"tenantData": {"n": "__NAN__"}}), "400"),
    ("POST", "/tenant-registrations", raw_json({"tenantData": {}, "tenantRegistrationData": {"n": "__INF__"}}),
     "400"),
    ("POST", "/events", raw_json({"Entries": [{"Source": "x", "DetailType": "y",
                                               "Detail": '{"v": Infinity}'}]}), "2xx"),  # a failed entry
    # deep nesting just past the bound, and at it
    ("POST", "/tenants", json.dumps({"a": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}).encode(), "400"),
    ("POST", "/tenants", json.dumps({"a": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))}).encode(),
     "2xx"),
    # NUL bytes and control characters: refused in names and ids, kept in free-form data
    ("POST", "/meters", json.dumps({**METER, "name": "a\x00b", "eventName": "nul"}).encode(), "400"),
    ("POST", "/meters", json.dumps({**METER, "eventName": "x\ny"}).encode(), "400"),
    ("POST", "/users", json.dumps({"userName": "bob\x00", "userRole": "r", "email": "b@example.com"}).encode(),
     "400"),
    ("POST", "/events", json.dumps([{"source": "a\x00", "detail-type": "x", "detail": {}}]).encode(), "2xx"),
    ("POST", "/events", ingest(usage(tenant="t\x00")), "2xx"),  # a failed entry: tenantId is an id
    ("POST", "/events", json.dumps({"Entries": [{"Source": "s", "DetailType": "ingestUsage",
                                                 "Detail": json.dumps(usage(tenant=t))}
                                                for t in (["a"], {"b": 1}, "ok", "c\x1b[31m")]}).encode(), "2xx"),
    ("GET", "/meters/a%00b", None, "400"),
    ("GET", "/usage/{meterId}?tenantId=t%00", None, "400"),
    ("POST", "/tenant-registrations", json.dumps({"tenantData": {"note": "line\nbreak\x00nul"}}).encode(), "2xx"),
    # oversized strings
    ("POST", "/meters", json.dumps({**METER, "name": "n" * 100_000, "eventName": "big"}).encode(), "400"),
    ("POST", "/users", json.dumps({"userName": "u" * 10_000, "userRole": "r", "email": "u@example.com"}).encode(),
     "400"),
    ("POST", "/tenant-registrations", json.dumps({"tenantData": {"blob": "x" * 200_000}}).encode(), "2xx"),
    ("POST", "/events", ingest(usage(tenant="t" * 1000)), "2xx"),  # the metering hook refuses it: dead letter
    # duplicate keys: the last one wins, as in JSON parsers generally
    ("POST", "/tenant-registrations", b'{"tenantData": {"a": 1}, "tenantData": {"a": 1e999}}', "400"),
    ("POST", "/meters", b'{"name": "x", "name": "dup", "eventName": "dup", "aggregation": "COUNT"}', "2xx"),
    # wrong types
    ("POST", "/meters", b'{"name": 5, "eventName": ["a"], "aggregation": true}', "400"),
    ("PUT", "/meters/{meterId}", b'{"status": 1}', "400"),
    ("POST", "/users", b'[]', "400"),
    ("DELETE", "/usage", b'{"identifiers": "abc", "from": 1e999}', "400"),
    ("DELETE", "/usage", b'{"identifiers": [1, null]}', "400"),
    ("POST", "/dead-letters/replay", b'{"eventId": 5}', "400"),
    ("POST", "/tenants", b'"just a string"', "400"),
    ("PATCH", "/tenant-registrations/{tenantRegistrationId}", b'{"tenantData": []}', "400"),
    ("POST", "/events", b'{"Entries": {}}', "400"),
    ("POST", "/events", b'{"Entries": [{"Source": "x", "DetailType": "y", "Detail": "{}", "Time": 1e999}]}',
     "400"),
    ("POST", "/events", b'{"Entries": [{"Source": "x", "DetailType": "y", "Detail": "{}", '
                        b'"Time": "0001-01-01T00:00:00+01:00"}]}', "2xx"),  # a failed entry: out of range
    ("POST", "/events", b'{"Entries": [{"Source": "x", "DetailType": "y", "Detail": "{}", "Time": -1e20}]}', "2xx"),
    ("GET", "/usage/{meterId}?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z&windowSize=DAY", None, "4xx"),
    ("GET", "/usage/{meterId}?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z", None, "2xx"),
    ("GET", "/events?limit=99999999999999999999999", None, "400"),
    ("POST", "/users", b'{"userName": "12345678901234567890123", "userRole": "r", "email": "9@example.com"}',
     "2xx"),
]


def seed(api: Api) -> None:
    """One of everything, so every path parameter names something that exists."""
    assert api.send("POST", "/meters", json.dumps(METER).encode()).status_code == 201
    assert api.send("POST", "/tenant-registrations", b'{"tenantData": {"tenantName": "acme"}}').status_code == 201
    body = {"userName": "alice", "userRole": "admin", "email": "alice@example.com"}
    assert api.send("POST", "/users", json.dumps(body).encode()).status_code == 201
    assert api.send("POST", "/events", ingest(usage())).status_code == 200


def fill(api: Api, path: str) -> str:
    for name, values in api.ids().items():
        if "{" + name + "}" in path and values:
            path = path.replace("{" + name + "}", values[0])
    return path


def expected(status: int, expectation: str) -> bool:
    return {"400": status == 400, "4xx": 400 <= status < 500, "2xx": 200 <= status < 300}[expectation]


def attack(api: Api) -> list[str]:
    """Send the corpus; the problems found (empty: none)."""
    problems = []
    before = api.read_all()
    for method, template, body, expectation in CORPUS:
        path = fill(api, template)
        answer = api.send(method, path, body)
        what = f"{method} {template} {(body or b'')[:60]!r}"
        if answer.status_code >= 500 or not expected(answer.status_code, expectation):
            problems.append(f"{what}: {answer.status_code} {answer.text[:200]}")
        if "message" in answer.json() and not isinstance(answer.json()["message"], str):
            problems.append(f"{what}: message is not text")
        after = api.read_all()
        if broken := broken_reads(after):
            problems.append(f"{what}: reads broken {broken}")
        if 400 <= answer.status_code < 500 and volatile(after) != volatile(before):
            changed = sorted(p for p in after if after.get(p) != before.get(p))
            problems.append(f"{what}: refused with {answer.status_code} but changed {changed[:5]}")
        before = after
    return problems


def test_the_corpus_gets_no_5xx_changes_nothing_it_refuses_and_breaks_no_read(api: Api, state_dir: Path,
                                                                             backend: tuple[str, str | None]) -> None:
    seed(api)
    assert attack(api) == []
    rows = api.client.get("/usage/" + api.ids()["meterId"][0] + "?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z")
    assert rows.status_code == 200 and all(abs(r["value"]) <= 1e308 for r in rows.json()["data"])
    time = [r["event"]["time"] for r in api.client.get("/events?limit=1000").json()["data"]
            if r["event"]["detail-type"] == "y" and r["event"]["time"].startswith("0")]
    assert time == ["0848-09-01T00:00:00Z"]

    # The stores reopened from disk (registry, dead letters, metering snapshot) still answer every read.
    before = api.read_all()
    api.harness.close()
    reopened = start(state_dir, *backend)
    try:
        again = Api(reopened)
        after = again.read_all()
        assert broken_reads(after) == {}
        for path in ("/tenants", "/tenant-registrations", "/meters", "/users", "/dead-letters"):
            assert after[path] == before[path], path
    finally:
        reopened.close()


@pytest.mark.parametrize("body", [b"[1e999]", b'{"a": NaN}', b'"\\udfff"', b"[" * 40 + b"]" * 40])
def test_the_cli_refuses_what_the_api_refuses(body: bytes, tmp_path: Path) -> None:
    from sbt_core.cli._common import parse_object
    from sbt_core.errors import BadRequestError

    with pytest.raises(BadRequestError, match="^--detail"):
        parse_object(body.decode(), "--detail")
