"""Nothing acknowledged is ever lost (issue 18): the real ``sbt serve`` on its embedded default (the durable
SQLite bus transport), a stream of ``POST /events`` stopped at seeded random points by SIGKILL (or, at
some, SIGTERM), restarted on the same state directory each time.

What the bus must keep is checked through what outlives every process on its own: the dead-letter store.
The stream's ``ingestUsage`` events name an event no meter counts, so memory metering refuses each for
good and the bus dead-letters it, once it is delivered. After the last restart, every event a 200 answered
for must be a dead letter (delivered, whether before the kill or after the restart), and no entry the
answer refused may be one. The envelopes carry their own ids, so a refused or unanswered entry is known too.

Each kill point is drawn from one seeded generator: ``SBT_CRASH_SEED=<int>`` reproduces a run (the seed
is printed, and named in every failure); the default seed is fixed so that CI runs the same kill points.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sbt_core.auth_local import mint_token
from sbt_core.config import load_config
from sbt_core.plugins import discover
from sbt_core.testing.processes import background_server, free_port
from sbt_core.testing.waiting import wait_for

from ._serve import clean_environ

SEED = int(os.environ.get("SBT_CRASH_SEED") or 18)
BATCH = 20  # events per POST /events
KILLS, STOPS = 16, 4  # SIGKILL and SIGTERM points, in a seeded order: 20 kill points


class Stream:
    """One client putting batches of envelopes with its own ids in a loop until the server goes away:
    which ids a 200 acknowledged, which entries it refused, and which requests got no answer."""

    def __init__(self, url: str, token: str, rng: random.Random, cycle: int) -> None:
        self.url, self.token, self.rng, self.cycle = url, token, rng, cycle
        self.acked: set[str] = set()
        self.refused: set[str] = set()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _batch(self, n: int) -> list[dict[str, object]]:
        entries: list[dict[str, object]] = []
        for i in range(BATCH):
            event_id = f"c{self.cycle}-b{n}-e{i}"
            # About one entry in ten is malformed (a detail that is not an object): refused, never stored.
            detail: object = "not an object" if self.rng.random() < 0.1 else {
                "tenantId": "t1", "eventName": "unmetered", "identifier": event_id, "properties": {"value": 1}}
            entries.append({"id": event_id, "detail-type": "ingestUsage", "source": "sbt.application.plane",
                            "detail": detail})
        return entries

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {self.token}"}, timeout=10) as client:
            n = 0
            while True:
                entries = self._batch(n)
                n += 1
                try:
                    answer = client.post("/events", json=entries)
                except httpx.HTTPError:
                    return  # killed mid-request: neither acknowledged nor refused
                if answer.status_code != 200:
                    return  # stopping: 503 while draining
                for entry, result in zip(entries, answer.json()["Entries"], strict=True):
                    if "EventId" in result:
                        assert result["EventId"] == entry["id"]
                        self.acked.add(str(entry["id"]))
                    else:
                        self.refused.add(str(entry["id"]))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A config on a state directory of its own, and a token the server will accept (minted from the same
    local signing key)."""
    config = tmp_path / "sbt.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n\n[providers.auth]\ntype = "local"\n\n'
                      '[providers.metering]\ntype = "memory"\n')
    token = mint_token(["event/event_write", "event/event_read"], config=load_config(discover(), config))
    yield config, token


def serve(config: Path) -> tuple[list[str], str]:
    """``sbt serve`` on a free port: its arguments and base URL."""
    port = free_port()
    return ([sys.executable, "-m", "sbt_core.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
             "--port", str(port)], f"http://127.0.0.1:{port}")


def dead_letter_ids(url: str, token: str) -> set[str]:
    answer = httpx.get(f"{url}/dead-letters", headers={"authorization": f"Bearer {token}"}, timeout=10)
    answer.raise_for_status()
    return {letter["event"]["id"] for letter in answer.json()["data"]}


def test_every_acknowledged_event_is_delivered_across_kills(server: tuple[Path, str], tmp_path: Path) -> None:
    config, token = server
    rng = random.Random(SEED)
    print(f"crash suite seed: SBT_CRASH_SEED={SEED}")
    signals = [signal.SIGKILL] * KILLS + [signal.SIGTERM] * STOPS
    rng.shuffle(signals)
    acked: set[str] = set()
    refused: set[str] = set()
    for cycle, sig in enumerate(signals):
        args, url = serve(config)
        with background_server(args, ready=f"{url}/health", log_path=tmp_path / f"serve-{cycle}.log",
                               env=clean_environ(), name="sbt serve") as proc:
            stream = Stream(url, token, rng, cycle)
            stream.thread.start()
            # The kill point: a seeded instant into the stream (each request takes a few milliseconds).
            stream.thread.join(rng.uniform(0.05, 0.4))
            proc.send_signal(sig)
            proc.wait(30)
            stream.thread.join(15)
        acked |= stream.acked
        refused |= stream.refused
    where = f"(SBT_CRASH_SEED={SEED}, {len(acked)} acknowledged over {len(signals)} kills)"
    assert acked and refused, f"the stream was killed before any answer {where}"

    args, url = serve(config)
    with background_server(args, ready=f"{url}/health", log_path=tmp_path / "serve-last.log", env=clean_environ(),
                           name="sbt serve"):
        delivered = wait_for(lambda: (ids := dead_letter_ids(url, token)) >= acked and ids,
                             f"every acknowledged event to be delivered {where}", timeout=60)
        assert not delivered & refused, f"refused entries were stored {where}: {sorted(delivered & refused)[:5]}"
