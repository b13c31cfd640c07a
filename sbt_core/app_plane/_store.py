"""Job runs, one row per (job, job identifier): what makes a job idempotent by its identifier.

Table ``sbt_job_runs`` in SQLite (``<state_dir>/jobs.sqlite3``) or PostgreSQL (``[app_plane]
database_url``), through the engine recipe every sbt store shares (``sbt_core/_sql.py``). A claim
(:meth:`JobRunStore.claim`) reads and writes the row in one transaction (on SQLite ``BEGIN IMMEDIATE``; on
PostgreSQL ``SELECT ... FOR UPDATE``, and the primary key settles two first claims), so of two deliveries
of one event, in one process or several, exactly one runs the job.

A running row carries a lease, renewed by the process running it (:meth:`JobRunStore.renew`); a row whose
lease has passed belongs to a process that died (or stopped) mid-run, and the next claim takes it over.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import IntegrityError

from .._sql import create_engine, read_only
from ..models import Event, from_json, to_json

__all__ = ["Claim", "JobRun", "JobRunStore", "RunStatus"]

metadata = sa.MetaData()

runs = sa.Table(
    "sbt_job_runs", metadata,
    sa.Column("job", sa.String(128), primary_key=True),
    sa.Column("job_id", sa.String(255), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("event", sa.JSON, nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("lease_until", sa.Float, nullable=False),
    sa.Column("started", sa.Float, nullable=False, index=True),
    sa.Column("finished", sa.Float, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("exported", sa.JSON, nullable=True),
    sa.Column("output", sa.JSON, nullable=True),
    sa.Column("outcome", sa.JSON, nullable=True),
    sa.Column("published", sa.Boolean, nullable=False, default=False),
)

_SCHEMA_LOCK = 0x5B7_10B5


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Claim(enum.StrEnum):
    """What a delivery of a job's incoming event does (:meth:`JobRunStore.claim`)."""

    #: Run the job: no run yet, a failed run and a new event, or a running one whose owner's lease passed.
    RUN = "run"
    #: Nothing: a run of this identifier is in progress elsewhere (its lease is alive).
    SKIP = "skip"
    #: Send the finished run's outcome event again (not yet published, or asked for by a new event).
    EMIT = "emit"
    #: Nothing: this very event already finished its run and the outcome went out.
    DONE = "done"


