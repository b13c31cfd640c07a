"""The dead-letter store: every (event, target) the bus gave up on, kept until replayed (docs/design.md section 3),
as an EventBridge target's dead-letter queue (an SQS queue in sbt-aws) keeps what the target failed.

Two stores keep one contract (:class:`DeadLetterStore`):

- :class:`MemoryDeadLetters`, in this process's memory: a bare :class:`~sbt_core.runtime.bus.Bus`'s
  default, lost when the process ends;
- :class:`SqlDeadLetters`, one table (``sbt_dead_letters``) in an SQL database: what ``sbt serve`` uses,
  in ``<state_dir>/events.sqlite3`` (``[events] dead_letters = "sqlite"``, the default). Dead letters then
  outlive a restart, and a restart is how a failing provider is usually fixed (a new API key, a corrected
  config): ``sbt events dlq replay`` still finds what failed before it. With ``[events] database_url``
  (PostgreSQL) every ``sbt serve`` of the control plane shares one table.

The bus's worker threads add letters while request handlers list and replay them, so every store is
thread-safe on its own. :meth:`DeadLetterStore.claim` removes letters and says which this call removed,
so two replays of the same letter (two requests, or two processes on one database) deliver it once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from ..._sql import create_engine, read_only, unreachable
from ...models import Event, from_json, to_json

__all__ = ["SQLITE_FILE", "DeadLetter", "DeadLetterStore", "MemoryDeadLetters", "SqlDeadLetters"]

log = logging.getLogger("sbt.bus")

#: The file of ``[events] dead_letters = "sqlite"`` under the state directory.
SQLITE_FILE = "events.sqlite3"


@attrs.frozen
class DeadLetter:
    """An event that target ``target`` failed to handle: ``attempts`` made, the ``last_error`` message,
    and when it was dead-lettered (``sbt events dlq list``, ``GET /dead-letters``)."""

    event: Event
    target: str
    attempts: int
    last_error: str
    dead_lettered: datetime

    @property
    def key(self) -> tuple[str, str]:
        """``(event id, target)``: a store keeps one letter per key."""
        return self.event.id, self.target


class DeadLetterStore(Protocol):
    """Where the bus keeps dead letters. Every method may be called from any thread."""

    def add(self, letters: Iterable[DeadLetter]) -> None:
        """Keep ``letters`` (together: one write), each in place of the one with the same
        :attr:`~DeadLetter.key`, which becomes the newest. Never raises: a letter that cannot be written
        where it belongs is kept some other way and logged."""

    def select(self, event_id: str | None = None, target: str | None = None) -> list[DeadLetter]:
        """The letters, oldest first: all, or only those of event ``event_id`` and/or target ``target``.
        A database store raises its driver's error (SQLAlchemyError) when the database cannot be read."""

    def claim(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Remove the letters of ``keys`` (``(event id, target)`` pairs; together: one write) and return the
        keys this call removed; a key whose letter is not there (never added, or claimed already) is left out.
        A database store raises its driver's error (SQLAlchemyError) when the database cannot be written."""

    def close(self) -> None:
        """Release files and connections (called when the bus stops)."""


def _matching(letters: Iterable[DeadLetter], event_id: str | None, target: str | None) -> list[DeadLetter]:
    return [d for d in letters
            if (event_id is None or d.event.id == event_id) and (target is None or d.target == target)]


class MemoryDeadLetters:
    """Dead letters in this process's memory, in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._letters: dict[tuple[str, str], DeadLetter] = {}

    def add(self, letters: Iterable[DeadLetter]) -> None:
        with self._lock:
            for letter in letters:
                self._letters.pop(letter.key, None)  # a re-added key goes last, as it does in SqlDeadLetters
                self._letters[letter.key] = letter

    def select(self, event_id: str | None = None, target: str | None = None) -> list[DeadLetter]:
        with self._lock:
            return _matching(self._letters.values(), event_id, target)

    def claim(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        with self._lock:
            return {key for key in keys if self._letters.pop(key, None) is not None}

    def close(self) -> None:
        pass


#: PostgreSQL advisory-lock key serialising the table's creation (as the tenant store does its own).
_SCHEMA_LOCK = 0x5B7_DEAD

_metadata = sa.MetaData()
_table = sa.Table(
    "sbt_dead_letters", _metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),  # the order letters were added in
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("letter", sa.JSON, nullable=False),  # the DeadLetter as GET /dead-letters shows it
    sa.UniqueConstraint("event_id", "target", name="sbt_dead_letters_key"),
)


class SqlDeadLetters:
    """Dead letters in table ``sbt_dead_letters`` of the database at ``url`` (created if missing), shared by
    every process that opens it.

    A letter the database refuses (disk full, file locked beyond the 30 s busy timeout) is logged as an
    error and kept in memory meanwhile: :meth:`select` shows it, and each later call tries to write it
    again. Dead letters are the bus's record of work it could not do, so none is dropped for a failed write.
    """

    def __init__(self, url: URL | str) -> None:
        self.url = sa.make_url(url) if isinstance(url, str) else url
        self.engine = create_engine(self.url)
        with self.engine.begin() as conn:
            if self.url.get_backend_name() == "postgresql":
                # Processes starting together on one database would each see no table and each CREATE it.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            _metadata.create_all(conn, checkfirst=True)
        self._lock = threading.Lock()  # held while _unsaved changes and while writing
        self._unsaved: dict[tuple[str, str], DeadLetter] = {}  # letters whose write failed, oldest first

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> SqlDeadLetters:
        """The embedded store: SQLite file ``events.sqlite3`` under ``state_dir``."""
        return cls(URL.create("sqlite", database=str(Path(state_dir) / SQLITE_FILE)))

    def add(self, letters: Iterable[DeadLetter]) -> None:
        with self._lock:
            for letter in letters:
                self._unsaved.pop(letter.key, None)
                self._unsaved[letter.key] = letter
            self._flush()

    def select(self, event_id: str | None = None, target: str | None = None) -> list[DeadLetter]:
        with self._lock:
            self._flush()
            unsaved = _matching(self._unsaved.values(), event_id, target)
        query = sa.select(_table.c.letter).order_by(_table.c.seq)
        if event_id is not None:
            query = query.where(_table.c.event_id == event_id)
        if target is not None:
            query = query.where(_table.c.target == target)
        with read_only(self.engine) as conn:
            stored = [from_json(DeadLetter, row.letter) for row in conn.execute(query)]
        if not unsaved:
            return stored
        newer = {d.key for d in unsaved}  # an unsaved letter replaces a stored one of its key, as add would
        return [d for d in stored if d.key not in newer] + unsaved

    def claim(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        keys = list(keys)
        delete = sa.delete(_table).where(_table.c.event_id == sa.bindparam("event_id"),
                                         _table.c.target == sa.bindparam("target"))
        with self._lock:
            self._flush()
            claimed = {key for key in keys if self._unsaved.pop(key, None) is not None}
            with self.engine.begin() as conn:  # one transaction; each key's own DELETE says whether it was there
                for key in keys:
                    if conn.execute(delete, {"event_id": key[0], "target": key[1]}).rowcount > 0:
                        claimed.add(key)
        return claimed

    def close(self) -> None:
        self.engine.dispose()

    def check(self) -> str | None:
        """None when the database answers, else what is wrong (``/health``)."""
        problem = unreachable(self.engine)
        return None if problem is None else f"dead-letter store: {problem}"

    def _flush(self) -> None:
        """(Lock held.) Write the letters not yet written, in one transaction, oldest first. If that fails, one
        by one, so a letter the database cannot take (a detail value JSON cannot hold) does not hold back the
        others; whatever still fails is kept for the next call."""
        if not self._unsaved:
            return
        letters = list(self._unsaved.values())
        try:
            self._write(letters)
        except (SQLAlchemyError, OSError, TypeError, ValueError):
            pass
        else:
            self._unsaved.clear()
            return
        error: Exception | None = None
        for letter in letters:
            try:
                self._write([letter])
            except (SQLAlchemyError, OSError, TypeError, ValueError) as exc:
                error = exc
                continue
            del self._unsaved[letter.key]
        if error is not None:
            first = next(iter(self._unsaved.values()))
            log.error("%d dead letter(s) (event %s for %s first) not written to %s; kept in memory and written on "
                      "the next dead-letter call: %s", len(self._unsaved), first.event.id, first.target,
                      self.url.render_as_string(hide_password=True), error)

    def _write(self, letters: list[DeadLetter]) -> None:
        rows: list[dict[str, Any]] = [{"event_id": d.event.id, "target": d.target, "letter": to_json(d)}
                                      for d in letters]
        with self.engine.begin() as conn:  # each key's old letter out, the new ones in at the end of the order
            conn.execute(sa.delete(_table).where(_table.c.event_id == sa.bindparam("event_id"),
                                                 _table.c.target == sa.bindparam("target")), rows)
            conn.execute(sa.insert(_table), rows)
