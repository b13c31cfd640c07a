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
