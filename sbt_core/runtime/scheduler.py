"""The scheduler: fires every schedule binding on its ``rate(...)``/``cron(...)`` expression (docs/design.md section 6).

A run is not called directly: it is handed to the bus as an event to the hook's own target (detail type
``Scheduled Event``, source ``sbt.scheduler``, as EventBridge's scheduled rules emit ``Scheduled Event``),
so a run is in the event log, a failed run is retried by the bus rules (bounded attempts, jittered
backoff) and then dead-lettered and replayable like any delivery. The hook receives a
:class:`~sbt_core.models.ScheduleRun`.

No overlapping runs of one hook: the bus runs one target's deliveries one at a time, and a due run is
skipped (logged) while the previous run of the same hook is still queued, running or retrying. A
scheduled run's event id is ``schedule:<hook>:<due time>``, so the same slot is never run twice even
through an at-least-once transport. Slots missed while the process was down are not caught up
(EventBridge does not either); a ``rate`` counts from when the scheduler started.

**Several processes** (a shared transport: ``[events] transport = "nats"``): every process's scheduler
fires every slot, and a ``rate`` counts from the Unix epoch instead, so all compute the same slots and
the same run ids; JetStream's dedup (``Nats-Msg-Id`` = the run id, within ``duplicate_window_seconds``)
stores one run per slot, and the schedule's exclusive consumer runs it in one process, never beside
another run of the hook. Nobody holds a lease, so nothing has to be taken over when a process dies: the
others fire the next slots on time, and a run the dead process had taken (un-acked) is handed to another
after ``ack_wait_seconds`` and runs late rather than not at all. "A previous run in progress" is known
only in the process running it: elsewhere a due slot is queued behind it, to run after it.

``sbt schedule run HOOK`` fires a manual run in the running server (``POST /schedules/{hook}/run``),
since the providers' state lives there; the run is queued behind any run in progress, never beside it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import attrs

from ..bindings import Binding
from ..errors import NotFoundError, SbtError
from ..models import Event, ScheduleRun, format_timestamp, from_json, to_json, utcnow
from ..triggers import RouteTrigger, ScheduleTrigger
from .bus import Bus, Handler
from .contracts import RouteDoc, RouteGroup, document_route

__all__ = ["SCHEDULE_DETAIL_TYPE", "SCHEDULER_SOURCE", "Schedule", "Scheduler", "schedule_event", "schedule_routes"]

log = logging.getLogger("sbt.scheduler")

SCHEDULE_DETAIL_TYPE = "Scheduled Event"
SCHEDULER_SOURCE = "sbt.scheduler"
#: Longest single sleep, so a wall-clock jump (suspend, NTP step) is noticed within this many seconds.
_MAX_SLEEP_SECONDS = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@attrs.define
class Schedule:
    """One schedule binding's state: its next due time (UTC) and counts of runs fired and skipped."""

    hook: str
    trigger: ScheduleTrigger
    next_due: datetime
    fired: int = 0
    skipped: int = 0

    def to_json(self) -> dict[str, object]:
        """``{hook, expression, nextDue, fired, skipped}`` (``GET /schedules``, ``sbt schedule list``)."""
        return {"hook": self.hook, "expression": self.trigger.expression, "nextDue": format_timestamp(self.next_due),
                "fired": self.fired, "skipped": self.skipped}


def schedule_event(run: ScheduleRun, *, event_id: str | None = None) -> Event:
    """The envelope of a run: ``Scheduled Event`` from ``sbt.scheduler`` with the run as detail."""
    return Event(SCHEDULE_DETAIL_TYPE, SCHEDULER_SOURCE, to_json(run), id=event_id or str(uuid.uuid4()),
                 resources=[f"schedule/{run.hook}"])