@attrs.frozen
class JobRun:
    """One row of ``sbt_job_runs``. Times are epoch seconds; ``exported`` is the success event's
    ``jobOutput`` (``{tenantData, tenantRegistrationData}``); ``outcome`` the outgoing event."""

    job: str
    job_id: str
    status: RunStatus
    attempt: int
    event: Event
    owner: str
    lease_until: float
    started: float
    finished: float | None = None
    exit_code: int | None = None
    error: str | None = None
    exported: dict[str, Any] | None = None
    output: tuple[str, ...] = ()
    outcome: Event | None = None
    published: bool = False

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (None while running)."""
        return None if self.finished is None else self.finished - self.started


def _run(row: Any) -> JobRun:
    return JobRun(job=row.job, job_id=row.job_id, status=RunStatus(row.status), attempt=row.attempt,
                  event=from_json(Event, row.event), owner=row.owner, lease_until=row.lease_until,
                  started=row.started, finished=row.finished, exit_code=row.exit_code, error=row.error,
                  exported=row.exported, output=tuple(row.output or ()),
                  outcome=from_json(Event, row.outcome) if row.outcome else None, published=bool(row.published))


class JobRunStore:
    """``sbt_job_runs`` in one SQL database (see the module docstring)."""

    def __init__(self, url: URL | str, *, clock: Any = time.time) -> None:
        self.url = sa.make_url(url) if isinstance(url, str) else url
        self.engine = create_engine(self.url)
        self._clock = clock

    def describe(self) -> str:
        """The URL with its password hidden."""
        return self.url.render_as_string(hide_password=True)

    def create_schema(self) -> None:
        """Create the table if missing (safe from several processes at once)."""
        with self.engine.begin() as conn:
            if self.url.get_backend_name() == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            metadata.create_all(conn, checkfirst=True)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def claim(self, job: str, job_id: str, event: Event, owner: str, lease_seconds: float) -> tuple[Claim, JobRun]:
        """Decide, atomically, what a delivery of ``event`` for ``job``/``job_id`` does, and record it:

        - no run yet, or a *failed* run and a different event: :attr:`Claim.RUN` (the row becomes running,
          owned by ``owner``, attempt + 1) — a new request for a failed job is its retry;
        - a running row whose lease is alive: :attr:`Claim.SKIP`; whose lease passed: :attr:`Claim.RUN`
          (taken over: the process that held it died);
        - a finished run whose outcome went out, and this same event: :attr:`Claim.DONE` (a redelivery);
        - any other finished run (outcome not yet sent, or a different event asking again):
          :attr:`Claim.EMIT`.

        Returns the decision and the row as it now is.
        """
        for _ in range(2):  # a concurrent first claim may win the insert; the second round then sees its row
            try:
                with self._transaction() as conn:
                    return self._claim(conn, job, job_id, event, owner, lease_seconds)
            except IntegrityError:
                continue
        raise RuntimeError(f"could not claim job run {job}/{job_id}")  # pragma: no cover - two lost races

    def _claim(self, conn: Connection, job: str, job_id: str, event: Event, owner: str,
               lease_seconds: float) -> tuple[Claim, JobRun]:
        key = (runs.c.job == job) & (runs.c.job_id == job_id)
        row = conn.execute(sa.select(runs).where(key).with_for_update()).first()
        now = self._clock()
        if row is None:
            fresh = JobRun(job, job_id, RunStatus.RUNNING, 1, event, owner, now + lease_seconds, now)
            conn.execute(runs.insert().values(self._values(fresh)))
            return Claim.RUN, fresh
        current = _run(row)
        if current.status is RunStatus.RUNNING and current.lease_until > now:
            return Claim.SKIP, current
        if current.status is RunStatus.SUCCEEDED or (current.status is RunStatus.FAILED
                                                     and current.event.id == event.id):
            done = current.published and current.event.id == event.id
            return (Claim.DONE if done else Claim.EMIT), current
        again = JobRun(job, job_id, RunStatus.RUNNING, current.attempt + 1, event, owner, now + lease_seconds, now)
        conn.execute(runs.update().where(key).values(self._values(again)))
        return Claim.RUN, again

    @staticmethod
    def _values(run: JobRun) -> dict[str, Any]:
        return {"job": run.job, "job_id": run.job_id, "status": run.status.value, "attempt": run.attempt,
                "event_id": run.event.id, "event": to_json(run.event), "owner": run.owner,
                "lease_until": run.lease_until, "started": run.started, "finished": run.finished,
                "exit_code": run.exit_code, "error": run.error, "exported": run.exported,
                "output": list(run.output), "outcome": to_json(run.outcome) if run.outcome else None,
                "published": run.published}

    def renew(self, owner: str, lease_seconds: float) -> int:
        """Extend the lease of every running row ``owner`` holds; returns how many."""
        with self._transaction() as conn:
            return conn.execute(runs.update().where((runs.c.owner == owner)
                                                    & (runs.c.status == RunStatus.RUNNING.value))
                                .values(lease_until=self._clock() + lease_seconds)).rowcount

    def release(self, owner: str) -> int:
        """End the lease of every running row ``owner`` holds now (a stopping process), so the next claim
        or :meth:`expired` takes them over at once instead of after the lease; returns how many."""
        with self._transaction() as conn:
            return conn.execute(runs.update().where((runs.c.owner == owner)
                                                    & (runs.c.status == RunStatus.RUNNING.value))
                                .values(lease_until=0.0)).rowcount

    def finish(self, run: JobRun, *, status: RunStatus, exit_code: int | None, error: str | None,
               exported: dict[str, Any] | None, output: Sequence[str], outcome: Event) -> JobRun | None:
        """Record how ``run`` ended and its outcome event, if ``run.owner`` still holds it (None otherwise:
        another process took it over after the lease passed, and its result wins)."""
        key = ((runs.c.job == run.job) & (runs.c.job_id == run.job_id) & (runs.c.owner == run.owner)
               & (runs.c.attempt == run.attempt) & (runs.c.status == RunStatus.RUNNING.value))
        done = attrs.evolve(run, status=status, finished=self._clock(), exit_code=exit_code, error=error,
                            exported=exported, output=tuple(output), outcome=outcome)
        with self._transaction() as conn:
            changed = conn.execute(runs.update().where(key).values(self._values(done))).rowcount
        return done if changed else None

    def mark_published(self, run: JobRun) -> None:
        """The outcome event of ``run`` (this attempt, finished) went out."""
        with self._transaction() as conn:
            conn.execute(runs.update().where((runs.c.job == run.job) & (runs.c.job_id == run.job_id)
                                             & (runs.c.attempt == run.attempt)
                                             & (runs.c.status != RunStatus.RUNNING.value)).values(published=True))

    def expired(self, jobs: Sequence[str]) -> list[JobRun]:
        """Running rows of ``jobs`` whose lease has passed (their process died or stopped)."""
        with read_only(self.engine) as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.job.in_(list(jobs)),
                                                      runs.c.status == RunStatus.RUNNING.value,
                                                      runs.c.lease_until <= self._clock())).all()
        return [_run(row) for row in rows]

    def unpublished(self, jobs: Sequence[str]) -> list[JobRun]:
        """Finished runs of ``jobs`` whose outcome event has not gone out yet."""
        with read_only(self.engine) as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.job.in_(list(jobs)),
                                                      runs.c.status != RunStatus.RUNNING.value,
                                                      runs.c.published.is_(False))).all()
        return [_run(row) for row in rows]

    def get(self, job: str, job_id: str) -> JobRun | None:
        with read_only(self.engine) as conn:
            row = conn.execute(sa.select(runs).where((runs.c.job == job) & (runs.c.job_id == job_id))).first()
        return _run(row) if row is not None else None

    def recent(self, limit: int = 20, job: str | None = None) -> list[JobRun]:
        """The most recently started runs, newest first (of ``job`` only, if given)."""
        query = sa.select(runs).order_by(runs.c.started.desc(), runs.c.job_id).limit(limit)
        if job is not None:
            query = query.where(runs.c.job == job)
        with read_only(self.engine) as conn:
            return [_run(row) for row in conn.execute(query).all()]

    def last_runs(self) -> dict[str, JobRun]:
        """Per job name, its most recently started run."""
        latest = (sa.select(runs.c.job, sa.func.max(runs.c.started).label("started"))
                  .group_by(runs.c.job).subquery())
        query = sa.select(runs).join(latest, (runs.c.job == latest.c.job) & (runs.c.started == latest.c.started))
        with read_only(self.engine) as conn:
            return {row.job: _run(row) for row in conn.execute(query).all()}
