"""Users of the local provider, kept in SQLite (``<state_dir>/local/users.sqlite3``).

One connection guarded by a lock: hooks run in the HTTP server's worker threads, and SQLite
serialises writers anyway. Pages are ordered by user name; ``next_token`` is the last name of the
page, base64url-encoded (opaque to callers, as Cognito's PaginationToken is).
"""

from __future__ import annotations

import base64
import binascii
import os
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from ..errors import BadRequestError, ConflictError, NotFoundError
from ..models import Page, User, format_timestamp, parse_timestamp, utcnow

__all__ = ["DB_FILE", "UserStore"]

DB_FILE = "users.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_name TEXT PRIMARY KEY,
    email TEXT,
    user_role TEXT,
    status TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
)
"""

_COLUMNS = "user_name, email, user_role, status, enabled, created, modified"


def _row(row: tuple[str, str | None, str | None, str, int, str, str]) -> User:
    return User(user_name=row[0], email=row[1], user_role=row[2], status=row[3], enabled=bool(row[4]),
                created=parse_timestamp(row[5]), modified=parse_timestamp(row[6]))


def _not_found(user_id: str) -> NotFoundError:
    return NotFoundError(f"User {user_id} not found.")  # sbt-aws's message


class UserStore:
    """CRUD of :class:`User` rows. Errors are the SbtError family the hooks document."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        if not path.exists():
            # Created private (emails live here); SQLite gives its -wal/-shm files the same mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, user_name: str, email: str | None, user_role: str | None, *,
               now: datetime | None = None) -> User:
        """Insert a user; raises ConflictError if the name is taken."""
        stamp = format_timestamp(now or utcnow())
        with self._lock:
            try:
                self._db.execute(f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, 'CONFIRMED', 1, ?, ?)",
                                 (user_name, email, user_role, stamp, stamp))
            except sqlite3.IntegrityError:
                raise ConflictError(f"User {user_name} already exists.") from None
        return self.get(user_name)

    def get(self, user_name: str) -> User:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM users WHERE user_name = ?", (user_name,)).fetchone()
        if row is None:
            raise _not_found(user_name)
        return _row(row)

    def exists(self, user_name: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM users WHERE user_name = ?", (user_name,)).fetchone() is not None

    def page(self, limit: int, next_token: str | None) -> Page[User]:
        """``limit`` users after the one ``next_token`` names, by user name."""
        after = ""
        if next_token:
            try:
                after = base64.urlsafe_b64decode(next_token.encode() + b"=" * (-len(next_token) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise BadRequestError("next_token is malformed; pass the next_token of the previous page") from None
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM users WHERE user_name > ? ORDER BY user_name LIMIT ?",
                                    (after, limit + 1)).fetchall()
        users = [_row(r) for r in rows[:limit]]
        token = None
        if len(rows) > limit:
            token = base64.urlsafe_b64encode(users[-1].user_name.encode()).rstrip(b"=").decode()
        return Page(items=users, next_token=token)

    def update(self, user_name: str, *, email: str | None = None, user_role: str | None = None,
               enabled: bool | None = None) -> User:
        """Change the given fields (None = keep) and ``modified``; raises NotFoundError."""
        sets: list[str] = ["modified = ?"]
        args: list[object] = [format_timestamp(utcnow())]
        for column, value in (("email", email), ("user_role", user_role)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        if enabled is not None:
            sets.append("enabled = ?")
            args.append(1 if enabled else 0)
        with self._lock:
            cursor = self._db.execute(f"UPDATE users SET {', '.join(sets)} WHERE user_name = ?", (*args, user_name))
        if cursor.rowcount == 0:
            raise _not_found(user_name)
        return self.get(user_name)

    def delete(self, user_name: str) -> None:
        with self._lock:
            cursor = self._db.execute("DELETE FROM users WHERE user_name = ?", (user_name,))
        if cursor.rowcount == 0:
            raise _not_found(user_name)
