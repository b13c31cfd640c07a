"""The application plane: sbt-aws's CoreApplicationPlane, running each configured job on its incoming event.

For every ``[[jobs]]`` table it subscribes a bus target ``jobs.<name>`` to the job's incoming event. A
delivery claims the run of the event's job identifier in the job store (:class:`JobRunStore`) and starts
it on a worker thread (at most ``[app_plane] max_concurrent_jobs`` at once), so a long job never holds up
the bus. When the run ends, its outgoing event goes out (``ScriptJob``'s step function):

- success: ``{<job_identifier_key>: id, jobOutput: {tenantData: {...}, tenantRegistrationData: {...}}}``,
  each exported variable the job set under the key its ``export_*`` list names;
- failure (non-zero exit, timeout, a kind that could not run): ``{<job_identifier_key>: id, jobOutput:
  <failure_status>}``.

Delivery is at least once, so a run is idempotent by (job, job identifier) — see :meth:`JobRunStore.claim`:
a redelivered event whose run finished runs nothing (its outcome is sent again only if it never went
out); one whose run is in progress starts nothing; a *new* event for an identifier whose run failed runs
the job again (that is how a failed provisioning is retried); a new event for a run that succeeded gets
the stored outcome again, under a new event id. A run whose process died is taken over once its lease
passes (a stopping process gives its leases up at once), so the job runs again from the start: write
jobs that can.

The plane is a core component (:class:`~sbt_core.runtime.control_plane.Component`): ``sbt serve`` attaches
it to the control plane's bus; ``sbt app-plane run`` to a bus of its own fed by the control plane
(:mod:`sbt_core.app_plane.standalone`), publishing outcomes back over HTTP.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
from sqlalchemy.exc import OperationalError

from ..errors import BadRequestError, ProviderError, StartupError
from ..job_kind import JobRequest, JobResult
from ..models import Event, output_detail_type
from ..runtime.contracts import EventBus, Publisher, RouteGroup, attach_subscriber
from ..triggers import EventTrigger
from ._spec import AppPlaneSettings, JobSpec
from ._store import Claim, JobRun, JobRunStore, RunStatus

__all__ = ["AppPlane", "Publisher", "job_environment"]

log = logging.getLogger("sbt.jobs")

_OUTCOME_IDS = uuid.UUID("6f1c3a52-5b1e-4d8e-9a41-0c2f7e9d3b10")


def _json_text(value: Any) -> str:
    """A JSON value as text, compact, as Step Functions' ``States.JsonToString`` writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def job_environment(job: JobSpec, detail: Mapping[str, Any]) -> dict[str, str]:
    """The variables a run gets: the job's fixed ``environment`` (secrets resolved), then — overriding
    them, as CodeBuild's ``environmentVariablesOverride`` overrides a project's variables — the variables
    imported from ``detail``: each ``import_variables`` name as a string (a non-string value as JSON
    text), each ``import_json_variables`` name as compact JSON text. A name the detail lacks (or holds
    null, for a string variable) is left unset."""
    env = {name: secret.get_secret_value() for name, secret in job.environment.items()}
    for name in job.import_variables:
        value = detail.get(name)
        if value is not None:
            env[name] = value if isinstance(value, str) else _json_text(value)
    for name in job.import_json_variables:
        if name in detail:
            env[name] = _json_text(detail[name])
    return env


