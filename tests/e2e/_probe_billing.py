"""A billing provider for the several-processes test: every call of its event and schedule hooks is one row
of table ``probe_calls`` in the PostgreSQL database ``SBT_PROBE_DSN`` names (shared by every ``sbt serve``),
with the process that made it. Loaded in ``sbt serve`` subprocesses through an entry point the test writes
(a ``.dist-info`` folder on ``PYTHONPATH``), as an installed plugin would be."""

from __future__ import annotations

import os
from typing import Any

import psycopg

from sbt_core import Provider, hookimpl

_SCHEMA = ("CREATE TABLE IF NOT EXISTS probe_calls (hook text NOT NULL, key text NOT NULL, pid integer NOT NULL, "
           "at timestamptz NOT NULL DEFAULT now())")


class ProbeBilling(Provider):
    def __init__(self, settings: Any, context: Any) -> None:
        super().__init__(settings, context)
        self._conn = psycopg.connect(os.environ["SBT_PROBE_DSN"], autocommit=True)
        self._conn.execute("SELECT pg_advisory_lock(4242)")
        self._conn.execute(_SCHEMA)
        self._conn.execute("SELECT pg_advisory_unlock(4242)")

    def _record(self, hook: str, key: str) -> None:
        self._conn.execute("INSERT INTO probe_calls (hook, key, pid) VALUES (%s, %s, %s)", (hook, key, os.getpid()))

    @hookimpl
    def billing_create_customer(self, event: Any) -> None:
        self._record("billing_create_customer", event.id)

    @hookimpl
    def billing_delete_customer(self, event: Any) -> None:
        self._record("billing_delete_customer", event.id)

    @hookimpl
    def billing_put_usage(self, run: Any) -> None:
        self._record("billing_put_usage", "manual" if run.manual else run.scheduled_time.isoformat())