class Scheduler:
    """Fires schedule bindings through the bus.

    :param bus: where runs go; one target per schedule binding is added to it here.
    :param schedules: the schedule bindings (``BindingTable.schedules()``) with a handler per hook —
        ``call(hook, run)`` runs the hook (the control plane passes ``providers.call``).
    :param clock: aware-UTC now; injectable so tests drive :meth:`tick` without sleeping.
    :param on_fire: told ``(hook, manual)`` for every run handed to the bus (metrics).
    """

    def __init__(self, bus: Bus, schedules: Iterable[Binding], call: Callable[..., object], *,
                 clock: Callable[[], datetime] = utcnow, on_fire: Callable[[str, bool], None] | None = None) -> None:
        self.bus = bus
        self._on_fire = on_fire or (lambda hook, manual: None)
        self._clock = clock
        self._started_at = clock()
        # Every process must compute the same slots when they share the bus (see the module docstring).
        self._shared = bus.transport.shared
        self._schedules: dict[str, Schedule] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for binding in schedules:
            trigger = binding.trigger
            assert isinstance(trigger, ScheduleTrigger)
            due = trigger.next_after(self._started_at, start=self._rate_start)
            self._schedules[binding.hook] = Schedule(binding.hook, trigger, due)
            bus.add_target(binding.hook, None, _run_handler(binding.hook, call), kind="schedule")

    @property
    def _rate_start(self) -> datetime:
        """Where ``rate`` series start: the scheduler's start, or the Unix epoch when processes share the bus."""
        return _EPOCH if self._shared else self._started_at

    @property
    def schedules(self) -> list[Schedule]:
        """Every schedule with its next due time."""
        return list(self._schedules.values())

    def tick(self, now: datetime | None = None) -> list[Event]:
        """Fire every schedule due at or before ``now`` (default: the clock) once, skipping a hook whose
        previous run is unfinished, and move each to its next due time. Returns the run events put."""
        now = now or self._clock()
        fired: list[Event] = []
        with self._lock:
            for schedule in self._schedules.values():
                if schedule.next_due > now:
                    continue
                due = schedule.next_due
                # Several slots missed (a long sleep) collapse into one run, stamped with the latest slot.
                following = schedule.trigger.next_after(due, start=self._rate_start)
                while following <= now:
                    due, following = following, schedule.trigger.next_after(following, start=self._rate_start)
                schedule.next_due = following
                if self.bus.busy(schedule.hook):
                    schedule.skipped += 1
                    log.warning("schedule %s (%s) due at %s skipped: its previous run is still in progress",
                                schedule.hook, schedule.trigger.expression, format_timestamp(due))
                    continue
                run = ScheduleRun(schedule.hook, schedule.trigger.expression, due)
                event = schedule_event(run, event_id=f"schedule:{schedule.hook}:{format_timestamp(due)}")
                if not self.bus.accept([event], target=schedule.hook):  # the bus is stopping: this slot is not run
                    log.warning("schedule %s due at %s not run: the event bus has stopped", schedule.hook,
                                format_timestamp(due))
                    continue
                schedule.fired += 1
                self._on_fire(schedule.hook, False)
                fired.append(event)
        return fired

    def run_now(self, hook: str) -> Event:
        """Fire a manual run of ``hook`` now (``ScheduleRun.manual`` True); queued behind a run in progress.

        :raises NotFoundError: ``hook`` has no enabled schedule binding.
        :raises SbtError: the bus has stopped.
        """
        schedule = self._schedules.get(hook)
        if schedule is None:
            known = ", ".join(self._schedules) or "none"
            raise NotFoundError(f"no schedule binding for {hook!r}; scheduled hooks: {known}")
        run = ScheduleRun(hook, schedule.trigger.expression, self._clock(), manual=True)
        event = schedule_event(run, event_id=f"schedule:{hook}:manual:{uuid.uuid4()}")
        if not self.bus.accept([event], target=hook):
            raise SbtError(f"{hook} not run: the event bus has stopped")
        self._on_fire(hook, True)
        return event

    def next_wake(self) -> datetime | None:
        """The earliest next due time, or None with no schedules."""
        return min((s.next_due for s in self._schedules.values()), default=None)

    # --- the timer thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`tick` whenever a schedule falls due, in a daemon thread; idempotent."""
        if self._thread is not None or not self._schedules:
            return
        with self._lock:  # a rate counts from the start, not from construction
            if not any(s.fired or s.skipped for s in self._schedules.values()):
                self._started_at = self._clock()
                for schedule in self._schedules.values():
                    schedule.next_due = schedule.trigger.next_after(self._started_at, start=self._rate_start)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sbt-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            wake = self.next_wake()
            delay = _MAX_SLEEP_SECONDS if wake is None else (wake - self._clock()).total_seconds()
            if delay > 0:
                if self._stop.wait(min(delay, _MAX_SLEEP_SECONDS)):
                    return
                continue
            try:
                self.tick()
            except Exception:  # keep the timer alive; the next tick tries again
                log.exception("scheduler tick failed")
                self._stop.wait(1.0)

    def stop(self) -> None:
        """Stop firing (runs already handed to the bus are drained by the bus)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None


def _run_handler(hook: str, call: Callable[..., object]) -> Handler:
    def handle(event: Event) -> object:
        return call(hook, run=from_json(ScheduleRun, event.detail))

    handle.__qualname__ = f"schedule:{hook}"
    return handle


def schedule_routes(scheduler: Scheduler) -> RouteGroup:
    """``GET /schedules`` (scope ``event/event_read``): ``{"data": [{hook, expression, nextDue, fired,
    skipped}]}``; ``POST /schedules/{hook}/run`` (scope ``event/event_write``): fire a manual run now,
    202 ``{"data": {"hook", "eventId"}}`` (404 for a hook with no schedule binding). Triggers from CORE_ROUTES."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from ..bindings import CORE_ROUTES

    def trigger(method: str, path: str) -> RouteTrigger:
        return next(r for r in CORE_ROUTES if (r.method, r.path) == (method, path))

    async def list_schedules(request: Request) -> Response:
        """Schedule bindings with their next due time and how many runs fired or were skipped."""
        return JSONResponse({"data": [s.to_json() for s in scheduler.schedules]})

    async def run_schedule(request: Request) -> Response:
        """Fire a manual run of a scheduled hook now (queued behind a run in progress)."""
        hook = request.path_params["hook"]
        event = scheduler.run_now(hook)
        return JSONResponse({"data": {"hook": hook, "eventId": event.id}}, 202)

    def schedules_schema(reg: object) -> dict[str, object]:
        item = {"type": "object", "required": ["hook", "expression", "nextDue", "fired", "skipped"], "properties": {
            "hook": {"type": "string"}, "expression": {"type": "string", "description": "rate(...) or cron(...)"},
            "nextDue": {"type": "string", "format": "date-time"}, "fired": {"type": "integer"},
            "skipped": {"type": "integer", "description": "due runs skipped while the previous run was unfinished"}}}
        return {"type": "object", "properties": {"data": {"type": "array", "items": item}}, "required": ["data"]}

    def run_schema(reg: object) -> dict[str, object]:
        return {"type": "object", "required": ["data"], "properties": {"data": {
            "type": "object", "required": ["hook", "eventId"],
            "properties": {"hook": {"type": "string"}, "eventId": {"type": "string"}}}}}

    document_route(list_schedules, RouteDoc("list_schedules", "schedules", response_schema=schedules_schema))
    document_route(run_schedule, RouteDoc("run_schedule", "schedules", status=202, response_schema=run_schema))
    return [
        (trigger("GET", "/schedules"), list_schedules),
        (trigger("POST", "/schedules/{hook}/run"), run_schedule),
    ]
