"""The bus's event log: the newest ``log_size`` accepted events (:class:`LogEntry`), each with one delivery
slot per target (:class:`Slot`), frozen into the public :class:`~sbt_core.runtime.contracts.EventRecord`
when read, and handed on to the log shared by several processes (``shared_log.py``) when there is one.

:class:`EventLog` takes no lock of its own: the bus calls it under the bus lock, except
:meth:`EventLog.record` and :meth:`EventLog.record_delivered`, which workers call without it (see there).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import attrs

from ...models import Event, utcnow
from ..contracts import Delivery, DeliveryState, EventRecord
from .shared_log import SqlEventLog
from .transport import Message

__all__ = ["EventLog", "LogEntry", "Slot", "new_log_entry"]


@attrs.define(slots=True)
class Slot:
    """Delivery state of (event, target) while the event is in the log.

    The events of one message share one slot (the bus accepts a batch for a target as one message and
    a batch hook delivers it in one call), so recording "delivered" for a hundred events is one write.
    Only :meth:`EventLog.mark_delivered` updates a shared slot in place; every other change gives the event a
    slot of its own (:meth:`EventLog.set_state`), so one event's failure never rewrites its batch-mates' rows.
    """

    state: DeliveryState = "pending"
    attempts: int = 0
    last_error: str | None = None
    updated: float = 0.0  # epoch seconds; turned into a datetime only when read
    result: Any = None  # JSON-ready
    batch: int = 0  # the accepted batch whose first delivery this slot awaits (Message.batch); 0: none

    def freeze(self, target: str) -> Delivery:
        when = datetime.fromtimestamp(self.updated, UTC) if self.updated else None
        return Delivery(target, self.state, self.attempts, self.last_error, when, self.result)


class LogEntry(NamedTuple):
    """An event in the log: the envelope, when it was accepted, and each target's delivery slot.

    ``slots`` may be one dict shared by every event of a batch accepted together, so it is never changed
    in place: :meth:`EventLog.put_slot` gives the entry a new dict. A tuple, so a batch's entries are built
    in one C-level pass (``new_log_entry``).
    """

    event: Event
    received: datetime
    slots: dict[str, Slot]

    def freeze(self) -> EventRecord:
        return EventRecord(self.event, self.received, tuple(s.freeze(t) for t, s in self.slots.items()))


#: ``new_log_entry((event, received, slots))``: a :class:`LogEntry` built in C (``LogEntry._make`` is a Python
#: function).
new_log_entry = functools.partial(tuple.__new__, LogEntry)

#: What :meth:`EventLog.prior` saves and :meth:`EventLog.restore` puts back: each id's entry, None if absent.
Saved = dict[str, LogEntry | None]


class EventLog:
    """The newest ``size`` events with each target's delivery slot, oldest first in :attr:`entries`.

    Writers on the publishing side (the bus's accept, recovery and replay) change :attr:`entries` under the
    bus lock. Workers never take that lock on their hot path: with the interpreter lock, a worker waiting
    for a lock held by a publisher (or the reverse) costs a thread hand-off per event, a convoy that
    tripled the cost of publishing one event at a time. They :meth:`record` outcomes instead, applied in
    order by whoever next reads or writes under the lock (:meth:`apply`).

    With ``shared`` (the log several processes share), every acceptance and outcome is handed on to it too;
    the bus reads that one instead.
    """

    def __init__(self, size: int, shared: SqlEventLog | None = None) -> None:
        self.size = size
        self.shared = shared
        # A plain dict keeps insertion order at half the cost of an OrderedDict per accepted event
        # (trimmed a batch at a time, see trim).
        self.entries: dict[str, LogEntry] = {}
        self._outcomes: deque[Callable[[], None]] = deque()

    def __len__(self) -> int:
        return len(self.entries)

    # --- outcomes, from the workers (no lock) ---------------------------------------------------------------

    def record(self, event_id: str, target: str, state: DeliveryState, attempts: int, error: str | None,
               result: Any = None, when: float | None = None) -> None:
        """Queue :meth:`set_state` with these arguments (applied by :meth:`apply`)."""
        self._outcomes.append(functools.partial(self.set_state, event_id, target, state, attempts, error, result, when))
        if self.shared is not None:
            self.shared.outcome(event_id, target, state, attempts, error, result, when)

    def record_delivered(self, target: str, events: Sequence[Event], batch: int, now: float) -> None:
        """Queue :meth:`mark_delivered` with these arguments (applied by :meth:`apply`)."""
        self._outcomes.append(functools.partial(self.mark_delivered, target, events, batch, now))
        if self.shared is not None:
            self.shared.delivered(target, events, now)

    def apply(self) -> None:
        """(Lock held.) Apply the recorded outcomes, oldest first."""
        outcomes = self._outcomes
        while outcomes:  # deque.popleft is atomic, so workers may keep appending meanwhile
            outcomes.popleft()()

    # --- writing (lock held) --------------------------------------------------------------------------------

    def accepted(self, events: Sequence[Event], messages: Sequence[Message], received: datetime) -> None:
        """Hand an accepted batch to the shared log, if any (the entries are already written)."""
        if self.shared is not None:
            self.shared.accepted(events, messages, received)

    def add_batch(self, ids: list[str], events: Sequence[Event], received: datetime, slots: dict[str, Slot]) -> None:
        """Log new distinct ``ids`` of ``events`` at once, all sharing ``slots``."""
        self.entries.update(zip(ids, map(new_log_entry, zip(events, itertools.repeat(received),
                                                            itertools.repeat(slots))), strict=True))

    def slots_for(self, event: Event, received: datetime) -> dict[str, Slot]:
        """The slots dict of ``event`` to fill with its targets' slots: a new entry's, or for a re-put id a
        copy of its first entry's (it keeps that entry, and its first envelope)."""
        entry = self.entries.get(event.id)
        if entry is None:
            slots: dict[str, Slot] = {}
            self.entries[event.id] = LogEntry(event, received, slots)
        else:
            slots = dict(entry.slots)
            self.entries[event.id] = entry._replace(slots=slots)
        return slots

    def put_slot(self, event: Event, target: str, slot: Slot) -> None:
        """Give ``event``'s entry ``slot`` for ``target``, in a slots dict of its own (the one it had may be
        shared with its batch-mates); an event no longer in the log is logged again."""
        entries = self.entries
        entry = entries.get(event.id)
        if entry is None:
            entries[event.id] = LogEntry(event, utcnow(), {target: slot})
            self.trim()
        else:
            entries[event.id] = entry._replace(slots={**entry.slots, target: slot})

    def set_state(self, event_id: str, target: str, state: DeliveryState, attempts: int, error: str | None,
            result: Any = None, when: float | None = None) -> None:
        """The delivery of ``event_id`` to ``target`` is now ``state``; ``error`` None keeps the slot's last
        error, for the record. An event fallen out of the log has no row to update (the dead-letter store
        keeps failures)."""
        entry = self.entries.get(event_id)
        if entry is None:
            return
        old = entry.slots.get(target)
        last_error = error if error is not None else (old.last_error if old is not None else None)
        # a new slot rather than an update: the old one may be shared with batch-mates
        self.put_slot(entry.event, target, Slot(state, attempts, last_error, time.time() if when is None else when,
                                                result))

    def mark_delivered(self, target: str, events: Sequence[Event], batch: int, now: float) -> None:
        """Record first attempts ``events`` of one message of batch number ``batch``, delivered together, as
        delivered.

        They share one slot (see :class:`Slot`), so one write records them all: the slot is found through
        the newest of them still in the log (the log forgets the oldest first) whose row is still that
        batch's. An event re-put since (no dedup, or its id forgotten) has a row following its new
        delivery: marking that one would show the new batch delivered early and leave this one's rows
        pending for good.
        """
        entries = self.entries
        for event in reversed(events):
            entry = entries.get(event.id)
            if entry is not None:
                slot = entry.slots.get(target)
                if slot is not None and slot.batch == batch:
                    slot.state, slot.attempts, slot.updated, slot.result = "delivered", 1, now, None
                    return

    def trim(self) -> None:
        """Forget the oldest entries beyond ``size``: the first keys, collected in one pass (a dict's
        iteration skips the slots its deletions left, so popping one at a time rescans them)."""
        entries = self.entries
        excess = len(entries) - self.size
        if excess > 0:
            for key in list(itertools.islice(entries, excess)):
                del entries[key]

    def prior(self, ids: Iterable[str]) -> Saved:
        """The entries of ``ids`` as they are now (None: not logged), for :meth:`restore`."""
        return {event_id: self.entries.get(event_id) for event_id in ids}

    def restore(self, saved: Saved) -> None:
        """Put back what :meth:`prior` saved: undo a write the transport then refused."""
        for event_id, entry in saved.items():
            if entry is None:
                self.entries.pop(event_id, None)
            else:
                self.entries[event_id] = entry

    # --- reading (lock held) --------------------------------------------------------------------------------

    def get(self, event_id: str) -> EventRecord | None:
        """The entry of ``event_id``, or None when unknown or fallen out of the log."""
        self.apply()
        entry = self.entries.get(event_id)
        return entry.freeze() if entry else None

    def recent(self, limit: int) -> list[EventRecord]:
        """The most recent entries, newest first (at most ``limit``)."""
        self.apply()
        entries = self.entries
        return [entries[event_id].freeze() for event_id in itertools.islice(reversed(entries), max(limit, 0))]

    def last_error(self, event_id: str, target: str) -> str | None:
        """The last error the row of (``event_id``, ``target``) shows, if any."""
        self.apply()
        entry = self.entries.get(event_id)
        slot = entry.slots.get(target) if entry is not None else None
        return slot.last_error if slot is not None else None

    def oldest_waiting(self, targets: set[str]) -> dict[str, float]:
        """Per target of ``targets`` with a pending or retrying row: when its oldest such event was accepted
        (epoch seconds), read oldest entry first."""
        self.apply()
        oldest: dict[str, float] = {}
        for entry in self.entries.values():
            for name, slot in entry.slots.items():
                if name in targets and name not in oldest and slot.state in ("pending", "retrying"):
                    oldest[name] = entry.received.timestamp()
            if len(oldest) == len(targets):
                break
        return oldest
