"""The delivery side of the bus (:class:`Delivering`, a base class of :class:`~sbt_core.runtime.bus.core.Bus`):
one worker thread per target taking its messages off the transport, running the target's handler (or its batch
handler for a burst of first attempts), and settling each message — delivered events recorded, retryable
failures sent again after a backoff, the rest dead-lettered — before acking it; and what the bus
dead-letters because no worker will deliver it (a target gone since a restart, a stop before draining);
the messages a restart finds queued (:meth:`Delivering._recover`); and dead letters delivered again
(:meth:`Delivering.replay`).

The retry wait after failed attempt ``n`` is "full jitter" (:meth:`Delivering._backoff`): random in
``[0, min(backoff_max_seconds, backoff_base_seconds * 2**(n-1))]`` seconds (``EventsConfig``).
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, Protocol

import attrs

from ...config import EventsConfig
from ...errors import NotFoundError, ProviderError, SbtError
from ...models import Event, utcnow
from ...triggers import EventTrigger
from ..logs import delivery_fields
from ._dedup import SeenIds
from .dead_letters import DeadLetter, DeadLetterStore
from .event_log import EventLog, Slot
from .handlers import BatchHandler, Handler, error_text, is_retryable, result_json
from .transport import Message, Transport

__all__ = ["DeadLetterReason", "Delivering", "DeliveryObserver", "Target", "TargetInfo", "TargetKind", "Unobserved"]

log = logging.getLogger("sbt.bus")

#: Messages a worker takes from its queue per wake-up.
_BURST = 256

TargetKind = Literal["binding", "subscriber", "schedule"]

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


class Unobserved:
    """A :class:`DeliveryObserver` told nothing."""

    def accepted(self, binding: str, count: int) -> None:
        pass

    def delivered(self, binding: str, count: int) -> None:
        pass

    def retried(self, binding: str, count: int) -> None:
        pass

    def dead_lettered(self, binding: str, reason: DeadLetterReason, count: int = 1) -> None:
        pass


@attrs.frozen
class TargetInfo:
    """What ``sbt`` knows of a target: its name, kind and the trigger routing events to it (None for a
    schedule target, which only receives the events ``Bus.accept`` is given it as ``target``)."""

    name: str
    kind: TargetKind
    trigger: EventTrigger | None


@attrs.define(slots=True)
class Target:
    """A registered target: its info, what delivers to it, the ids it has seen, and its worker."""

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


class Delivering:
    """The delivery side of :class:`~sbt_core.runtime.bus.core.Bus`, which sets these attributes (a base class
    rather than an object of its own, so the worker's hot path reads them as the bus's own): the workers,
    what a restart finds queued and a stop leaves, the dead letters and their replay."""

    config: EventsConfig
    observer: DeliveryObserver
    transport: Transport
    dead_letter_store: DeadLetterStore
    event_log: EventLog
    _targets: dict[str, Target]
    _sent_counts: int  # 1 when the publisher counts a target's accepted events, 0 when its worker does
    _lock: threading.Lock
    _idle: threading.Condition
    _joining: int
    _clock: Callable[[], float]
    _batches: Iterator[int]  # Message.batch numbers (next() under the lock)
    _closed: bool

    # --- the workers --------------------------------------------------------------------------------------

    def _spawn(self, target: Target) -> None:
        thread = threading.Thread(target=self._work, args=(target,), name=f"sbt-bus-{target.info.name}", daemon=True)
        target.thread = thread
        thread.start()

    def _work(self, target: Target) -> None:
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

    def _guarded(self, target: Target, messages: list[Message],
                 deliver: Callable[[Target, list[Message], set[int]], None]) -> None:
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

    def _finished(self, target: Target, count: int) -> None:
        """The worker of ``target`` is done with ``count`` more events (only that thread writes
        ``finished``); wakes :meth:`join` when nothing is left."""
        if count:
            target.finished += count
            # Only a waiting join() needs waking. join() counts itself in before it reads ``finished`` and
            # this reads the count after writing ``finished``, so one of the two always sees the other.
            if self._joining and target.finished == target.accepted:
                with self._idle:
                    self._idle.notify_all()

    def _deliver_each(self, target: Target, messages: list[Message], settled: set[int]) -> None:
        """Every event of ``messages`` through the single handler, in order, each recorded at once."""
        handler, name = target.handler, target.info.name
        for message in messages:
            attempt = message.attempt
            failures: list[tuple[Event, Exception]] = []
            for event in message.events:
                if attempt > 1:  # a retry: its row goes back to pending while it runs
                    self.event_log.record(event.id, name, "pending", attempt - 1, None, None, time.time())
                try:
                    result = handler(event)
                except Exception as exc:  # noqa: BLE001 - every failure is recorded: retried or dead-lettered
                    failures.append((event, exc))
                    continue
                if result is None and attempt == 1 and len(message.events) == 1:
                    # its slot is its alone (a slot is shared by one message's events): written in place
                    self.event_log.record_delivered(name, message.events, message.batch, time.time())
                else:
                    self.event_log.record(event.id, name, "delivered", attempt, None,
                                None if result is None else result_json(result), time.time())
            self._settle(target, message, failures, settled)

    def _deliver_batch(self, target: Target, messages: list[Message], settled: set[int]) -> None:
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
                self.event_log.record_delivered(name, message.events, message.batch, now)
                self._settle(target, message, [], settled)
            else:
                failures = [(e, o) for e, o in zip(message.events, mine, strict=True) if o is not None]
                # The failed ones get a slot of their own first, so the shared slot left behind is exactly
                # the delivered ones'.
                for event, failure in failures:
                    self.event_log.record(event.id, name, "pending", 1, error_text(failure), None, now)
                delivered = [e for e, o in zip(message.events, mine, strict=True) if o is None]
                self.event_log.record_delivered(name, delivered, message.batch, now)
                self._settle(target, message, failures, settled)

    def _settle(self, target: Target, message: Message, failures: list[tuple[Event, Exception]],
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
            self.event_log.record(event.id, name, "retrying", attempt, error, None, now)
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
        if self.event_log.shared is not None:
            # Before the ack: once acked, no process delivers the message again, so a crash after it must not
            # lose the record of its delivery (a database write per message, only with a shared log).
            self.event_log.shared.flush()
        self.transport.ack(message)

    def _dead_letter(self, letters: list[DeadLetter], now: float) -> None:
        """Keep ``letters`` in the store at once, together (from the worker, so a durable store has them
        before their events count as finished) and record their log rows as every outcome is recorded
        (:meth:`EventLog.record`)."""
        self.dead_letter_store.add(letters)
        for letter in letters:
            self.event_log.record(letter.event.id, letter.target, "dead_lettered", letter.attempts,
                        letter.last_error, None, now)

    def _internal_error(self, target: Target, message: Message, exc: Exception) -> None:
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
        """Seconds to wait after failed attempt ``attempt`` (1 for the first): full jitter, random in ``[0,
        min(backoff_max_seconds, backoff_base_seconds * 2**(attempt-1))]`` (the exponent capped so that a
        large ``max_attempts`` cannot overflow a float)."""
        base, cap = self.config.backoff_base_seconds, self.config.backoff_max_seconds
        return random.uniform(0, min(cap, base * 2 ** min(attempt - 1, 64)))

    # --- what a restart or a stop leaves, and dead letters delivered again -------------------------------

    def _recover(self, target: Target, messages: list[Message]) -> None:
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
                self.event_log.put_slot(event, name, slot)  # one slot per message, as when it was accepted
            target.accepted += len(message.events)
            top = max(top, message.batch)
        # New batches are numbered past the recovered ones, whose rows EventLog.mark_delivered finds by number.
        self._batches = itertools.count(max(top + 1, next(self._batches)))
        log.info("%d event(s) in %d message(s) to %s left undelivered by the last run: delivering them again",
                 sum(len(m.events) for m in messages), len(messages), name)

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
        if self.event_log.shared is not None:
            self.event_log.shared.flush()  # before the ack, as in _settle
        self.transport.ack(message)
        target = self._targets.get(name)
        if target is not None and self._sent_counts:  # counted when sent (a shared transport counts receipts)
            self._finished(target, count)

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
            for message in pending:
                for event in message.events:
                    error = self.event_log.last_error(event.id, message.target)
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
            self.event_log.apply()
            number = next(self._batches)
            before = self.event_log.prior(letter.event.id for letter in claimed)
            for letter in claimed:
                found = self._targets[letter.target]
                self.event_log.put_slot(letter.event, letter.target,
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
                    self.event_log.restore(before)
                self.dead_letter_store.add(claimed)
                if isinstance(exc, RuntimeError):
                    raise SbtError("the event bus has stopped") from None
                raise
            for message in messages:
                self.observer.accepted(message.target, len(message.events))
            shared = self.event_log.shared
            if shared is not None:
                now = time.time()
                shared.accepted([d.event for d in claimed], [], utcnow())
                for letter in claimed:
                    shared.outcome(letter.event.id, letter.target, "pending", 0, letter.last_error, None, now)
        return claimed