def _job_id(job: JobSpec, event: Event) -> str:
    value = event.detail.get(job.job_identifier_key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise BadRequestError(f"job {job.name}: {event.detail_type} detail needs {job.job_identifier_key} "
                              "(the job identifier), a non-empty string")
    return str(value)


class AppPlane:
    """The configured jobs bound to a bus (see the module docstring).

    :param jobs: the validated ``[[jobs]]`` (:func:`~sbt_core.app_plane.load_jobs`).
    :param store: where runs are claimed and recorded.
    :param settings: ``[app_plane]``.
    :param naming: detail-type naming of outgoing events (``[events] naming``).
    :param publish: where outcome events go; default: the ``put_events`` of the bus it is attached to.
    """

    def __init__(self, jobs: Sequence[JobSpec], store: JobRunStore, settings: AppPlaneSettings | None = None, *,
                 naming: str = "sbt", publish: Publisher | None = None) -> None:
        self.jobs = {job.name: job for job in jobs}
        self.store = store
        self.settings = settings or AppPlaneSettings()
        self.naming = naming
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._publish = publish
        self._executor = ThreadPoolExecutor(self.settings.max_concurrent_jobs, thread_name_prefix="sbt-job")
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self._lock = threading.Lock()
        self._running = 0
        self._idle = threading.Condition(self._lock)

    # --- the component -------------------------------------------------------------------------------

    @property
    def routes(self) -> RouteGroup:
        """No routes: runs are read from the job store (``sbt jobs``)."""
        return []

    def subscriptions(self) -> list[tuple[str, EventTrigger, Callable[[Event], Any]]]:
        """``(jobs.<name>, the job's trigger, its delivery handler)`` for each job."""
        return [(f"jobs.{job.name}", job.trigger, functools.partial(self.deliver, job)) for job in self.jobs.values()]

    def attach(self, bus: EventBus | Publisher) -> None:
        """Subscribe every job to ``bus``; publish outcomes through it unless a publisher was given."""
        put = attach_subscriber(bus, self.subscriptions())
        if self._publish is None:
            self._publish = put

    def start(self) -> None:
        """Create the table, then keep leases alive, take over runs a dead process left and send outcomes
        that did not go out (a housekeeping thread, every third of a lease).

        :raises StartupError: the job store cannot be opened (named without its password)."""
        try:
            self.store.create_schema()
        except OperationalError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0]
            raise StartupError(f"application plane: cannot open {self.store.describe()}: {reason}") from None
        self._housekeeper = threading.Thread(target=self._housekeep, name="sbt-app-plane", daemon=True)
        self._housekeeper.start()
        log.info("application plane started: %d job(s) (%s), runs in %s", len(self.jobs),
                 ", ".join(self.jobs) or "none", self.store.describe())

    def close(self) -> None:
        """Stop every run in progress (its kind kills it), give their leases up so the next start takes
        them over at once, release the database."""
        self._stop.set()
        if self._housekeeper is not None:
            self._housekeeper.join(timeout=10)
        self._executor.shutdown(wait=True, cancel_futures=True)
        try:
            released = self.store.release(self.owner)
            if released:
                log.warning("application plane stopped with %d run(s) unfinished; they run again at the next "
                            "start", released)
        except Exception as exc:  # noqa: BLE001 - unreachable store: its leases then run out on their own
            log.warning("could not give up the leases of unfinished runs (%s); they run again once they expire",
                        type(exc).__name__)
        finally:
            self.store.dispose()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until no run is in progress (tests, the CLI); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout)

    # --- delivery ------------------------------------------------------------------------------------

    def deliver(self, job: JobSpec, event: Event) -> dict[str, Any]:
        """Bus handler of ``jobs.<name>``: claim and start (or skip, or re-send) the run of ``event``'s job
        identifier; returns what it did, for the event log.

        :raises BadRequestError: the detail has no job identifier (dead-lettered, not retried).
        :raises ProviderError: a finished run's outcome could not be sent (retried).
        """
        job_id = _job_id(job, event)
        claim, run = self.store.claim(job.name, job_id, event, self.owner, self.settings.lease_seconds)
        answer = {"job": job.name, "jobId": job_id, "attempt": run.attempt, "claim": claim.value}
        if claim is Claim.RUN:
            self._submit(job, run)
        elif claim is Claim.SKIP:
            log.info("%s/%s: a run is already in progress (attempt %d); not starting another", job.name, job_id,
                     run.attempt)
        elif claim is Claim.EMIT:
            if not self._emit(run, event):
                raise ProviderError(f"job {job.name}/{job_id}: its outcome event could not be published")
        return answer

    def _submit(self, job: JobSpec, run: JobRun) -> None:
        with self._lock:
            self._running += 1
        try:
            self._executor.submit(self._execute, job, run)
        except RuntimeError:  # shut down: the run stays claimed, and is taken over at the next start
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._running -= 1
            self._idle.notify_all()

    def _execute(self, job: JobSpec, run: JobRun) -> None:
        try:
            self._execute_one(job, run)
        except Exception:
            log.exception("%s/%s: recording the run failed", job.name, run.job_id)
        finally:
            self._done()

    def _execute_one(self, job: JobSpec, run: JobRun) -> None:
        name = f"{job.name}/{run.job_id}"
        log.info("%s: starting (attempt %d, event %s)", name, run.attempt, run.event.id)
        request = JobRequest(job=job.name, job_id=run.job_id, settings=job.settings,
                             environment=job_environment(job, run.event.detail), secrets=job.secret_names,
                             export=job.exported_names, timeout_seconds=job.timeout_seconds, base_dir=job.base_dir,
                             log=log, stop=self._stop)
        try:
            result = job.kind.run(request)
        except Exception as exc:
            log.exception("%s: job kind %r failed", name, job.kind_name)
            result = JobResult(error=f"job kind {job.kind_name!r} failed: {type(exc).__name__}: {exc}")
        if self._stop.is_set() and not result.succeeded:
            log.warning("%s: stopped with the application plane; it runs again at the next start", name)
            return
        if result.succeeded:
            exported = {"tenantData": {k: result.exported[k] for k in job.export_tenant_data if k in result.exported},
                        "tenantRegistrationData": {k: result.exported[k] for k in job.export_tenant_registration_data
                                                   if k in result.exported}}
            outcome = self._outcome(job, run, job.success_event, exported)
            log.info("%s: succeeded", name)
        else:
            exported = None
            outcome = self._outcome(job, run, job.failure_event, dict(job.failure_status))
            log.warning("%s: failed: %s", name, result.error)
        done = self.store.finish(run, status=RunStatus.SUCCEEDED if result.succeeded else RunStatus.FAILED,
                                 exit_code=result.exit_code, error=result.error, exported=exported,
                                 output=result.output, outcome=outcome)
        if done is None:
            log.warning("%s: another process took this run over; its result stands, not this one", name)
            return
        self._emit(done, None)

    def _outcome(self, job: JobSpec, run: JobRun, detail_type: str, job_output: dict[str, Any]) -> Event:
        """The outgoing event of ``run``; its id is derived from the run, so sending it twice is one event."""
        detail = {job.job_identifier_key: run.event.detail.get(job.job_identifier_key, run.job_id),
                  "jobOutput": job_output}
        event = Event.create(output_detail_type(detail_type, self.naming), detail,
                             source=job.outgoing_source(detail_type))
        run_key = f"{run.job}/{run.job_id}/{run.attempt}/{run.event.id}"
        return attrs.evolve(event, id=str(uuid.uuid5(_OUTCOME_IDS, run_key)))

    def _emit(self, run: JobRun, asking: Event | None) -> bool:
        """Publish ``run``'s outcome (to a new event asking for it, under a new id); True once accepted."""
        outcome = run.outcome
        assert outcome is not None
        if asking is not None and asking.id != run.event.id:
            outcome = attrs.evolve(outcome, id=str(uuid.uuid5(_OUTCOME_IDS, f"{outcome.id}/{asking.id}")))
        if self._publish is None:
            log.error("%s/%s: no bus to publish the outcome to", run.job, run.job_id)
            return False
        try:
            answer = self._publish([outcome])[0]
        except Exception as exc:  # an unreachable control plane (standalone): the housekeeper tries again
            log.warning("%s/%s: publishing %s failed: %s", run.job, run.job_id, outcome.detail_type, exc)
            return False
        if answer.event_id is None:
            log.warning("%s/%s: %s refused: %s %s", run.job, run.job_id, outcome.detail_type, answer.error_code,
                        answer.error_message)
            return False
        if outcome.id == (run.outcome.id if run.outcome else None):
            self.store.mark_published(run)
        return True

    # --- housekeeping --------------------------------------------------------------------------------

    def _housekeep(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            try:
                self.sweep()
            except Exception:
                log.exception("application plane housekeeping failed; trying again in %.0f s", interval)
            if self._stop.wait(interval):
                return

    def sweep(self) -> None:
        """One round of housekeeping: renew this process's leases, take over expired runs of its jobs, and
        send outcomes that did not go out."""
        self.store.renew(self.owner, self.settings.lease_seconds)
        names = list(self.jobs)
        for run in self.store.expired(names):
            job = self.jobs[run.job]
            claim, taken = self.store.claim(run.job, run.job_id, run.event, self.owner, self.settings.lease_seconds)
            if claim is Claim.RUN:
                log.warning("%s/%s: taking over a run its process left unfinished (attempt %d)", run.job, run.job_id,
                            taken.attempt)
                self._submit(job, taken)
        for run in self.store.unpublished(names):
            self._emit(run, None)
