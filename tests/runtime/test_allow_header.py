"""A 405 names in ``Allow`` every method the path serves (RFC 9110 section 15.5.6), not only the first
route's: each operation is a route of its own."""

from __future__ import annotations

from pathlib import Path

from sbt_core.testing import start_control_plane
from sbt_core.testing.providers import RecordingMetering


def test_a_wrong_method_answers_405_with_every_method_of_the_path(tmp_path: Path) -> None:
    harness = start_control_plane(tmp_path, plugins={"rec": RecordingMetering},
                                  config={"providers": {"metering": {"type": "rec"}}})
    try:
        with harness.client() as client:
            for method, path, allowed in (("OPTIONS", "/events", "GET, HEAD, POST"),
                                          ("PATCH", "/meters", "GET, HEAD, POST"),
                                          ("OPTIONS", "/tenants/t-1", "DELETE, GET, HEAD, PUT")):
                answer = client.request(method, path)
                assert answer.status_code == 405
                assert answer.headers["allow"] == allowed
                assert answer.json() == {"message": "Method Not Allowed"}
    finally:
        harness.close()
