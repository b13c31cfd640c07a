"""Rows of the bus's event log: each logged event (:class:`LogEntry`) with one delivery slot per target
(:class:`Slot`), frozen into the public :class:`~sbt_core.runtime.seams.EventRecord` when read."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, NamedTuple

import attrs

from ...models import Event
from ..seams import Delivery, DeliveryState, EventRecord

__all__ = ["LogEntry", "Slot", "new_log_entry"]


@attrs.define(slots=True)
class Slot:
    """Delivery state of (event, target) while the event is in the log.

    The events of one message share one slot (the bus accepts a batch for a target as one message and
    a batch hook delivers it in one call), so recording "delivered" for a hundred events is one write.
    Only the bus's ``_mark_delivered`` updates a shared slot in place; every other change gives the event a
    slot of its own (``Bus._set``), so one event's failure never rewrites its batch-mates' rows.
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

    ``slots`` may be one dict shared by every event of a batch accepted together (see
    :meth:`Bus._accept`), so it is never changed in place: :meth:`Bus._put_slot` gives the entry a new dict.
    A tuple, so a batch's entries are built in one C-level pass (``new_log_entry``).
    """

    event: Event
    received: datetime
    slots: dict[str, Slot]

    def freeze(self) -> EventRecord:
        return EventRecord(self.event, self.received, tuple(s.freeze(t) for t, s in self.slots.items()))


#: ``new_log_entry((event, received, slots))``: a :class:`LogEntry` built in C (``LogEntry._make`` is a Python
#: function).
new_log_entry = functools.partial(tuple.__new__, LogEntry)
