"""The OpenAPI document states the bounds the server enforces: each ``limit``'s range, the usage range's
required RFC 3339 ends, the window sizes; a value just outside a stated bound is refused with a 400, one
on it accepted."""

from __future__ import annotations

from pathlib import Path

from sbt_core.testing import start_control_plane
from sbt_core.testing.providers import RecordingMetering


def test_every_stated_limit_range_is_the_one_enforced(tmp_path: Path) -> None:
    harness = start_control_plane(tmp_path, plugins={"rec": RecordingMetering},
                                  config={"providers": {"metering": {"type": "rec"}}})
    try:
        with harness.client() as client:
            document = client.get("/openapi.json").json()
            checked = []
            for path, item in document["paths"].items():
                if "{" in path or "get" not in item:
                    continue
                for param in item["get"].get("parameters", []):
                    if param["name"] != "limit":
                        continue
                    low, high = param["schema"]["minimum"], param["schema"]["maximum"]
                    assert low == 1
                    assert client.get(path, params={"limit": high}).status_code == 200, path
                    for outside in (low - 1, high + 1):
                        assert client.get(path, params={"limit": outside}).status_code == 400, (path, outside)
                    checked.append(path)
            assert {"/meters", "/users", "/tenants", "/tenant-registrations", "/events"} <= set(checked)
            usage = {p["name"]: p for p in document["paths"]["/usage/{meterId}"]["get"]["parameters"]}
            assert usage["from"]["required"] and usage["from"]["schema"]["format"] == "date-time"
            assert usage["windowSize"]["schema"]["enum"] == ["MINUTE", "HOUR", "DAY", "MONTH"]
    finally:
        harness.close()


def test_request_bodies_and_parameters_state_what_is_refused(tmp_path: Path) -> None:
    harness = start_control_plane(tmp_path, plugins={"rec": RecordingMetering},
                                  config={"providers": {"metering": {"type": "rec"}}})
    try:
        with harness.client() as client:
            document = client.get("/openapi.json").json()
            schemas, paths = document["components"]["schemas"], document["paths"]
            # Closed bodies: the converter refuses unknown fields, and the document says so.
            bodies = {op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                      for item in paths.values() for op in item.values()
                      if "$ref" in op.get("requestBody", {}).get("content", {}).get("application/json", {})
                      .get("schema", {})}
            assert {"CreateUserRequest", "UpdateUserRequest", "MeterCreate"} <= bodies
            for name in bodies:
                assert schemas[name]["additionalProperties"] is False, name
            assert client.post("/meters", json={"name": "m", "eventName": "e", "extra": 1}).status_code == 400
            # No body replays everything; a body is an object (null is not).
            replay = paths["/dead-letters/replay"]["post"]["requestBody"]
            assert replay["required"] is False
            assert client.post("/dead-letters/replay").status_code == 200
            assert client.post("/dead-letters/replay", content=b"null").status_code == 400
            # A lookup's length bound, on the path as on the query.
            by_name = paths["/tenant-config/{tenantName}"]["get"]["parameters"][0]["schema"]
            assert by_name["maxLength"] == 256
            assert client.get("/tenant-config/" + "x" * 257).status_code == 400
            assert client.get("/tenant-config/" + "x" * 256).status_code == 404
            # The time zones a usage query may name are listed.
            usage = {p["name"]: p for p in paths["/usage/{meterId}"]["get"]["parameters"]}
            assert {"UTC", "Europe/Paris"} <= set(usage["windowTimeZone"]["schema"]["enum"])
    finally:
        harness.close()
