"""The event log shared by several processes (``[events] database_url``): what ``sbt events list/get`` and
``GET /events`` read on every process, when the bus runs on a broker that hands an event accepted by one
process to another for delivery (``docs/several-processes.md``).

Two tables in the dead letters' database: ``sbt_event_log`` (each accepted event once, newest ``log_size``
kept) and ``sbt_event_deliveries`` (one row per event and target: state, attempts, last error, when, result).
Each process writes what it accepted and what it delivered; a delivery row only moves forward in time
(a row is replaced only by a newer one), so the process that accepted an event and the one that delivered
it may write in either order.

Acceptances are queued and written by a background thread every ``_INTERVAL`` seconds (one transaction
each time), so the log never slows ``POST /events`` down; a read first writes what this process queued, so
a process sees its own writes at once and another process's within that interval. Delivery outcomes are
written before the message is acked (the bus flushes the log in ``_settle``, a write per message): once
acked nothing delivers it again, so its record must survive a crash right after. The process delivering
an event also logs the event itself if missing (its delivery time as "received"), since the accepting
process may have died before writing it. A write that fails is logged and retried with the next one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from ..._sql import create_engine, read_only
from ...models import Event, from_json, to_json
from ..contracts import Delivery, EventRecord
from .transport import Message

__all__ = ["SqlEventLog"]

log = logging.getLogger("sbt.bus")

_INTERVAL = 0.1
_SCHEMA_LOCK = 0x5B7_E106

_metadata = sa.MetaData()
_events = sa.Table(
    "sbt_event_log", _metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column("event", sa.JSON, nullable=False),
    sa.Column("received", sa.Float, nullable=False),  # epoch seconds
)
_deliveries = sa.Table(
    "sbt_event_deliveries", _metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("target", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("updated", sa.Float, nullable=False),  # epoch seconds
    sa.Column("result", sa.JSON, nullable=True),
)


class SqlEventLog:
    """The shared event log in the database at ``url``, keeping the newest ``log_size`` events."""

    def __init__(self, url: URL | str, log_size: int) -> None:
        self.url = sa.make_url(url) if isinstance(url, str) else url
        self.engine = create_engine(self.url)
        self.log_size = log_size
        self._dialect: Any = postgresql if self.url.get_backend_name() == "postgresql" else sqlite
        with self.engine.begin() as conn:
            if self.url.get_backend_name() == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            _metadata.create_all(conn, checkfirst=True)
        self._queue: deque[tuple[str, Any]] = deque()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._writes = 0
        self._thread = threading.Thread(target=self._run, name="sbt-event-log", daemon=True)
        self._thread.start()

    # --- recording (any thread; never blocks) ---------------------------------------------------------------

    def accepted(self, events: Sequence[Event], messages: Sequence[Message], received: datetime) -> None:
        """``events`` were accepted at ``received``; each message's are pending for its target."""
        self._queue.append(("accepted", (tuple(events), tuple(messages), received.timestamp())))

    def outcome(self, event_id: str, target: str, state: str, attempts: int, error: str | None,
                result: Any = None, when: float | None = None) -> None:
        """The delivery of ``event_id`` to ``target`` is now ``state`` (the arguments of ``EventLog.set_state``)."""
        self._queue.append(("outcome", (event_id, target, state, attempts, error, result, when)))

    def delivered(self, target: str, events: Sequence[Event], when: float) -> None:
        """First attempts of ``events`` to ``target`` delivered at ``when``."""
        self._queue.append(("delivered", (target, tuple(events), when)))

    # --- reading ------------------------------------------------------------------------------------------

    def get(self, event_id: str) -> EventRecord | None:
        self.flush()
        with read_only(self.engine) as conn:
            row = conn.execute(sa.select(_events.c.event, _events.c.received)
                               .where(_events.c.event_id == event_id)).first()
            if row is None:
                return None
            return self._records(conn, [(event_id, row.event, row.received)])[0]

    def recent(self, limit: int = 50) -> list[EventRecord]:
        self.flush()
        with read_only(self.engine) as conn:
            rows = conn.execute(sa.select(_events.c.event_id, _events.c.event, _events.c.received)
                                .order_by(_events.c.seq.desc()).limit(limit)).all()
            return self._records(conn, [(r.event_id, r.event, r.received) for r in rows])

    def _records(self, conn: sa.Connection, rows: list[tuple[str, Any, float]]) -> list[EventRecord]:
        ids = [event_id for event_id, _, _ in rows]
        found: dict[str, list[Delivery]] = {event_id: [] for event_id in ids}
        if ids:
            for d in conn.execute(sa.select(_deliveries).where(_deliveries.c.event_id.in_(ids))
                                  .order_by(_deliveries.c.target)):
                found[d.event_id].append(Delivery(d.target, d.state, d.attempts, d.last_error,
                                                  datetime.fromtimestamp(d.updated, UTC) if d.updated else None,
                                                  d.result))
        return [EventRecord(from_json(Event, event), datetime.fromtimestamp(received, UTC), tuple(found[event_id]))
                for event_id, event, received in rows]

    # --- writing ------------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything queued so far (one transaction); a failure is logged and retried next time."""
        with self._write_lock:
            items = []
            while self._queue:
                items.append(self._queue.popleft())
            if not items:
                return
            try:
                self._write(items)
            except (SQLAlchemyError, OSError, TypeError, ValueError) as exc:
                self._queue.extendleft(reversed(items))
                log.error("the shared event log could not be written to %s (retried): %s",
                          self.url.render_as_string(hide_password=True), exc)

    def _write(self, items: list[tuple[str, Any]]) -> None:
        events: dict[str, dict[str, Any]] = {}
        pending: dict[tuple[str, str], dict[str, Any]] = {}
        changes: dict[tuple[str, str], dict[str, Any]] = {}
        for kind, args in items:
            if kind == "accepted":
                accepted, messages, received = args
                for event in accepted:
                    events.setdefault(event.id, {"event_id": event.id, "event": to_json(event), "received": received})
                for message in messages:
                    for event in message.events:
                        pending[(event.id, message.target)] = {
                            "event_id": event.id, "target": message.target, "state": "pending", "attempts": 0,
                            "last_error": None, "updated": received, "result": None}
            elif kind == "outcome":
                event_id, target, state, attempts, error, result, when = args
                changes[(event_id, target)] = {"event_id": event_id, "target": target, "state": state,
                                               "attempts": attempts, "last_error": error,
                                               "updated": when or datetime.now(UTC).timestamp(), "result": result}
            else:
                target, delivered, when = args
                for event in delivered:
                    # Logged by the delivering process too: the accepting one may have died before writing.
                    events.setdefault(event.id, {"event_id": event.id, "event": to_json(event), "received": when})
                    changes[(event.id, target)] = {"event_id": event.id, "target": target, "state": "delivered",
                                                   "attempts": 1, "last_error": None, "updated": when,
                                                   "result": None}
        insert = self._dialect.insert
        with self.engine.begin() as conn:
            if events:
                conn.execute(insert(_events).on_conflict_do_nothing(index_elements=["event_id"]),
                             list(events.values()))
            if pending:
                conn.execute(insert(_deliveries).on_conflict_do_nothing(index_elements=["event_id", "target"]),
                             list(pending.values()))
            if changes:
                stmt = insert(_deliveries)
                # A row only moves forward in time: the accepting and the delivering process write in any order.
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["event_id", "target"],
                    set_={**{c: stmt.excluded[c] for c in ("state", "attempts", "updated", "result")},
                          # a delivered row keeps the error of the attempt before, as the in-memory log does
                          "last_error": sa.func.coalesce(stmt.excluded.last_error, _deliveries.c.last_error)},
                    where=_deliveries.c.updated <= stmt.excluded.updated), list(changes.values()))
            self._writes += 1
            if events and self._writes % 50 == 0:
                self._trim(conn)

    def _trim(self, conn: sa.Connection) -> None:
        """Forget all but the newest ``log_size`` events (and their deliveries)."""
        cutoff = conn.execute(sa.select(_events.c.seq).order_by(_events.c.seq.desc())
                              .offset(self.log_size).limit(1)).scalar()
        if cutoff is not None:
            old = sa.select(_events.c.event_id).where(_events.c.seq <= cutoff)
            conn.execute(sa.delete(_deliveries).where(_deliveries.c.event_id.in_(old)))
            conn.execute(sa.delete(_events).where(_events.c.seq <= cutoff))

    def _run(self) -> None:
        while not self._stop.wait(_INTERVAL):
            self.flush()

    def close(self) -> None:
        """Write what is queued, stop the writer and release the connections."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.flush()
        self.engine.dispose()
