"""The durable embedded transport: the bus's per-target queues journaled in SQLite (``[events] transport =
"sqlite"``, what ``sbt serve`` uses), so an accepted event outlives ``kill -9`` as it outlives a PutEvents 200.

Every message is a row of table ``sbt_bus_messages`` in ``<state_dir>/bus.sqlite3`` (WAL mode, ``synchronous
= FULL``: a commit is on disk when it returns) from :meth:`SqliteTransport.send` until the bus acks it, which
it does once the target's hook returned or the message was dead-lettered. The queues themselves are the
in-process transport's (:class:`InProcessTransport`): a message is handed to its worker from memory, with
no read or decode, only after its row is committed, so the file is written and fsynced but only read when
the transport opens. On opening, every row left by the previous process (a crash, or a stop that did not
drain) is queued again in its order, a delayed retry with the rest of its delay (its due time is kept as
wall-clock seconds) and its attempt number: the bus logs them and delivers them again (at-least-once; see
:meth:`SqliteTransport.backlog`).

**Group commit.** :meth:`send` waits for its rows' commit. The first sender to find no commit running
becomes the leader: it writes every row queued so far (its own and other senders') in one transaction
and one fsync, then wakes the senders whose rows it wrote; whoever queued meanwhile is written by the
next leader. One request waits for one fsync; fifty concurrent ones share a few. Acks are not waited for:
they are deleted by the next commit (a worker commits them itself before it blocks for more messages), so
a crash may leave an acked row that is delivered once more after the restart — at-least-once, which the
bus's dedup and the providers' idempotency by event id absorb.

**Why sqlite3 rather than the SQLAlchemy engine of** ``sbt_core._sql``: the transport owns its file
alone (``locking_mode = EXCLUSIVE``: a second ``sbt serve`` on the same state directory fails to start
instead of delivering the same rows twice; several processes use a broker transport instead), its one hot
statement is an ``executemany`` per group commit, where a pool checkout and Core's statement handling
cost as much as the insert, and there is no PostgreSQL variant to share code with.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ...errors import StartupError, UnavailableError
from ...models import Event, to_json
from .transport import InProcessTransport, Message, Transport

__all__ = ["SQLITE_FILE", "SqliteTransport", "decode_events", "encode_events"]

#: The transport's file under the state directory.
SQLITE_FILE = "bus.sqlite3"

_SCHEMA = """CREATE TABLE IF NOT EXISTS sbt_bus_messages (
    seq INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    due REAL NOT NULL,  -- wall-clock epoch seconds it may be delivered from; 0: at once
    events BLOB NOT NULL  -- JSON: [[detail-type, source, detail, id, time, version, account, region, resources]...]
)"""
_INSERT = "INSERT INTO sbt_bus_messages (seq, target, attempt, batch, due, events) VALUES (?, ?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM sbt_bus_messages WHERE seq = ?"


def encode_events(events: tuple[Event, ...]) -> bytes:
    """The events of a message as one JSON array of field arrays: a twentieth of the cost of their
    EventBridge envelopes (``to_json``), which matters on the publish path (the NATS transport's body
    too). A detail value JSON does not know is unstructured as everywhere else (``to_json``)."""
    return orjson.dumps([[e.detail_type, e.source, e.detail, e.id, e.time, e.version, e.account, e.region,
                          e.resources] for e in events], default=to_json)


def decode_events(data: bytes) -> tuple[Event, ...]:
    """Inverse of :func:`encode_events`.

    :raises ValueError, TypeError, KeyError, IndexError: ``data`` is not such an array (or an event in it is
        one :class:`Event` refuses).
    """
    rows = orjson.loads(data)
    # The entries of one request mostly share a time (the time it was received): each is parsed once.
    parsed = {text: datetime.fromisoformat(text) for text in {r[4] for r in rows}}
    return tuple(Event(detail_type=r[0], source=r[1], detail=r[2], id=r[3], time=parsed[r[4]],
                       version=r[5], account=r[6], region=r[7], resources=r[8]) for r in rows)


class _Group:
    """Rows one :meth:`SqliteTransport.send` queued for the next commit, and that commit's outcome."""

    __slots__ = ("rows", "messages", "delay", "done", "error")

    def __init__(self, rows: list[tuple[Any, ...]], messages: list[Message], delay: float) -> None:
        self.rows, self.messages, self.delay = rows, messages, delay
        self.done = False
        self.error: BaseException | None = None


