"""The event bus: EventBridge-like routing with at-least-once delivery per target (docs/design.md section 3).

A *target* is one consumer of events with its own queue and worker thread: a hook binding (named by the
hook), a core subscriber (named by the registering component) or a schedule (named by its hook). An
accepted event is routed by its bare detail type *and* source to every matching target, recorded in the
event log, and delivered to each target independently:

- at least once, with up to ``EventsConfig.max_attempts`` attempts; a retryable failure (an
  :class:`SbtError` whose ``retryable`` is True, or any unexpected exception) waits a random
  exponential backoff (tenacity's full jitter) and is tried again; a non-retryable SbtError
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

Beside this module: ``handlers.py`` turns a binding's hook into what a target runs and says which
failures are retried; ``_log.py`` holds the log's rows, ``_dedup.py`` the ids each target has seen;
``transport.py`` is the seam messages cross between a publisher and a target's worker (``sqlite_transport.py``
its durable implementation, whose un-acked messages a restart delivers again: :meth:`Bus.add_target` counts
and logs them, :meth:`Bus.start` dead-letters those of targets no longer registered), ``dead_letters.py``
the one dead letters are kept behind.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs
from tenacity import RetryCallState, Retrying, wait_random_exponential

from ... import input_policy
from ...config import EventsConfig
from ...errors import BadRequestError, NotFoundError, ProviderError, SbtError
from ...models import Event, canonical_detail_type, output_detail_type, to_json, utcnow
from ...triggers import EventTrigger
from ..logs import delivery_fields
from ..seams import DeliveryState, EventRecord, PutEventsEntryResult
from ._dedup import SeenIds
from ._log import LogEntry, Slot, new_log_entry
from .dead_letters import DeadLetter, DeadLetterStore, MemoryDeadLetters
from .handlers import BatchHandler, Handler, batch_handler, error_text, hook_handler, is_retryable, result_json
from .shared_log import SqlEventLog
from .transport import InProcessTransport, Message, Transport

if TYPE_CHECKING:
    from ...bindings import BindingTable
    from ...plugins import Providers

__all__ = ["Bus", "DeadLetter", "DeadLetterReason", "DeliveryObserver", "TargetInfo"]

log = logging.getLogger("sbt.bus")

#: Messages a worker takes from its queue per wake-up.
_BURST = 256
TargetKind = Literal["binding", "subscriber", "schedule"]
_UNSEEN: Any = object()
#: Batches of at least this many events may be accepted as one (Bus._accept_uniform).
_UNIFORM_MIN = 8
_EVENT_ID, _DETAIL_TYPE, _SOURCE = attrgetter("id"), attrgetter("detail_type"), attrgetter("source")
#: The answer for an event offered to a stopped bus (a frozen record: one instance serves every entry).
_BUS_CLOSED = PutEventsEntryResult(error_code="BusClosed", error_message="the event bus has stopped")


#: Why an event was dead-lettered, as :class:`DeliveryObserver` is told.
DeadLetterReason = Literal["refused", "retries_exhausted", "internal_error", "stopped", "poison"]


class DeliveryObserver(Protocol):
    """Told how many events each target accepted, delivered, retried and dead-lettered (the control plane's
    :class:`~sbt_core.runtime.metrics.Metrics`). Called from publishers and workers, per message, not per
    event; must be quick and thread-safe."""

    def accepted(self, binding: str, count: int) -> None: ...

    def delivered(self, binding: str, count: int) -> None: ...

    def retried(self, binding: str, count: int) -> None: ...

    def dead_lettered(self, binding: str, reason: DeadLetterReason, count: int = 1) -> None: ...


class _Unobserved:
    def accepted(self, binding: str, count: int) -> None:
        pass

    def delivered(self, binding: str, count: int) -> None:
        pass

    def retried(self, binding: str, count: int) -> None:
        pass

    def dead_lettered(self, binding: str, reason: DeadLetterReason, count: int = 1) -> None:
        pass


def policy_problem(event: Event) -> str | None:
    """``"<field>: <why>"`` when the input policy refuses ``event``'s names or detail, else None."""
    for field, name in (("source", event.source), ("detail-type", event.detail_type), ("id", event.id)):
        problem = input_policy.name_problem(name)
        if problem is not None:
            return f"{field}: {problem}"
    return input_policy.detail_problem(event.detail)


def _refused(problem: str) -> PutEventsEntryResult:
    return PutEventsEntryResult(error_code="InvalidArgument", error_message=problem)


@attrs.frozen
class TargetInfo:
    """What ``sbt`` knows of a target: its name, kind and the trigger routing events to it (None for a
    schedule target, which only receives direct sends)."""

    name: str
    kind: TargetKind
    trigger: EventTrigger | None


