"""The bus's transport seam: how a routed message reaches the worker of its target.

The :class:`~sbt_core.runtime.bus.Bus` owns everything that is the same whatever carries the messages —
routing, the event log, dedup, retries with backoff, the dead-letter store. A :class:`Transport` only
moves :class:`Message` s: one logical queue per target (a hook binding, a core subscriber, a schedule),
with delayed sends for retries and an ``ack`` once the bus is done with a message.

:class:`InProcessTransport` keeps per-target deques in this process's memory (a bare ``Bus()``'s and the
test harness's choice, ``[events] transport = "inprocess"``), so queued events would be lost when the
process exits; the bus dead-letters what a stop leaves queued (:meth:`Transport.take_pending`).
:class:`~sbt_core.runtime.bus.sqlite_transport.SqliteTransport`, what ``sbt serve`` uses, journals the
same queues in SQLite so that they survive a crash. A broker is a transport with the same methods
(:class:`~sbt_core.runtime.bus.nats_transport.NatsTransport` on NATS JetStream): ``send`` = publish
(``delay`` = the broker's delayed delivery), ``receive`` = a blocking consume on the target's consumer
(group), ``ack`` = ack, so an un-acked message is redelivered after a crash — the at-least-once half the
broker provides — and messages cross the wire in a compact encoding of their events.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any

import attrs

from ...models import Event, from_json, to_json

__all__ = ["InProcessTransport", "Message", "Transport"]


def _events(value: Event | Iterable[Event]) -> tuple[Event, ...]:
    return (value,) if isinstance(value, Event) else tuple(value)


@attrs.frozen(slots=True)
class Message:
    """Events on their way to one target: the events of one ``PutEvents`` batch routed to it (or a single
    event), delivered together. ``attempt`` is 1 for the first delivery, +1 per retry; a retry carries
    only the events that failed. ``Message(target, event)`` takes a single event too.

    One message per (batch, target) rather than per event is what lets a hundred-entry ``POST /events``
    cost one enqueue, one wake-up and one batch hook call per target.

    ``batch`` is the bus's number for the accepted batch a first delivery carries (0 when none: retries,
    messages built elsewhere). The bus records the delivery of the message's events on the event-log row
    they share under that number, so a later re-put of one of them, which takes its row over, never has
    that row marked by this delivery. A transport carries it like the other fields.
    """

    target: str
    events: tuple[Event, ...] = attrs.field(converter=_events)
    attempt: int = 1
    batch: int = 0

    def to_json(self) -> dict[str, Any]:
        """Wire form for a broker: ``{target, attempt, batch, events: [<EventBridge envelope>...]}``."""
        return {"target": self.target, "attempt": self.attempt, "batch": self.batch,
                "events": [to_json(e) for e in self.events]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        """Inverse of :meth:`to_json` (``batch`` may be missing: 0); raises BadRequestError on a malformed
        envelope."""
        return cls(target=str(data["target"]), events=[from_json(Event, e) for e in data["events"]],
                   attempt=int(data["attempt"]), batch=int(data.get("batch", 0)))


class Transport(ABC):
    """Per-target message queues. Every method may be called from any thread.

    A *durable* transport (``durable`` True: :class:`~sbt_core.runtime.bus.sqlite_transport.SqliteTransport`,
    a broker) keeps every message until it is acked, across a crash: :meth:`send` returns once the
    messages are stored (so it may block on a disk or the network: callers on an event loop run it in a
    thread), and a new transport on the same store hands the un-acked messages out again
    (:meth:`backlog`, :meth:`take_stranded`).
    """

    #: Whether a sent message outlives this process until acked (see the class docstring).
    durable: bool = False
    #: Whether the queues are shared with other processes (a broker): a message sent here may be received
    #: and acked by another process, and this process receives what others sent, so the bus counts the
    #: events a worker is busy with when it receives them, not when they are sent.
    shared: bool = False

    @abstractmethod
    def open(self, target: str, *, exclusive: bool = False) -> None:
        """Create (or attach to) the queue of ``target``; idempotent. ``exclusive``: at most one of its
        messages is handed out (un-acked) at a time, across every process sharing the queue (a schedule,
        whose runs must not overlap; one worker per target already ensures it within a process)."""

    @abstractmethod
    def send(self, messages: Iterable[Message], *, delay: float = 0.0, dedup: bool = True) -> None:
        """Enqueue ``messages`` (each to its ``target``'s queue), visible after ``delay`` seconds. Never
        blocks on consumers (a durable transport waits until they are stored). With ``dedup`` a broker may
        drop a first attempt whose events it stored for the same target within its duplicate window (a
        client's re-put, a slot fired by two processes); a replay passes False.

        :raises RuntimeError: the transport is closed.
        :raises UnavailableError: a durable transport could not store them (none of them was sent).
        """

    @abstractmethod
    def receive(self, target: str) -> Message | None:
        """Block until a message of ``target`` is due and return it; None once the transport is closed."""

    def receive_many(self, target: str, limit: int) -> list[Message]:
        """Block like :meth:`receive`, then return up to ``limit`` messages already due (at least one);
        empty once closed. Lets a worker drain a burst with one wake-up; default: one :meth:`receive`."""
        message = self.receive(target)
        return [] if message is None else [message]

    def ack(self, message: Message) -> None:  # noqa: B027 - optional: in-process has nothing to delete
        """The bus is done with ``message`` (one this transport handed out: the same object), delivered,
        dead-lettered or skipped; a broker deletes it."""

    def on_poison(self, dead_letter: Callable[[Message, str], None]) -> None:  # noqa: B027 - optional
        """Register ``dead_letter(message, reason)`` (the bus does, when built). A transport that can tell a
        *poison* message — one redelivered again and again because every process handling it died, or stopped
        before it was done — calls it, from the thread of :meth:`receive_many`, in place of handing that
        message out once more; the callee dead-letters the message's events and acks it. Default: never
        called (a transport that cannot tell)."""

    def backlog(self, target: str) -> list[Message]:
        """After :meth:`open`: the messages of ``target`` an earlier process left un-acked (a crash, or a
        stop that did not drain), which :meth:`receive` hands out again, so the bus can count and log
        them. Each target's are reported once. None for a transport that keeps nothing (default)."""
        return []

    def take_stranded(self, targets: Collection[str]) -> list[Message]:
        """Messages an earlier process left for a target not in ``targets`` (its binding since removed from
        the config), which no worker will receive: the bus dead-letters them, then acks them. Default: none."""
        return []

    @abstractmethod
    def close(self) -> None:
        """Stop: wake every blocked :meth:`receive` (which returns None). Messages still queued stay in a
        broker; the in-process transport hands them to :meth:`take_pending`."""

    def take_pending(self) -> list[Message]:
        """After :meth:`close`: the messages still queued (due or delayed), removed, so the bus can
        dead-letter them rather than lose them. A broker keeps them for the next consumer: none (default)."""
        return []


class _Queue:
    __slots__ = ("cond", "ready", "delayed")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.ready: deque[Message] = deque()
        self.delayed: list[tuple[float, int, Message]] = []


class InProcessTransport(Transport):
    """The embedded default: one deque (plus a heap of delayed retries) per target, in memory.

    :param clock: monotonic seconds; injectable so delayed sends can be tested without sleeping.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._queues: dict[str, _Queue] = {}
        self._closed = False
        self._seq = itertools.count()  # heap tie-breaker: equal due times keep send order

    def open(self, target: str, *, exclusive: bool = False) -> None:
        self._queues.setdefault(target, _Queue())

    def send(self, messages: Iterable[Message], *, delay: float = 0.0, dedup: bool = True) -> None:
        if self._closed:
            raise RuntimeError("the transport is closed")
        # Group by target so a batch takes each target's lock once (the publish hot path).
        groups: dict[str, list[Message]] = {}
        for message in messages:
            groups.setdefault(message.target, []).append(message)
        for target, items in groups.items():
            queue = self._queues[target]
            with queue.cond:
                if delay > 0:
                    due = self._clock() + delay
                    for item in items:
                        heapq.heappush(queue.delayed, (due, next(self._seq), item))
                else:
                    queue.ready.extend(items)
                queue.cond.notify()

    def receive(self, target: str) -> Message | None:
        queue = self._queues[target]
        with queue.cond:
            while True:
                if self._closed:
                    return None
                if queue.delayed and queue.delayed[0][0] <= self._clock():
                    return heapq.heappop(queue.delayed)[2]
                if queue.ready:
                    return queue.ready.popleft()
                timeout = max(0.0, queue.delayed[0][0] - self._clock()) if queue.delayed else None
                queue.cond.wait(timeout)

    def receive_many(self, target: str, limit: int) -> list[Message]:
        first = self.receive(target)
        if first is None:
            return []
        out = [first]
        queue = self._queues[target]
        with queue.cond:  # whatever else is ready now, without waiting again
            while len(out) < limit and queue.ready:
                out.append(queue.ready.popleft())
        return out

    def ready(self, target: str) -> bool:
        """Whether ``target`` has a message ready now (due delayed ones aside): a hint, read without the lock."""
        return bool(self._queues[target].ready)

    def close(self) -> None:
        self._closed = True
        for queue in self._queues.values():
            with queue.cond:
                queue.cond.notify_all()

    def take_pending(self) -> list[Message]:
        taken: list[Message] = []
        for queue in self._queues.values():
            with queue.cond:
                taken += queue.ready
                taken += (item for _, _, item in sorted(queue.delayed))
                queue.ready.clear()
                queue.delayed.clear()
        return taken
