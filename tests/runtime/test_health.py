"""``GET /health`` says whether the process can reach its broker and databases (a load balancer's probe)."""

from __future__ import annotations

import uuid
from pathlib import Path

import attrs
import httpx
import psycopg
import pytest
from psycopg import sql

from sbt_core.runtime.bus import SqlDeadLetters
from sbt_core.runtime.bus.nats_transport import NatsTransport
from sbt_core.runtime.http import build_app
from sbt_core.testing.postgres import ADMIN_DSN, postgres_available
from tests.runtime.test_http import FakeControlPlane, make_control_plane

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@attrs.define
class PlaneWithChecks(FakeControlPlane):
    def health_problems(self) -> list[str]:  # as ControlPlane.health_problems, without components
        return self.bus.health_problems()


async def test_health_is_503_with_the_problem_once_the_dead_letter_database_is_gone(tmp_path: Path) -> None:
    if not postgres_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"sbt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    fake = make_control_plane(tmp_path)
    plane = PlaneWithChecks(fake.providers, fake.bindings, fake.bus, fake.config, fake.auth_settings)
    plane.bus.dead_letter_store = SqlDeadLetters(f"postgresql+psycopg://postgres:pw@127.0.0.1:5432/{name}")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(plane)),
                                     base_url="http://sbt.test") as client:
            ok = await client.get("/health")
            assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            down = await client.get("/health")
        assert down.status_code == 503
        body = down.json()
        assert body["status"] == "unavailable"
        [problem] = body["problems"]
        assert problem.startswith("dead-letter store: postgresql+psycopg://postgres:***@127.0.0.1:5432/")
        assert "pw" not in body["message"]
    finally:
        plane.bus.stop(2)
        plane.providers.shutdown()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_nats_transport_reports_its_broker(nats_stream: dict[str, str]) -> None:
    transport = NatsTransport(**nats_stream)
    assert transport.check() is None
    transport.close()
    assert transport.check() == "the transport is closed"
