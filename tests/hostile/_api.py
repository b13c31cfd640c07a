"""The control plane under attack: every route of its OpenAPI document, what each read answers, and a
snapshot of the whole readable state to tell whether a refused write changed anything."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sbt_memory_metering import MemoryMetering
from starlette.testclient import TestClient

from sbt_core.testing import Harness, start_control_plane

#: A usage range wide enough for every event of the suite (the memory provider's horizon is 35 days).
USAGE_RANGE = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
#: Marks in generated JSON text replaced by tokens json.dumps cannot write.
RAW = {"__NAN__": "NaN", "__INF__": "Infinity", "__NINF__": "-Infinity", "__BIG__": "1e999", "__NBIG__": "-1e999"}


def plane_config(backend: str, database_url: str | None) -> dict[str, Any]:
    """``sbt.toml`` (as data): the embedded default (local auth, memory metering with its log, SQLite
    tenant registry and dead letters) or the same with the tenant registry on PostgreSQL."""
    # Memory metering is durable by default; /metrics behind a scope, so the test client (not on a loopback
    # address) reads it with its token like every other route.
    config: dict[str, Any] = {"providers": {"metering": {"type": "memory"}}, "server": {"metrics": "scope"}}
    if backend == "postgresql":
        assert database_url is not None
        config["tenants"] = {"database_url": database_url}
    return config


def start(state_dir: Path, backend: str, database_url: str | None) -> Harness:
    return start_control_plane(state_dir, plugins={"memory": MemoryMetering},
                               config=plane_config(backend, database_url))


def raw_json(value: Any) -> bytes:
    """``value`` as JSON text, with :data:`RAW` marks written as the tokens they stand for."""
    text = json.dumps(value)
    for mark, token in RAW.items():
        text = text.replace(f'"{mark}"', token)
    return text.encode()


class Api:
    """A client of ``harness`` that knows every route of its OpenAPI document."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.client: TestClient = harness.client()
        document = self.client.get("/openapi.json").json()
        self.operations = [(method.upper(), path, op) for path, ops in document["paths"].items()
                           for method, op in ops.items()]
        self.components: dict[str, Any] = document["components"]["schemas"]

    def writes(self) -> list[tuple[str, str, Any]]:
        """Each write route: ``(method, path template, request body schema or None)``, the token route and
        the webhook aside (they are not JSON APIs of the control plane)."""
        out = []
        for method, path, op in self.operations:
            if method == "GET" or path in ("/oauth2/token",) or path.startswith("/billing"):
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            out.append((method, path, body))
        return out

    def send(self, method: str, path: str, body: bytes | None) -> Any:
        headers = {"content-type": "application/json"} if body is not None else {}
        return self.client.request(method, path, content=body, headers=headers)

    def ids(self) -> dict[str, list[str]]:
        """Ids of what exists now, by path parameter name (a hostile one appended to each)."""
        def listed(path: str, key: str) -> list[str]:
            answer = self.client.get(path + ("&" if "?" in path else "?") + "limit=5")
            return [item[key] for item in answer.json().get("data", []) if key in item] if answer.status_code == 200 \
                else []

        return {
            "tenantId": listed("/tenants", "tenantId"),
            "tenantRegistrationId": listed("/tenant-registrations", "tenantRegistrationId"),
            "meterId": listed("/meters", "meterId"),
            "userId": listed("/users", "userName"),
            "eventId": [r["event"]["id"] for r in self.client.get("/events?limit=5").json().get("data", [])],
            "hook": ["billing_put_usage"],
        }

    def read_paths(self) -> Iterator[str]:
        """Every read route, each path parameter filled with every known id and one that names nothing."""
        ids = self.ids()
        for method, path, _ in self.operations:
            if method != "GET":
                continue
            names = re.findall(r"{(\w+)}", path)
            if path == "/tenant-config":
                continue  # it needs ?tenantId=, ?tenantName= or an Origin: its /{tenantName} form is read
            if not names:
                yield path
                continue
            for value in [*ids.get(names[0], []), "no-such-id"]:
                filled = path.replace("{" + names[0] + "}", value)
                yield filled + ("?" + USAGE_RANGE if path.startswith("/usage") else "")
                if path.startswith("/usage"):
                    yield f"{filled}?{USAGE_RANGE}&windowSize=DAY"

    def read_all(self) -> dict[str, tuple[int, Any]]:
        """Status and body of every read, after the bus settled (deliveries change what reads show)."""
        self.harness.settle()
        out = {}
        for path in self.read_paths():
            answer = self.client.get(path)
            is_json = answer.headers.get("content-type", "").startswith("application/json")
            out[path] = (answer.status_code, answer.json() if is_json else answer.text)
        return out


def broken_reads(state: dict[str, tuple[int, Any]]) -> dict[str, int]:
    """Reads that did not answer as a read of existing state should: 200, or 404 for an id that names
    nothing (``no-such-id``, or an id a listing showed that is gone by the time it is read)."""
    return {path: status for path, (status, _) in state.items()
            if status != 200 and not (status == 404 and "/" in path.strip("/"))}


def volatile(state: dict[str, tuple[int, Any]]) -> dict[str, tuple[int, Any]]:
    """``state`` without what changes by itself (the schedules' next due time, key rotation, the metrics
    every request moves)."""
    return {path: value for path, value in state.items()
            if not path.startswith(("/schedules", "/.well-known", "/metrics"))}
