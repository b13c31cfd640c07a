"""The event bus: EventBridge-like routing with at-least-once delivery per target (docs/design.md section 3).

A *target* is one consumer of events with its own queue and worker thread: a hook binding (named by the
hook), a core subscriber (named by the registering component) or a schedule (named by its hook). An
accepted event is routed by its bare detail type *and* source to every matching target, recorded in the
event log, and delivered to each target independently:

- at least once, with up to ``EventsConfig.max_attempts`` attempts; a retryable failure (an
  :class:`SbtError` whose ``retryable`` is True, or any unexpected exception) waits a random
  exponential backoff ("full jitter") and is tried again; a non-retryable SbtError
  (``BadRequestError``…) is dead-lettered at once with its message;
- at most once per event id and target within ``dedup_window_seconds`` (a re-put of the same id is
  accepted but not delivered again), except through :meth:`Bus.replay`;
- each target's worker runs its handler (sync hook calls) in its own thread, so a slow or failing
  provider holds up only its own queue and never the HTTP server or the other targets; one worker per
  target also means one hook never runs twice at once (what the scheduler relies on).

The event log (:meth:`Bus.get`, :meth:`Bus.recent`) keeps the newest ``log_size`` events with each
target's :class:`Delivery`, in the memory of the process that runs the bus; the dead-letter store
(:meth:`Bus.dead_letters`, :meth:`Bus.replay`) keeps every dead-lettered (event, target) until replayed,
in memory or, as ``sbt serve`` keeps it, in a database that outlives the process (``dead_letters.py``).
The CLI reads both from the running server over HTTP (``GET /events``, ``GET /dead-letters``).

This module registers targets, routes and accepts events (:meth:`Bus.accept`, the one way in) and reads
the log. Beside it: ``delivery.py`` holds what each target's worker does (deliver, retry, dead-letter),
recovery after a restart and replay; ``handlers.py`` turns a binding's hook into what a target runs and
says which failures are retried; ``event_log.py`` keeps the log, ``_dedup.py`` the ids each target has seen;
``transport.py`` is the seam messages cross between a publisher and a target's worker (``sqlite_transport.py``
its durable implementation, whose un-acked messages a restart delivers again: :meth:`Bus.add_target` counts
and logs them, :meth:`Bus.start` dead-letters those of targets no longer registered), ``dead_letters.py``
the one dead letters are kept behind.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import attrs

from ... import input_policy
from ...config import EventsConfig
from ...errors import BadRequestError, NotFoundError, SbtError
from ...models import Event, canonical_detail_type, output_detail_type, to_json, utcnow
from ...triggers import EventTrigger
from ..contracts import EventRecord, PutEventsEntryResult
from ._dedup import SeenIds
from .dead_letters import DeadLetter, DeadLetterStore, MemoryDeadLetters
from .delivery import DeadLetterReason, Delivering, DeliveryObserver, Target, TargetInfo, TargetKind, Unobserved
from .event_log import EventLog, Saved, Slot
from .handlers import BatchHandler, Handler, batch_handler, hook_handler
from .shared_log import SqlEventLog
from .transport import InProcessTransport, Message, Transport

if TYPE_CHECKING:
    from ...bindings import BindingTable
    from ...plugins import Providers

__all__ = ["Bus", "DeadLetter", "DeadLetterReason", "DeliveryObserver", "TargetInfo"]

log = logging.getLogger("sbt.bus")

_UNSEEN: Any = object()
#: Batches of at least this many events may be accepted as one (Bus._accept_uniform).
_UNIFORM_MIN = 8
_EVENT_ID, _DETAIL_TYPE, _SOURCE = attrgetter("id"), attrgetter("detail_type"), attrgetter("source")
#: The answer for an event offered to a stopped bus (a frozen record: one instance serves every entry).
_BUS_CLOSED = PutEventsEntryResult(error_code="BusClosed", error_message="the event bus has stopped")


def policy_problem(event: Event) -> str | None:
    """``"<field>: <why>"`` when the input policy refuses ``event``'s names or detail, else None."""
    for field, name in (("source", event.source), ("detail-type", event.detail_type), ("id", event.id)):
        problem = input_policy.name_problem(name)
        if problem is not None:
            return f"{field}: {problem}"
    return input_policy.detail_problem(event.detail)


