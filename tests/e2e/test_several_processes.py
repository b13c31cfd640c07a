"""Three ``sbt serve`` on one NATS JetStream and one PostgreSQL (docs/several-processes.md): events put round-robin,
one process SIGKILLed and restarted midway; every acknowledged event reaches each binding, none is lost, and
the ``rate(1 minute)`` schedule runs once per slot across the three.

The providers' effect is recorded by a probe billing provider (``_probe_billing.py``) in PostgreSQL, one row
per hook call, so the test sees every process's calls. The schedule part waits for the first minute
boundary after the three processes started (``rate`` cannot be shorter than a minute), so the test takes
up to a minute longer than its events part.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from sbt_core.auth_local import mint_token
from sbt_core.config import load_config
from sbt_core.models.scopes import ALL
from sbt_core.plugins import discover
from sbt_core.testing.processes import background_server, free_port
from sbt_core.testing.waiting import wait_for

from ._serve import clean_environ

SEED = 20
EVENTS = 90  # onboarding + offboarding requests, put one at a time, round-robin
E2E = Path(__file__).parent


def _site(tmp_path: Path) -> Path:
    """A folder for PYTHONPATH declaring the probe's entry point, as an installed distribution would."""
    dist = tmp_path / "site" / "sbt_probe_billing-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sbt-probe-billing\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[sbt]\nprobe = _probe_billing:ProbeBilling\n")
    return dist.parent


def _config(tmp_path: Path, i: int, pg: str, stream: dict[str, str]) -> Path:
    """Process ``i``'s config: a state directory of its own (a state directory is one process's), the rest
    shared."""
    path = tmp_path / f"sbt-{i}.toml"
    path.write_text(f"""state_dir = "{tmp_path / f'state-{i}'}"

[providers.auth]
type = "local"

[providers.billing]
type = "probe"

[providers.metering]
type = "none"                  # only the probe's deliveries are counted

[[bindings]]
hook = "billing_put_usage"
schedule = "rate(1 minute)"

[events]
transport = "nats"
url = {{ env = "SBT_TEST_NATS_URL" }}
stream = "{stream['stream']}"
subject_prefix = "{stream['subject_prefix']}"
database_url = "{pg}"
ack_wait_seconds = 2
backoff_base_seconds = 0.05
backoff_max_seconds = 0.5
drain_timeout_seconds = 5

[tenants]
database_url = "{pg}"
""")
    return path