@attrs.define(slots=True)
class _Target:
    info: TargetInfo
    handler: Handler
    seen: SeenIds
    batch: BatchHandler | None = None  # takes a burst of first attempts in one call (see batch_handler)
    # Events accepted (written by publishers, under the bus lock; with a shared transport, by the target's
    # worker on receipt, under the lock) and finished (delivered or dead-lettered;
    # written only by the target's own worker thread, without the lock): the difference is what is queued,
    # running or waiting to retry.
    accepted: int = 0
    finished: int = 0
    thread: threading.Thread | None = None

    @property
    def outstanding(self) -> int:
        return self.accepted - self.finished


def _ids(events: Sequence[Event]) -> str:
    """Event ids for a log line: all of a few, or the first ones and how many more."""
    shown = ", ".join(e.id for e in events[:3])
    return shown if len(events) <= 3 else f"{shown} and {len(events) - 3} more"


class Bus:
    """The control plane's event bus (implements :class:`sbt_core.runtime.seams.EventBus`).

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
        self.observer: DeliveryObserver = observer or _Unobserved()
        self.transport = transport or InProcessTransport()
        # With a shared transport (a broker), another process may deliver what this one sends, and this one
        # what others send: a target counts events when its worker receives them (see _Target.accepted).
        self._sent_counts = 0 if self.transport.shared else 1
        self.transport.on_poison(self._dead_letter_poison)
        self.dead_letter_store: DeadLetterStore = dead_letters or MemoryDeadLetters()
        # The log shared by several processes (shared_log.py), written beside the in-memory one and read
        # instead of it; the bus closes it when it stops.
        self.shared_log = event_log
        self._clock = clock
        self._wait = wait_random_exponential(multiplier=self.config.backoff_base_seconds,
                                             max=self.config.backoff_max_seconds)
        self._retrying = Retrying()  # only so a RetryCallState can be built for the wait strategy
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a target's outstanding drops to 0
        self._joining = 0  # join() calls waiting on _idle (changed under the lock)
        # Outcomes recorded by the workers, applied to the log and the dead-letter store under the lock by
        # whoever next reads or writes them (_apply_outcomes). A worker never takes the lock on its hot path:
        # with the interpreter lock, a worker waiting for a lock held by a publisher (or the reverse) costs
        # a thread hand-off per event; that convoy tripled the cost of publishing one event at a time.
        self._outcomes: deque[Callable[[], None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._batches = itertools.count(1)  # Message.batch numbers (next() under the lock)
        self._routes: dict[tuple[str, str], list[_Target]] = {}
        # Oldest first, as dicts keep insertion order; a plain dict is half the cost of an OrderedDict per
        # accepted event (trimmed a batch at a time, see _trim_log).
        self._log: dict[str, LogEntry] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self._started = False
        self._closed = False

    # --- targets --------------------------------------------------------------------------------------

    def add_target(self, name: str, trigger: EventTrigger | None, handler: Handler, *,
                   kind: TargetKind = "binding", batch: BatchHandler | None = None) -> None:
        """Deliver events matching ``trigger`` (None: only :meth:`send` to it by name) to ``handler``.

        ``handler(event)`` runs in the target's worker thread; its return value is recorded, an exception
        is a failed attempt. With ``batch``, first attempts queued together go through ``batch(events)``
        in one call instead (retries always through ``handler``).
        :raises ValueError: ``name`` is already a target.
        """
        with self._lock:
            if name in self._targets:
                raise ValueError(f"event target {name!r} is already registered")
            target = _Target(TargetInfo(name, kind, trigger), handler,
                             SeenIds(self.config.dedup_window_seconds, self.config.dedup_max_ids), batch)
            self._targets[name] = target
            if trigger is not None:
                key = (canonical_detail_type(str(trigger.detail_type)), trigger.source)
                self._routes.setdefault(key, []).append(target)
            self.transport.open(name, exclusive=kind == "schedule")
            self._recover(target, self.transport.backlog(name))
            if self._started:
                self._spawn(target)

    def _recover(self, target: _Target, messages: list[Message]) -> None:
        """(Lock held.) Count and log the messages an earlier process left un-acked for ``target``, which a
        durable transport hands out again: pending (or retrying) rows, their ids remembered for dedup (a
        client resending what was accepted before the crash is not delivered twice)."""
        if not messages:
            return
        name, seen, now, wall = target.info.name, target.seen, self._clock(), time.time()
        if seen.enabled:
            seen.forget(now)
        top = 0
        for message in messages:
            ids = [event.id for event in message.events]
            if seen.enabled:
                seen.ids.update(ids)
                seen.group(now).extend(ids)
            slot = Slot("pending" if message.attempt == 1 else "retrying", message.attempt - 1, None, wall, None,
                        message.batch)
            for event in message.events:
                self._put_slot(event, name, slot)  # one slot per message, as when it was accepted
            target.accepted += len(message.events)
            top = max(top, message.batch)
        # New batches are numbered past the recovered ones, whose rows _mark_delivered finds by number.
        self._batches = itertools.count(max(top + 1, next(self._batches)))
        log.info("%d event(s) in %d message(s) to %s left undelivered by the last run: delivering them again",
                 sum(len(m.events) for m in messages), len(messages), name)

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

    def put_events(self, events: Sequence[Event]) -> list[PutEventsEntryResult]:
        """Accept a batch (PutEvents-like), one result per entry in order. Never blocks on handlers.

        An event matching no target is accepted and logged with no deliveries (EventBridge does the
        same). Each entry fails alone with ``errorCode`` ``BusClosed`` once the bus has stopped, and with
        ``InvalidArgument`` when the input policy (:mod:`sbt_core.input_policy`) refuses its names or
        detail — before it is logged or queued.
        """
        refused = {i: problem for i, event in enumerate(events) if (problem := policy_problem(event)) is not None}
        accepted = [event for i, event in enumerate(events) if i not in refused] if refused else events
        if accepted and not self.accept_batch(accepted):
            return [_BUS_CLOSED if i not in refused else _refused(refused[i]) for i in range(len(events))]
        return [_refused(refused[i]) if i in refused else PutEventsEntryResult(event_id=event.id)
                for i, event in enumerate(events)]

    def accept_batch(self, events: Sequence[Event]) -> bool:
        """:meth:`put_events` without the per-entry result records: True when every event was accepted
        (each under its own ``id``), False when none was because the bus has stopped. ``POST /events``
        uses it to answer a hundred entries without building a hundred records first, having put each
        entry through the input policy as it parsed it (so this does not again)."""
        return self._accept(events)

    def _accept(self, events: Sequence[Event], only: _Target | None = None) -> bool:
        """Log ``events``, dedup them per target and queue one message per target: to every target their
        route matches, or to ``only`` (:meth:`send`). False, accepting nothing, once the bus has stopped."""
        if self._closed:
            return False
        received = utcnow()
        now, wall = self._clock(), time.time()
        ids = list(map(_EVENT_ID, events))
        with self._lock:
            self._apply_outcomes()
            # What a failed send must restore: the log entries of re-put ids (usually none).
            log_ = self._log
            prior = None if log_.keys().isdisjoint(ids) else {i: log_[i] for i in ids if i in log_}
            targets = self._uniform_targets(events, ids, only)
            if targets is None:
                messages = self._accept_each(events, only, received, now, wall)
            else:
                messages = self._accept_uniform(events, ids, targets, received, now, wall)
            self._trim_log()
        if messages:
            try:
                self.transport.send(messages)
            except BaseException:
                self._unaccept(ids, prior, messages, now)
                raise
            for message in messages:
                self.observer.accepted(message.target, len(message.events))
        if self.shared_log is not None:
            self.shared_log.accepted(events, messages, received)
        self._notify(events)
        return True

    def _unaccept(self, ids: list[str], prior: dict[str, LogEntry] | None, messages: list[Message],
                  now: float) -> None:
        """Undo an accept whose messages the transport refused: the batch leaves no log row and no
        remembered id, so a write that failed leaves no trace (and a retry is not taken for a duplicate)."""
        with self._lock:
            for event_id in ids:
                entry = prior.get(event_id) if prior is not None else None
                if entry is None:
                    self._log.pop(event_id, None)
                else:
                    self._log[event_id] = entry
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

    def _uniform_targets(self, events: Sequence[Event], ids: list[str], only: _Target | None) -> list[_Target] | None:
        """(Lock held.) The targets of a batch whose events all go to the same targets and need no per-event
        decision — new distinct ids, unseen by each of those targets — or None when some event needs one, or
        the batch is too small to be worth it."""
        if len(ids) < _UNIFORM_MIN:  # a handful is quicker one by one than through the C-level passes' set-up
            return None
        if len(set(ids)) != len(ids) or not self._log.keys().isdisjoint(ids):
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

    def _accept_uniform(self, events: Sequence[Event], ids: list[str], targets: list[_Target], received: datetime,
                        now: float, wall: float) -> list[Message]:
        """(Lock held.) Accept a batch that :meth:`_uniform_targets` cleared: the whole batch in a few
        C-level passes, all its events sharing one slot per target — and one slots dict (see :class:`LogEntry`)."""
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
            messages.append(Message.first(name, accepted, number))
        self._log.update(zip(ids, map(new_log_entry, zip(accepted, repeat(received), repeat(shared))), strict=True))
        return messages

    def _accept_each(self, events: Sequence[Event], only: _Target | None, received: datetime, now: float,
                     wall: float) -> list[Message]:
        """(Lock held.) Accept a batch one event at a time: any mix of routes, re-put ids and ids a target
        has already seen (skipped for it)."""
        fixed = None if only is None else [only]
        routes, log_ = self._routes, self._log
        number = next(self._batches)
        routed: dict[tuple[str, str], Any] = {}
        # target name -> (target, the shared slot of its events of this batch, those events, where their ids
        # are remembered for dedup or None)
        batches: dict[str, tuple[_Target, Slot, list[Event], list[str] | None]] = {}
        for event in events:
            event_id = event.id
            entry = log_.get(event_id)
            if entry is None:
                slots: dict[str, Slot] = {}
                log_[event_id] = LogEntry(event, received, slots)
            else:  # a re-put id keeps its first log entry (and its first envelope); its slots dict may be shared
                slots = dict(entry.slots)
                log_[event_id] = entry._replace(slots=slots)
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
                messages.append(Message.first(name, tuple(accepted), number))
        return messages

    def send(self, target: str, event: Event) -> PutEventsEntryResult:
        """Deliver ``event`` to the one target named ``target`` (no routing), with the same log, dedup,
        retry and dead-letter rules: how the scheduler hands a run to its hook.

        :raises NotFoundError: no such target.
        """
        if self._closed:
            return _BUS_CLOSED
        found = self._targets.get(target)
        if found is None:
            raise NotFoundError(f"no event target named {target!r}")
        return PutEventsEntryResult(event_id=event.id) if self._accept([event], only=found) else _BUS_CLOSED

    def publish(self, event: Event) -> Event:
        """Put one event published by a provider or core component, its detail type renamed per
        ``[events] naming`` (``sbt_aws`` prefixes the standard names); returns the event as put.

        This is the sink attached to every provider's :class:`~sbt_core.provider.ProviderContext`.
        :raises BadRequestError: the input policy refuses its names or detail.
        :raises SbtError: the bus refused it (stopped).
        """
        problem = policy_problem(event)
        if problem is not None:
            raise BadRequestError(f"event {event.detail_type!r} {event.id}: {problem}")
        named = output_detail_type(event.detail_type, self.config.naming)
        if named != event.detail_type:
            event = attrs.evolve(event, detail_type=named)
        if not self.accept_batch([event]):
            raise SbtError(f"event {event.detail_type} {event.id} not accepted: the event bus has stopped")
        return event

    def sink(self, event: Event) -> None:
        """:meth:`publish` without the return value: what ``Providers.attach`` takes as the event sink."""
        self.publish(event)

    def _put_slot(self, event: Event, target: str, slot: Slot) -> None:
        """(Lock held.) Give ``event``'s log entry ``slot`` for ``target``, in a slots dict of its own (the
        one it had may be shared with its batch-mates); an event no longer in the log is logged again."""
        log_ = self._log
        entry = log_.get(event.id)
        if entry is None:
            log_[event.id] = LogEntry(event, utcnow(), {target: slot})
            self._trim_log()
        else:
            log_[event.id] = entry._replace(slots={**entry.slots, target: slot})

    def _trim_log(self) -> None:
        """(Lock held.) Forget the oldest log entries beyond ``log_size``: the first keys, collected in one
        pass (a dict's iteration skips the slots its deletions left, so popping one at a time rescans them)."""
        log_ = self._log
        excess = len(log_) - self.config.log_size
        if excess > 0:
            for key in list(itertools.islice(log_, excess)):
                del log_[key]

    def _notify(self, events: Sequence[Event]) -> None:
        for listener in self._listeners:
            for event in events:
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener %r failed", listener)

    # --- delivering -----------------------------------------------------------------------------------

    def _spawn(self, target: _Target) -> None:
        thread = threading.Thread(target=self._work, args=(target,), name=f"sbt-bus-{target.info.name}", daemon=True)
        target.thread = thread
        thread.start()

    def _work(self, target: _Target) -> None:
        name = target.info.name
        while True:
            # A burst is taken with one wake-up. First attempts go through the batch handler together
            # when the target has one; the rest one event at a time, each outcome recorded as soon as its
            # handler returns (GET /events shows it at once).
            messages = self.transport.receive_many(name, _BURST)
            if not messages:
                return
            if not self._sent_counts:
                with self._lock:
                    target.accepted += sum(len(m.events) for m in messages)
            if target.batch is not None:
                firsts = [m for m in messages if m.attempt == 1]
                if sum(len(m.events) for m in firsts) > 1:
                    self._guarded(target, firsts, self._deliver_batch)
                    messages = [m for m in messages if m.attempt > 1]
            for message in messages:
                self._guarded(target, [message], self._deliver_each)

    def _guarded(self, target: _Target, messages: list[Message],
                 deliver: Callable[[_Target, list[Message], set[int]], None]) -> None:
        """``deliver(target, messages, settled)``, which adds the ``id()`` of each message to ``settled`` as
        soon as it is settled. A bug in it must not kill the worker and strand the queue: the messages it
        had not settled are dead-lettered (:meth:`_internal_error`), each settled message counted once."""
        settled: set[int] = set()
        try:
            deliver(target, messages, settled)
        except Exception as exc:  # noqa: BLE001
            for message in messages:
                if id(message) not in settled:
                    self._internal_error(target, message, exc)

    def _later(self, record: Callable[..., None], *args: Any) -> None:
        """Record an outcome (``record(*args)``, a method writing the log under the lock) without taking
        the lock: it is applied, in order, by :meth:`_apply_outcomes`."""
        self._outcomes.append(functools.partial(record, *args))
        shared = self.shared_log
        if shared is not None:
            if record == self._set:
                shared.outcome(*args)
            elif record == self._mark_delivered:
                target, events, _, now = args
                shared.delivered(target, events, now)

    def _apply_outcomes(self) -> None:
        # Lock held. deque.popleft is atomic, so workers may keep appending meanwhile.
        outcomes = self._outcomes
        while outcomes:
            outcomes.popleft()()

    def _finished(self, target: _Target, count: int) -> None:
        """The worker of ``target`` is done with ``count`` more events (only that thread writes
        ``finished``); wakes :meth:`join` when nothing is left."""
        if count:
            target.finished += count
            # Only a waiting join() needs waking. join() counts itself in before it reads ``finished`` and
            # this reads the count after writing ``finished``, so one of the two always sees the other.
            if self._joining and target.finished == target.accepted:
                with self._idle:
                    self._idle.notify_all()

    def _deliver_each(self, target: _Target, messages: list[Message], settled: set[int]) -> None:
        """Every event of ``messages`` through the single handler, in order, each recorded at once."""
        handler, name = target.handler, target.info.name
        for message in messages:
            attempt = message.attempt
            failures: list[tuple[Event, Exception]] = []
            for event in message.events:
                if attempt > 1:  # a retry: its row goes back to pending while it runs
                    self._later(self._set, event.id, name, "pending", attempt - 1, None, None, time.time())
                try:
                    result = handler(event)
                except Exception as exc:  # noqa: BLE001 - every failure is recorded: retried or dead-lettered
                    failures.append((event, exc))
                    continue
                if result is None and attempt == 1 and len(message.events) == 1:
                    # its slot is its alone (a slot is shared by one message's events): written in place
                    self._later(self._mark_delivered, name, message.events, message.batch, time.time())
                else:
                    self._later(self._set, event.id, name, "delivered", attempt, None,
                                None if result is None else result_json(result), time.time())
            self._settle(target, message, failures, settled)

    def _deliver_batch(self, target: _Target, messages: list[Message], settled: set[int]) -> None:
        """First attempts of ``messages`` through the target's batch handler in one call, each outcome
        recorded as if delivered alone. If the call fails as a whole, each event goes through the single
        handler instead (the provider dedups by identifier, so what the failed call recorded is not
        counted twice)."""
        assert target.batch is not None
        events = [event for message in messages for event in message.events]
        try:
            outcomes = target.batch(events)
        except Exception as exc:  # noqa: BLE001 - fall back to one at a time, with the usual retries
            log.warning("batch delivery of %d events to %s failed, delivering one at a time: %s", len(events),
                        target.info.name, error_text(exc))
            self._deliver_each(target, messages, settled)
            return
        if len(outcomes) != len(events):
            raise ProviderError(f"the batch handler of {target.info.name} answered {len(outcomes)} outcomes for "
                                f"{len(events)} events")
        name, now, i = target.info.name, time.time(), 0
        for message in messages:
            n = len(message.events)
            mine = outcomes[i:i + n]
            i += n
            if not any(mine):  # the usual case: all delivered
                self._later(self._mark_delivered, name, message.events, message.batch, now)
                self._settle(target, message, [], settled)
            else:
                failures = [(e, o) for e, o in zip(message.events, mine, strict=True) if o is not None]
                # The failed ones get a slot of their own first, so the shared slot left behind is exactly
                # the delivered ones'.
                for event, failure in failures:
                    self._later(self._set, event.id, name, "pending", 1, error_text(failure), None, now)
                delivered = [e for e, o in zip(message.events, mine, strict=True) if o is None]
                self._later(self._mark_delivered, name, delivered, message.batch, now)
                self._settle(target, message, failures, settled)

    def _mark_delivered(self, target: str, events: Sequence[Event], batch: int, now: float) -> None:
        """(Lock held.) Record first attempts ``events`` of one message of batch number ``batch``,
        delivered together, as delivered.

        They share one slot (see :class:`Slot`), so one write records them all: the slot is found
        through the newest of them still in the log (the log forgets the oldest first) whose row is
        still that batch's. An event re-put since (no dedup, or its id forgotten) has a row following
        its new delivery: marking that one would show the new batch delivered early and leave this
        one's rows pending for good.
        """
        log_ = self._log
        for event in reversed(events):
            entry = log_.get(event.id)
            if entry is not None:
                slot = entry.slots.get(target)
                if slot is not None and slot.batch == batch:
                    slot.state, slot.attempts, slot.updated, slot.result = "delivered", 1, now, None
                    return

    def _settle(self, target: _Target, message: Message, failures: list[tuple[Event, Exception]],
                settled: set[int]) -> None:
        """``message`` is handled (its delivered events recorded); ``failures`` are its events that failed
        this attempt. The retryable ones go back on the transport together, as one message after one
        backoff; the others are dead-lettered. Every other event of the message is finished, the message
        is added to ``settled`` (see :meth:`_guarded`) and acked."""
        name, attempt = target.info.name, message.attempt
        retry: list[tuple[Event, str]] = []
        dead: list[DeadLetter] = []
        refused = 0
        for event, exc in failures:
            retryable = is_retryable(exc)
            if retryable and attempt < self.config.max_attempts:
                retry.append((event, error_text(exc)))
            else:
                dead.append(DeadLetter(event, name, attempt, error_text(exc), utcnow()))
                refused += not retryable
        # Before anything is recorded or sent: should it fail, the message is still unsettled and
        # _internal_error dead-letters it rather than leave it counted and stranded.
        delay = self._backoff(attempt) if retry else 0.0
        now = time.time()
        for event, error in retry:
            self._later(self._set, event.id, name, "retrying", attempt, error, None, now)
        if dead:
            self._dead_letter(dead, now)
        if retry:
            self.transport.send([Message(name, [event for event, _ in retry], attempt + 1)], delay=delay)
        observer = self.observer
        observer.delivered(name, len(message.events) - len(failures))
        observer.retried(name, len(retry))
        if refused:
            observer.dead_lettered(name, "refused", refused)
        if len(dead) > refused:
            observer.dead_lettered(name, "retries_exhausted", len(dead) - refused)
        # Logged before the events count as finished: a join() waiting on them then finds the line written.
        if retry:
            retried = [event for event, _ in retry]
            log.warning("%d event(s) %s to %s failed (attempt %d of %d), retrying in %.2fs: %s", len(retry),
                        _ids(retried), name, attempt, self.config.max_attempts, delay, retry[0][1],
                        extra=delivery_fields(name, [e.id for e in retried]))
        if dead:  # one line per message, as for retries: a refused batch must not flood the log
            errors = {letter.last_error for letter in dead}
            log.error("%d event(s) %s to %s dead-lettered after %d attempt(s): %s%s", len(dead),
                      _ids([letter.event for letter in dead]), name, attempt, dead[0].last_error,
                      f" (and {len(errors) - 1} other error(s); sbt events dlq list shows each)" if len(errors) > 1
                      else "", extra=delivery_fields(name, [letter.event.id for letter in dead]))
        elif not retry and log.isEnabledFor(logging.DEBUG):
            log.debug("%d event(s) %s delivered to %s (attempt %d)", len(message.events), _ids(message.events), name,
                      attempt, extra=delivery_fields(name, [e.id for e in message.events]))
        # Settled from here: the retried events now belong to the retry message, which counts them (with a
        # shared transport, whichever process receives it).
        self._finished(target, len(message.events) - len(retry) * self._sent_counts)
        settled.add(id(message))
        if self.shared_log is not None:
            # Before the ack: once acked, no process delivers the message again, so a crash after it must not
            # lose the record of its delivery (a database write per message, only with a shared log).
            self.shared_log.flush()
        self.transport.ack(message)

    def _dead_letter(self, letters: list[DeadLetter], now: float) -> None:
        """Keep ``letters`` in the store at once, together (from the worker, so a durable store has them
        before their events count as finished) and record their log rows as every outcome is recorded
        (:meth:`_later`)."""
        self.dead_letter_store.add(letters)
        for letter in letters:
            self._later(self._set, letter.event.id, letter.target, "dead_lettered", letter.attempts,
                        letter.last_error, None, now)

    def _internal_error(self, target: _Target, message: Message, exc: Exception) -> None:
        """A bug in the bus while delivering ``message``, which was not settled: dead-letter its events
        so they are visible and can be replayed, rather than left "pending" forever."""
        name = target.info.name
        log.exception("bus worker of %s failed on events %s", name, _ids(message.events), exc_info=exc,
                      extra=delivery_fields(name, [e.id for e in message.events]))
        error = f"internal error while delivering: {error_text(exc)}"
        now = time.time()
        when = utcnow()
        self._dead_letter([DeadLetter(event, name, message.attempt, error, when) for event in message.events], now)
        self.observer.dead_lettered(name, "internal_error", len(message.events))
        self.transport.ack(message)
        self._finished(target, len(message.events))

    def _backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (tenacity's random exponential, full jitter)."""
        state = RetryCallState(self._retrying, None, (), {})
        state.attempt_number = attempt
        return float(self._wait(state))

    def _set(self, event_id: str, target: str, state: DeliveryState, attempts: int, error: str | None,
             result: Any = None, when: float | None = None) -> None:
        # Lock held. A new slot rather than an update: the old one may be shared with batch-mates. An event
        # fallen out of the log has no row to update; the dead-letter store keeps failures.
        entry = self._log.get(event_id)
        if entry is None:
            return
        old = entry.slots.get(target)
        # a delivered slot keeps the error of the attempt before, for the record
        last_error = error if error is not None else (old.last_error if old is not None else None)
        self._put_slot(entry.event, target,
                       Slot(state, attempts, last_error, time.time() if when is None else when, result))

    # --- reading --------------------------------------------------------------------------------------

    def get(self, event_id: str) -> EventRecord | None:
        """The event log entry of ``event_id``, or None when unknown or fallen out of the log."""
        if self.shared_log is not None:
            return self.shared_log.get(event_id)
        with self._lock:
            self._apply_outcomes()
            entry = self._log.get(event_id)
            return entry.freeze() if entry else None

    def recent(self, limit: int = 50) -> list[EventRecord]:
        """The most recent events, newest first (at most ``limit``)."""
        if self.shared_log is not None:
            return self.shared_log.recent(limit)
        out: list[EventRecord] = []
        with self._lock:
            self._apply_outcomes()
            for event_id in reversed(self._log):
                if len(out) >= limit:
                    break
                out.append(self._log[event_id].freeze())
        return out

    def logged(self) -> int:
        """How many events the event log holds (what :meth:`recent` can show at most)."""
        with self._lock:
            return len(self._log)

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
            self._apply_outcomes()
            outstanding = {name: t.outstanding for name, t in self._targets.items()}
            waiting = {name for name, count in outstanding.items() if count > 0}
            oldest: dict[str, float] = {}
            if waiting:
                for entry in self._log.values():
                    for name, slot in entry.slots.items():
                        if name in waiting and name not in oldest and slot.state in ("pending", "retrying"):
                            oldest[name] = entry.received.timestamp()
                    if len(oldest) == len(waiting):
                        break
        now = time.time()
        return [(name, count, max(0.0, now - oldest[name]) if name in oldest else 0.0)
                for name, count in outstanding.items()]

    def dead_letters(self, *, event_id: str | None = None, target: str | None = None) -> list[DeadLetter]:
        """The dead-letter store, oldest first, optionally only one event's and/or one target's."""
        return self.dead_letter_store.select(event_id, target)

    def replay(self, *, event_id: str | None = None, target: str | None = None) -> list[DeadLetter]:
        """Deliver dead letters again — each only to the target that failed it, bypassing dedup, with a
        fresh set of attempts — and remove them from the store. Filters as :meth:`dead_letters`; none
        given replays everything. Returns what was replayed: a letter whose target is gone (config changed)
        stays in the store, and one that another replay claimed first is that replay's to deliver.

        :raises NotFoundError: a filter was given and matches no dead letter.
        """
        if self._closed:
            raise SbtError("the event bus has stopped")
        chosen = self.dead_letter_store.select(event_id, target)
        if not chosen and (event_id or target):
            what = " and ".join(f"{k} {v!r}" for k, v in (("event", event_id), ("target", target)) if v)
            raise NotFoundError(f"no dead letter for {what}")
        # Claimed before anything is queued, outside the bus lock (a database may make it wait).
        mine = self.dead_letter_store.claim([d.key for d in chosen if d.target in self._targets])
        claimed = [d for d in chosen if d.key in mine]
        messages = []
        with self._lock:
            self._apply_outcomes()
            number = next(self._batches)
            before = {letter.event.id: self._log.get(letter.event.id) for letter in claimed}
            for letter in claimed:
                found = self._targets[letter.target]
                self._put_slot(letter.event, letter.target,
                               Slot("pending", 0, letter.last_error, time.time(), None, number))
                found.accepted += self._sent_counts
                messages.append(Message(letter.target, letter.event, batch=number))
        if messages:
            try:
                self.transport.send(messages, dedup=False)
            except BaseException as exc:  # e.g. the bus stopped meanwhile: the letters go back as they were
                with self._lock:
                    for letter in claimed:
                        self._targets[letter.target].accepted -= self._sent_counts
                        entry = before[letter.event.id]
                        if entry is None:
                            self._log.pop(letter.event.id, None)
                        else:
                            self._log[letter.event.id] = entry
                self.dead_letter_store.add(claimed)
                if isinstance(exc, RuntimeError):
                    raise SbtError("the event bus has stopped") from None
                raise
            for message in messages:
                self.observer.accepted(message.target, len(message.events))
            if self.shared_log is not None:
                now = time.time()
                self.shared_log.accepted([d.event for d in claimed], [], utcnow())
                for letter in claimed:
                    self.shared_log.outcome(letter.event.id, letter.target, "pending", 0, letter.last_error, None, now)
        return claimed

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

    def _dead_letter_stranded(self) -> None:
        """Dead-letter what a durable transport still holds for targets no longer registered (a binding
        removed from the config since its events were queued), then ack it: kept where ``sbt events dlq``
        shows it, rather than queued for good where no worker reads."""
        stranded = self.transport.take_stranded(set(self._targets))
        if not stranded:
            return
        when = utcnow()
        self._dead_letter([DeadLetter(event, message.target, message.attempt - 1,
                                      f"its target {message.target} is no longer configured", when)
                           for message in stranded for event in message.events], time.time())
        for message in stranded:
            self.transport.ack(message)
        log.warning("%d event(s) queued by the last run for target(s) no longer configured (%s) dead-lettered",
                    sum(len(m.events) for m in stranded), ", ".join(sorted({m.target for m in stranded})))

    def _dead_letter_poison(self, message: Message, reason: str) -> None:
        """(From the worker of ``message.target``, in place of receiving it.) A message the transport saw kill
        the processes handling it (``reason`` says how often): its events dead-lettered without calling the
        target again, then acked, so ``sbt events dlq replay`` can deliver them once the cause is fixed."""
        name, count = message.target, len(message.events)
        self._dead_letter([DeadLetter(event, name, message.attempt, reason, utcnow()) for event in message.events],
                          time.time())
        self.observer.dead_lettered(name, "poison", count)
        if self.shared_log is not None:
            self.shared_log.flush()  # before the ack, as in _settle
        self.transport.ack(message)
        target = self._targets.get(name)
        if target is not None and self._sent_counts:  # counted when sent (a shared transport counts receipts)
            self._finished(target, count)

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
        if self.shared_log is not None:
            self.shared_log.close()
        return drained

    def _dead_letter_undelivered(self) -> None:
        """Dead-letter every event the closed transport still holds, with the attempts made so far and the
        last error its log row shows: an event the bus accepted is delivered, or kept where it can be
        replayed, never dropped at a stop."""
        pending = self.transport.take_pending()
        if not pending:
            return
        now, when = time.time(), utcnow()
        letters = []
        with self._lock:  # the last errors are in the log rows
            self._apply_outcomes()
            for message in pending:
                for event in message.events:
                    entry = self._log.get(event.id)
                    slot = entry.slots.get(message.target) if entry is not None else None
                    error = slot.last_error if slot is not None else None
                    text = "the bus stopped before delivering it" + (f" (last error: {error})" if error else "")
                    letters.append(DeadLetter(event, message.target, message.attempt - 1, text, when))
        self._dead_letter(letters, now)
        for message in pending:
            self.observer.dead_lettered(message.target, "stopped", len(message.events))
            target = self._targets.get(message.target)
            if target is not None:  # its worker has exited (or is past receiving): nothing else counts these
                self._finished(target, len(message.events))
        log.warning("%d undelivered event(s) dead-lettered at stop: sbt events dlq replay delivers them",
                    sum(len(m.events) for m in pending))

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
        waits until they are stored, and an event loop calls :meth:`accept_batch` from a thread."""
        return self.transport.durable