def _refused(problem: str) -> PutEventsEntryResult:
    return PutEventsEntryResult(error_code="InvalidArgument", error_message=problem)


class Bus(Delivering):
    """The control plane's event bus (implements :class:`sbt_core.runtime.contracts.EventBus`).

    :param config: delivery rules (attempts, backoff, dedup window, log size, naming of published events).
    :param transport: how messages reach the workers; default :class:`InProcessTransport`.
    :param clock: monotonic seconds for the dedup window (injectable for tests).
    :param dead_letters: where dead letters are kept (default: :class:`MemoryDeadLetters`); the bus closes
        it when it stops.
    :param observer: told the counts of accepted, delivered, retried and dead-lettered events (metrics).

    Register targets (:meth:`add_target`, :meth:`subscribe`) then :meth:`start` the workers; events put
    before :meth:`start` wait in their queues. :meth:`join` waits until everything accepted so far is
    finished; :meth:`stop` drains and stops.
    """

    def __init__(self, config: EventsConfig | None = None, *, transport: Transport | None = None,
                 clock: Callable[[], float] = time.monotonic, dead_letters: DeadLetterStore | None = None,
                 observer: DeliveryObserver | None = None, event_log: SqlEventLog | None = None) -> None:
        self.config = config or EventsConfig()
        self.observer: DeliveryObserver = observer or Unobserved()
        self.transport = transport or InProcessTransport()
        # With a shared transport (a broker), another process may deliver what this one sends, and this one
        # what others send: a target counts events when its worker receives them (see Target.accepted).
        self._sent_counts = 0 if self.transport.shared else 1
        self.transport.on_poison(self._dead_letter_poison)  # see Delivering._dead_letter_poison
        self.dead_letter_store: DeadLetterStore = dead_letters or MemoryDeadLetters()
        # With ``event_log``, the log shared by several processes (shared_log.py), written beside the in-memory
        # one and read instead of it; the bus closes it when it stops.
        self.event_log = EventLog(self.config.log_size, event_log)
        self._clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a target's outstanding drops to 0
        self._joining = 0  # join() calls waiting on _idle (changed under the lock)
        self._targets: dict[str, Target] = {}
        self._batches = itertools.count(1)  # Message.batch numbers (next() under the lock)
        self._routes: dict[tuple[str, str], list[Target]] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self._started = False
        self._closed = False

    # --- targets --------------------------------------------------------------------------------------

    def add_target(self, name: str, trigger: EventTrigger | None, handler: Handler, *,
                   kind: TargetKind = "binding", batch: BatchHandler | None = None) -> None:
        """Deliver events matching ``trigger`` (None: only those :meth:`accept` is given it as ``target``) to
        ``handler``.

        ``handler(event)`` runs in the target's worker thread; its return value is recorded, an exception
        is a failed attempt. With ``batch``, first attempts queued together go through ``batch(events)``
        in one call instead (retries always through ``handler``).
        :raises ValueError: ``name`` is already a target.
        """
        with self._lock:
            if name in self._targets:
                raise ValueError(f"event target {name!r} is already registered")
            target = Target(TargetInfo(name, kind, trigger), handler,
                            SeenIds(self.config.dedup_window_seconds, self.config.dedup_max_ids), batch)
            self._targets[name] = target
            if trigger is not None:
                key = (canonical_detail_type(str(trigger.detail_type)), trigger.source)
                self._routes.setdefault(key, []).append(target)
            self.transport.open(name, exclusive=kind == "schedule")
            self._recover(target, self.transport.backlog(name))
            if self._started:
                self._spawn(target)

    def subscribe(self, name: str, trigger: EventTrigger, handler: Callable[[Event], Any]) -> None:
        """A core subscriber (e.g. the tenant registry on ``provisionSuccess``), delivered with the same
        retry, dedup and dead-letter rules as a hook binding; ``name`` is its target name in the log."""
        self.add_target(name, trigger, handler, kind="subscriber")

    def bind(self, table: BindingTable, providers: Providers) -> None:
        """Add a target for every enabled event binding of ``table``: the hook, called on its selected
        provider with the arguments its contract row derives from the event (``event_kwargs``)."""
        for binding in table.events():
            assert isinstance(binding.trigger, EventTrigger)
            self.add_target(binding.hook, binding.trigger, hook_handler(providers, binding.hook),
                            batch=batch_handler(providers, binding.hook))

    def targets(self) -> list[TargetInfo]:
        """Every registered target, in registration order."""
        return [t.info for t in self._targets.values()]

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener(event)`` for every accepted event (after routing; exceptions are logged). For
        observers such as the test recorder; not a delivery target (no retries, no log row)."""
        self._listeners.append(listener)

    # --- putting events -------------------------------------------------------------------------------

    def accept(self, events: Sequence[Event], *, target: str | None = None) -> bool:
        """The one way events enter the bus: log ``events``, dedup them per target and queue one message per
        target — to every target their routes match or, with ``target``, to that one alone (no routing: how
        the scheduler hands a run to its hook). All or nothing: True when every event was accepted (each
        under its own ``id``; with a durable transport, once stored), False when none was because the bus
        has stopped. Never blocks on handlers. An event matching no target is accepted and logged with no
        deliveries (EventBridge does the same).

        The events are not put through the input policy (:mod:`sbt_core.input_policy`) here: ``POST /events``
        does as it parses, :meth:`put_events` and :meth:`publish` do for everyone else.

        :raises NotFoundError: ``target`` is not a registered target (and the bus has not stopped).
        """
        if self._closed:
            return False
        only = None
        if target is not None:
            only = self._targets.get(target)
            if only is None:
                raise NotFoundError(f"no event target named {target!r}")
        received = utcnow()
        now, wall = self._clock(), time.time()
        ids = list(map(_EVENT_ID, events))
        with self._lock:
            event_log = self.event_log
            event_log.apply()
            # What a failed send must restore: the log entries of re-put ids (usually none).
            prior = None if event_log.entries.keys().isdisjoint(ids) else event_log.prior(ids)
            targets = self._uniform_targets(events, ids, only)
            if targets is None:
                messages = self._accept_each(events, only, received, now, wall)
            else:
                messages = self._accept_uniform(events, ids, targets, received, now, wall)
            event_log.trim()
        if messages:
            try:
                self.transport.send(messages)
            except BaseException:
                self._unaccept(ids, prior, messages, now)
                raise
            for message in messages:
                self.observer.accepted(message.target, len(message.events))
        self.event_log.accepted(events, messages, received)
        self._notify(events)
        return True

    def put_events(self, events: Sequence[Event]) -> list[PutEventsEntryResult]:
        """:meth:`accept` PutEvents-like (the :class:`~sbt_core.runtime.contracts.EventBus` method), one result
        per entry in order. An entry the input policy refuses (its names or detail) fails alone with
        ``errorCode`` ``InvalidArgument``, before it is logged or queued; every other entry fails with
        ``BusClosed`` once the bus has stopped.
        """
        refused = {i: problem for i, event in enumerate(events) if (problem := policy_problem(event)) is not None}
        accepted = [event for i, event in enumerate(events) if i not in refused] if refused else events
        if accepted and not self.accept(accepted):
            return [_BUS_CLOSED if i not in refused else _refused(refused[i]) for i in range(len(events))]
        return [_refused(refused[i]) if i in refused else PutEventsEntryResult(event_id=event.id)
                for i, event in enumerate(events)]

    def publish(self, event: Event) -> Event:
        """:meth:`accept` one event published by a provider or core component (what every provider's
        :class:`~sbt_core.provider.ProviderContext` publishes through), its detail type renamed per
        ``[events] naming`` (``sbt_aws`` prefixes the standard names); returns the event as put.

        :raises BadRequestError: the input policy refuses its names or detail.
        :raises SbtError: the bus refused it (stopped).
        """
        problem = policy_problem(event)
        if problem is not None:
            raise BadRequestError(f"event {event.detail_type!r} {event.id}: {problem}")
        named = output_detail_type(event.detail_type, self.config.naming)
        if named != event.detail_type:
            event = attrs.evolve(event, detail_type=named)
        if not self.accept([event]):
            raise SbtError(f"event {event.detail_type} {event.id} not accepted: the event bus has stopped")
        return event

    def _unaccept(self, ids: list[str], prior: Saved | None, messages: list[Message], now: float) -> None:
        """Undo an accept whose messages the transport refused: the batch leaves no log row and no
        remembered id, so a write that failed leaves no trace (and a retry is not taken for a duplicate)."""
        with self._lock:
            self.event_log.restore(dict.fromkeys(ids) | (prior or {}))
            for message in messages:
                target = self._targets.get(message.target)
                if target is None:
                    continue
                added = {event.id for event in message.events}
                target.accepted -= len(message.events) * self._sent_counts
                seen = target.seen
                if seen.enabled:
                    seen.ids.difference_update(added)
                    group = seen.group(now)
                    group[:] = [event_id for event_id in group if event_id not in added]
            self._idle.notify_all()  # a join() waiting on these counts

    def _uniform_targets(self, events: Sequence[Event], ids: list[str], only: Target | None) -> list[Target] | None:
        """(Lock held.) The targets of a batch whose events all go to the same targets and need no per-event
        decision — new distinct ids, unseen by each of those targets — or None when some event needs one, or
        the batch is too small to be worth it."""
        if len(ids) < _UNIFORM_MIN:  # a handful is quicker one by one than through the C-level passes' set-up
            return None
        if len(set(ids)) != len(ids) or not self.event_log.entries.keys().isdisjoint(ids):
            return None  # an id repeated in the batch, or re-put: it keeps its first log entry
        if only is not None:
            targets = [only]
        else:
            keys = set(zip(map(_DETAIL_TYPE, events), map(_SOURCE, events), strict=True))
            if len(keys) != 1:
                return None
            detail_type, source = keys.pop()
            targets = self._routes.get((canonical_detail_type(detail_type), source)) or []
        if any(not target.seen.ids.isdisjoint(ids) for target in targets):
            return None
        return targets

    def _accept_uniform(self, events: Sequence[Event], ids: list[str], targets: list[Target], received: datetime,
                        now: float, wall: float) -> list[Message]:
        """(Lock held.) Accept a batch that :meth:`_uniform_targets` cleared: the whole batch in a few
        C-level passes, all its events sharing one slot per target — and one slots dict (see
        :class:`~.event_log.LogEntry`)."""
        shared: dict[str, Slot] = {}
        messages = []
        accepted, number = tuple(events), next(self._batches)
        for target in targets:
            name, seen = target.info.name, target.seen
            seen.forget(now)
            if seen.enabled:
                seen.ids.update(ids)
                seen.group(now).extend(ids)
            shared[name] = Slot("pending", 0, None, wall, None, number)
            target.accepted += len(accepted) * self._sent_counts
            messages.append(Message(name, accepted, batch=number))
        self.event_log.add_batch(ids, accepted, received, shared)
        return messages

    def _accept_each(self, events: Sequence[Event], only: Target | None, received: datetime, now: float,
                     wall: float) -> list[Message]:
        """(Lock held.) Accept a batch one event at a time: any mix of routes, re-put ids and ids a target
        has already seen (skipped for it)."""
        fixed = None if only is None else [only]
        routes, slots_for = self._routes, self.event_log.slots_for
        number = next(self._batches)
        routed: dict[tuple[str, str], Any] = {}
        # target name -> (target, the shared slot of its events of this batch, those events, where their ids
        # are remembered for dedup or None)
        batches: dict[str, tuple[Target, Slot, list[Event], list[str] | None]] = {}
        for event in events:
            event_id = event.id
            slots = slots_for(event, received)
            targets = fixed
            if targets is None:
                key = (event.detail_type, event.source)
                targets = routed.get(key, _UNSEEN)
                if targets is _UNSEEN:  # a batch mostly repeats a few (detail type, source): look each up once
                    targets = routed[key] = routes.get((canonical_detail_type(key[0]), key[1]))
            if not targets:
                continue
            for target in targets:
                name = target.info.name
                seen = target.seen
                batch = batches.get(name)
                if batch is None:  # this target's first event of the batch
                    seen.forget(now)
                    batch = batches[name] = (target, Slot("pending", 0, None, wall, None, number), [],
                                             seen.group(now) if seen.enabled else None)
                if event_id in seen.ids:
                    if name not in slots:  # the first delivery's row fell out of the log: say why it is skipped
                        slots[name] = Slot("skipped_duplicate", 0, None, wall)
                    continue
                remembered = batch[3]
                if remembered is not None:
                    seen.ids.add(event_id)
                    remembered.append(event_id)
                slots[name] = batch[1]
                batch[2].append(event)
        messages = []
        for name, (target, _, accepted, _) in batches.items():
            if accepted:
                target.accepted += len(accepted) * self._sent_counts
                messages.append(Message(name, accepted, batch=number))
        return messages

    def _notify(self, events: Sequence[Event]) -> None:
        for listener in self._listeners:
            for event in events:
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener %r failed", listener)

    # --- reading --------------------------------------------------------------------------------------

    def get(self, event_id: str) -> EventRecord | None:
        """The event log entry of ``event_id``, or None when unknown or fallen out of the log."""
        if self.event_log.shared is not None:
            return self.event_log.shared.get(event_id)
        with self._lock:
            return self.event_log.get(event_id)

    def recent(self, limit: int = 50) -> list[EventRecord]:
        """The most recent events, newest first (at most ``limit``)."""
        if self.event_log.shared is not None:
            return self.event_log.shared.recent(limit)
        with self._lock:
            return self.event_log.recent(limit)

    def logged(self) -> int:
        """How many events the event log holds (what :meth:`recent` can show at most)."""
        with self._lock:
            return len(self.event_log)

    def busy(self, target: str) -> bool:
        """Whether ``target`` has an event queued, running or waiting to retry."""
        with self._lock:
            found = self._targets.get(target)
            return bool(found and found.outstanding)

    def queue_stats(self) -> list[tuple[str, int, float]]:
        """Per target: ``(name, outstanding, oldest_age_seconds)`` — events queued, running or waiting to
        retry, and how long ago the oldest of them was accepted (0.0 with none). The age is read from the
        event log, oldest entry first; a backlog longer than ``log_size`` shows the oldest logged one."""
        with self._lock:
            self.event_log.apply()
            outstanding = {name: t.outstanding for name, t in self._targets.items()}
            waiting = {name for name, count in outstanding.items() if count > 0}
            oldest = self.event_log.oldest_waiting(waiting) if waiting else {}
        now = time.time()
        return [(name, count, max(0.0, now - oldest[name]) if name in oldest else 0.0)
                for name, count in outstanding.items()]

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start one worker thread per target (after the start-up check of the dead letters: those holding
        values an answer cannot carry are logged with their ids); idempotent."""
        with self._lock:
            if self._started:
                return
            self._started = True
            targets = list(self._targets.values())
        input_policy.report_unanswerable("dead letters", (
            (f"{letter.event.id} ({letter.target})", to_json(letter)) for letter in self.dead_letter_store.select()))
        self._dead_letter_stranded()
        for target in targets:
            self._spawn(target)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted so far is finished (delivered, dead-lettered or skipped), retries
        included; True when idle, False on timeout. Needs :meth:`start` to make progress."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            self._joining += 1
            try:
                while any(t.outstanding > 0 for t in self._targets.values()):
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._idle.wait(remaining)
                return True
            finally:
                self._joining -= 1

    def stop(self, timeout: float | None = None) -> bool:
        """Graceful shutdown: wait up to ``timeout`` seconds (default ``drain_timeout_seconds``) for
        in-flight events — handlers may still publish follow-up events meanwhile — then refuse new
        events and stop the workers. Returns False when the drain timed out: what the transport still
        held (queued, or waiting to retry) is then dead-lettered, so a replay after a restart delivers it."""
        if self._closed:
            return True
        if timeout is None:
            timeout = self.config.drain_timeout_seconds
        drained = self.join(timeout) if self._started else True
        self._closed = True
        if not drained:
            with self._lock:
                left = {n: t.outstanding for n, t in self._targets.items() if t.outstanding}
            log.warning("event bus stopped before draining: %s", ", ".join(f"{n}={c}" for n, c in left.items()))
        self.transport.close()
        for target in self._targets.values():
            if target.thread is not None and target.thread is not threading.current_thread():
                target.thread.join(timeout=1.0)
        self._dead_letter_undelivered()
        self.dead_letter_store.close()
        if self.event_log.shared is not None:
            self.event_log.shared.close()
        return drained

    def health_problems(self) -> list[str]:
        """What keeps this bus from working, for ``/health``: its transport's broker and its dead-letter
        database, when they have a ``check()`` (None when reachable); empty when all is well."""
        checks = (getattr(self.transport, "check", None), getattr(self.dead_letter_store, "check", None))
        return [problem for check in checks if check is not None and (problem := check()) is not None]

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def durable(self) -> bool:
        """Whether accepted events outlive this process (the transport's ``durable``): then accepting
        waits until they are stored, and an event loop calls :meth:`accept` from a thread."""
        return self.transport.durable