@contextlib.contextmanager
def _serve(config: Path, log: Path, env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "sbt_core.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port)]
    with background_server(args, ready=f"{url}/health", log_path=log, env=env, name="sbt serve",
                           stop_signal=signal.SIGINT, stop_timeout=30.0) as proc:
        yield proc, url


def _envelope(rng: random.Random, n: int) -> dict[str, Any]:
    kind = rng.choice(["onboardingRequest", "offboardingRequest"])
    return {"version": "0", "id": str(uuid.UUID(int=rng.getrandbits(128))), "detail-type": kind,
            "source": "sbt.control.plane", "time": datetime.now(UTC).isoformat(), "detail": {"tenantId": f"t{n}"}}


def test_three_processes_share_the_bus_and_the_schedule(tmp_path: Path, pg_database: str,
                                                        nats_stream: dict[str, str]) -> None:
    rng = random.Random(SEED)
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://")
    env = {**clean_environ(), "SBT_TEST_NATS_URL": nats_stream["url"], "SBT_PROBE_DSN": dsn,
           "PYTHONPATH": f"{_site(tmp_path)}:{E2E}"}
    configs = [_config(tmp_path, i, pg_database, nats_stream) for i in range(3)]
    acked: dict[str, str] = {}  # event id -> the hook its detail type is bound to
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(_serve(configs[i], tmp_path / f"serve-{i}.log", env)) for i in range(3)]
        started = datetime.now(UTC)
        # Each process signs with the key generated in its state directory (a shared key is a config of its
        # own, not what this test is about): a token per process, from that key (the probe plugin and the
        # environment the servers have are not needed for that).
        headers = [{"authorization": "Bearer " + mint_token(list(ALL), config=load_config(discover(), raw={
            "state_dir": str(tmp_path / f"state-{i}"), "providers": {"auth": {"type": "local"}}}))}
            for i in range(3)]
        for _, url in servers:
            health = httpx.get(f"{url}/health")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
        killed = restarted = False
        turn = itertools.cycle(range(3))

        def put(event: dict[str, Any]) -> bool:
            """Put ``event`` on the next process; a refused or failed put is not acknowledged, and the client
            puts it on the one after."""
            for _ in range(3):
                i = next(turn)
                try:
                    answer = httpx.post(f"{servers[i][1]}/events", json=[event], headers=headers[i], timeout=10)
                except httpx.TransportError:
                    continue
                if answer.status_code == 200 and answer.json()["FailedEntryCount"] == 0:
                    return True
            return False

        for n in range(EVENTS):
            if n == EVENTS // 3 and not killed:  # midway: one process dies without a chance to drain
                servers[1][0].send_signal(signal.SIGKILL)
                servers[1][0].wait()
                killed = True
            if n == 2 * EVENTS // 3 and not restarted:
                servers[1] = stack.enter_context(_serve(configs[1], tmp_path / "serve-1b.log", env))
                restarted = True
            event = _envelope(rng, n)
            if put(event):
                acked[event["id"]] = ("billing_create_customer" if event["detail-type"] == "onboardingRequest"
                                      else "billing_delete_customer")
            if n % 10 == 0:  # a client re-putting an acknowledged entry, with its id, to another process
                assert put(event)

        def calls() -> list[tuple[str, str, int]]:
            with psycopg.connect(dsn) as conn:
                return [tuple(row) for row in conn.execute("SELECT hook, key, pid FROM probe_calls")]

        def delivered() -> set[tuple[str, str]]:
            return {(hook, key) for hook, key, _ in calls() if hook != "billing_put_usage"}

        wanted = {(hook, event_id) for event_id, hook in acked.items()}
        wait_for(lambda: wanted <= delivered(), timeout=60, interval=0.2, what="every acknowledged event delivered")
        assert len(acked) == EVENTS
        assert delivered() == wanted, "nothing but the acknowledged events"
        # The work was shared: more than one process ran hooks.
        assert len({pid for hook, _, pid in calls() if hook != "billing_put_usage"}) > 1
        # The event log is one log: every process shows each event delivered, whoever accepted and delivered it.
        sample = rng.sample(sorted(acked), 5)
        for i, (_, url) in enumerate(servers):
            for event_id in sample:
                answer = httpx.get(f"{url}/events/{event_id}", headers=headers[i])
                assert answer.status_code == 200, answer.text
                record = answer.json()["data"]
                assert [(d["target"], d["state"]) for d in record["deliveries"]] == [(acked[event_id], "delivered")]
        # Dead letters are one store: every process shows the same (none here).
        lists = [httpx.get(f"{url}/dead-letters", headers=headers[i]).json() for i, (_, url) in enumerate(servers)]
        assert lists[0] == lists[1] == lists[2]
        # The schedule: wait for the first slot after every process was up, then one run per slot.
        first_slot = started.replace(second=0, microsecond=0).timestamp() + 60
        time.sleep(max(0.0, first_slot - time.time()))
        wait_for(lambda: any(h == "billing_put_usage" for h, _, _ in calls()), timeout=30, interval=0.2,
                 what="the first scheduled run")
        time.sleep(1.0)  # the other processes' firings of the slot have been deduplicated or not by now
    runs = [key for hook, key, _ in calls() if hook == "billing_put_usage"]
    assert runs and len(runs) == len(set(runs)), f"one run per slot across the processes: {sorted(runs)}"