class SqliteTransport(Transport):
    """Per-target queues journaled in the SQLite file at ``path`` (created with its directory if missing).

    :param clock: monotonic seconds for the in-memory delays (see :class:`InProcessTransport`).
    :raises StartupError: the file cannot be opened, is not a queue file, or another process holds it.
    """

    durable = True

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._memory = InProcessTransport(clock)
        self._lock = threading.Lock()
        self._committed = threading.Condition(self._lock)  # notified when a leader finishes a commit
        self._queued: list[_Group] = []  # sends waiting for the next commit (under the lock)
        self._acked: list[tuple[int]] = []  # seqs of acked rows not yet deleted (under the lock)
        self._leading = False  # a commit is running (under the lock)
        self._rows: dict[int, tuple[Message, int]] = {}  # id(message) -> (message, seq) until acked
        self._recovered: dict[str, list[Message]] = {}  # queued again by open(), until backlog() reads them
        self._closed = False
        self._writable = False  # the file is open (under the lock)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0.5)
            for pragma in ("locking_mode = EXCLUSIVE", "journal_mode = WAL", "synchronous = FULL"):
                self._db.execute(f"PRAGMA {pragma}")
            self._db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now, kept until close
            self._db.execute(_SCHEMA)
            self._db.execute("COMMIT")
            self._writable = True
            stored = self._db.execute("SELECT seq, target, attempt, batch, due, events FROM sbt_bus_messages "
                                      "ORDER BY seq").fetchall()
        except sqlite3.Error as exc:
            locked = "locked" in str(exc)
            raise StartupError(f"cannot open the bus queues in {self.path}: "
                               + ("another process (a second sbt serve on this state directory?) holds the file"
                                  if locked else str(exc))) from exc
        self._seq = itertools.count(stored[-1][0] + 1 if stored else 1)
        # Left by an earlier process: queued again on open(target); those of a target never opened are
        # stranded (take_stranded).
        self._stored: dict[str, list[tuple[Message, int, float]]] = {}
        try:
            for seq, target, attempt, batch, due, events in stored:
                message = Message(target, decode_events(events), attempt, batch)
                self._stored.setdefault(target, []).append((message, seq, due))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            self.close()
            raise StartupError(f"the bus queue file {self.path} holds a message that cannot be read ({exc}); "
                               "move the file away to start with empty queues") from exc

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> SqliteTransport:
        """The embedded transport: ``bus.sqlite3`` under ``state_dir``."""
        return cls(Path(state_dir) / SQLITE_FILE)

    # --- the Transport contract ----------------------------------------------------------------------------

    def open(self, target: str, *, exclusive: bool = False) -> None:
        self._memory.open(target)
        now = time.time()
        for message, seq, due in self._stored.pop(target, ()):
            self._rows[id(message)] = (message, seq)
            self._recovered.setdefault(target, []).append(message)
            self._memory.send([message], delay=max(0.0, due - now) if due else 0.0)

    def backlog(self, target: str) -> list[Message]:
        return self._recovered.pop(target, [])

    def take_stranded(self, targets: Collection[str]) -> list[Message]:
        stranded = []
        for target in [t for t in self._stored if t not in targets]:
            for message, seq, _ in self._stored.pop(target):
                self._rows[id(message)] = (message, seq)
                stranded.append(message)
        return stranded

    def send(self, messages: Iterable[Message], *, delay: float = 0.0, dedup: bool = True) -> None:
        if self._closed:
            raise RuntimeError("the transport is closed")
        messages = list(messages)
        if not messages:
            return
        due = time.time() + delay if delay > 0 else 0.0
        # Encoded here, in the sender's thread, so the leader's commit holds only the writes.
        rows = [(0, m.target, m.attempt, m.batch, due, encode_events(m.events)) for m in messages]  # seq: by the leader
        group = _Group(rows, messages, delay)
        with self._lock:
            if not self._writable:
                raise RuntimeError("the transport is closed")
            self._queued.append(group)
            while not group.done:
                if not self._leading:
                    self._lead()
                else:
                    self._committed.wait()
        if isinstance(group.error, RuntimeError):
            raise group.error
        if group.error is not None:
            raise UnavailableError(f"the bus could not store the events in {self.path}: {group.error}") \
                from group.error

    def receive(self, target: str) -> Message | None:
        self._flush_acks(target)
        return self._memory.receive(target)

    def receive_many(self, target: str, limit: int) -> list[Message]:
        self._flush_acks(target)
        return self._memory.receive_many(target, limit)

    def ack(self, message: Message) -> None:
        found = self._rows.pop(id(message), None)
        if found is not None:
            with self._lock:
                self._acked.append((found[1],))

    def close(self) -> None:
        """Wake the receivers, delete what was acked, and close the file; the rows not acked stay for the
        next process. An ack after this is not written: its message is delivered again after a restart."""
        if self._closed:
            return
        self._closed = True
        self._memory.close()
        self._flush_acks()
        with self._lock:
            while self._leading:
                self._committed.wait()
            self._writable = False
            self._db.close()

    # take_pending: the default (none): what is still queued stays in the file for the next start.

    # --- group commit ----------------------------------------------------------------------------------------

    def _flush_acks(self, target: str | None = None) -> None:
        """Delete the acked rows now, unless the worker of ``target`` has more messages ready: under load,
        acks wait for the next send's commit and cost no commit of their own; a worker about to wait for
        work commits them first, so an idle bus leaves no acked row behind."""
        if target is not None and self._memory.ready(target):
            return
        with self._lock:
            if self._acked and not self._leading and self._writable:
                self._lead()

    def _lead(self) -> None:
        """(Lock held, no commit running.) Commit every queued send and ack in one transaction, releasing
        the lock while writing; then queue the sent messages for their workers and wake their senders."""
        groups, self._queued = self._queued, []
        acked, self._acked = self._acked, []
        rows = [(next(self._seq), *row[1:]) for group in groups for row in group.rows]
        self._leading = True
        self._lock.release()
        error: BaseException | None = None
        try:
            try:
                if not self._writable:  # closed while these waited for the last commit
                    raise RuntimeError("the transport is closed")
                self._db.execute("BEGIN IMMEDIATE")
                if rows:
                    self._db.executemany(_INSERT, rows)
                if acked:
                    self._db.executemany(_DELETE, acked)
                self._db.execute("COMMIT")
            except BaseException as exc:  # disk full, I/O error: the senders are told, the acks kept
                error = exc
                if self._writable and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            if error is None:
                # In commit order, so each target's queue keeps the order of its rows.
                it = iter(row[0] for row in rows)
                for group in groups:
                    for message in group.messages:
                        self._rows[id(message)] = (message, next(it))
                    self._memory.send(group.messages, delay=group.delay)
        finally:
            self._lock.acquire()
            self._leading = False
            if error is not None:
                self._acked[:0] = acked
            for group in groups:
                group.done, group.error = True, error
            self._committed.notify_all()
