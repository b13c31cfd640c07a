"""The bus on NATS JetStream (``[events] transport = "nats"``): one set of queues shared by every ``sbt serve``
of the control plane, as EventBridge is one bus for all of sbt-aws (``docs/several-processes.md``).

**Layout on the server.** One stream (``[events] stream``, default ``SBT_EVENTS``) on subjects
``<subject_prefix>.>`` (default ``sbt.events.>``), created at start-up if missing, otherwise updated to
the retention, limits and duplicate window of the config. Each bus target (a hook binding, a core
subscriber, a schedule) has its own subject ``<subject_prefix>.<target>`` and one durable pull consumer of
the same name (characters NATS does not allow in a token are written ``=XX``), which every process pulls
from: each message is handed to one process, which acks it once the bus is done with it (the hook returned,
or it was dead-lettered). A process that dies holding messages leaves them un-acked, and JetStream hands
them to another process after ``ack_wait_seconds`` (while a hook runs, the transport tells JetStream it is
still in progress, so a slow hook is not given to a second process). A schedule's consumer hands out one
message at a time across all processes (``max_ack_pending = 1``): no two runs of a hook overlap anywhere.

**A message** is the bus's :class:`Message`: the subject names its target, headers carry ``Sbt-Attempt`` and
``Sbt-Batch``, the body is the events in the SQLite transport's compact encoding. ``send`` returns once
JetStream acknowledged every publish (stored), which is when ``POST /events`` answers.

**Dedup.** A first attempt is published with ``Nats-Msg-Id = <target>:<event id>`` (a message of several
events: a digest of their ids), so JetStream drops a copy stored within ``duplicate_window_seconds``:
a PutEvents entry re-put with its ``id`` to any process, and a schedule slot fired by every process
(``schedule:<hook>:<slot>``), are stored once. A replay (``dedup=False``) and a retry are not deduplicated.

**Retries.** The bus sends a retry as a new message (``attempt + 1``, only the events that failed) with a
delay, then acks the original. The transport publishes it with an ``Sbt-Due`` header (wall-clock epoch
seconds); a consumer receiving it early NAKs it with the remaining delay, so JetStream holds it back (and
the process that failed it may die meanwhile: the retry is in the stream, not in its memory). NAK-with-delay
of the original would not fit the seam: the retry carries fewer events and a new attempt number. JetStream's
own ``max_deliver`` is unlimited for the same reason: ``[events] max_attempts`` counts attempts and
dead-letters (a delayed message's early NAKs are not attempts).

**Poison.** A message every process dies on is bounded apart from attempts (a crash records none): a
redelivered message goes out alone, after one more handling is counted for it in the key-value bucket
``<stream>_HANDLING``; once ``poison_after`` (``max_attempts``) handlings after its first delivery never
finished, it goes to the bus's :meth:`~Transport.on_poison` callback, which dead-letters it without calling
the target. JetStream's delivery count alone cannot tell: it also counts a message a process only held.

**Targets no longer configured** keep their consumers: :meth:`NatsTransport.take_stranded` names them in a
warning and takes nothing (another process may run a config version that has them);
:meth:`NatsTransport.drop_target` (``sbt events drop-target``) dead-letters their messages and deletes them.

Delivery is at-least-once: an ack lost in a crash delivers a message again (the bus's dedup by event id and
the providers' idempotency absorb it).

nats-py is asyncio and the seam is threads: one event loop runs in a daemon thread. A send is queued for
it, and the sends queued by other threads meanwhile go out with the same wake-up of the loop, their
publishes written back to back and their acks awaited together (``publish_async``); acks are queued and
sent the same way; other calls go to it with :func:`asyncio.run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Coroutine, Iterable
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any, TypeVar

import attrs
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from ...config import EventsConfig
from ...errors import ConflictError, NotFoundError, StartupError, UnavailableError
from ...models import Event, utcnow
from .dead_letters import DeadLetter, DeadLetterStore
from .sqlite_transport import decode_events, encode_events
from .transport import Message, Transport

__all__ = ["DropOutcome", "NatsTransport", "StrandedConsumer", "token", "untoken"]

log = logging.getLogger("sbt.bus")

T = TypeVar("T")

_RETENTION = {"workqueue": RetentionPolicy.WORK_QUEUE, "limits": RetentionPolicy.LIMITS,
              "interest": RetentionPolicy.INTEREST}
#: Longest a fetch waits on the server before asking again (close() cancels it sooner).
_POLL_SECONDS = 5.0
#: Messages one fetch asks for at most.
_FETCH = 256
#: Longest a fetch waits for more messages once it has one (see NatsTransport._fetch).
_DRAIN_SECONDS = 0.05
#: Un-acked messages a (non-exclusive) consumer hands out across all processes.
_MAX_ACK_PENDING = 20_000
_REQUEST_TIMEOUT = 10.0
#: One publish of a send: subject, body, headers, and the events the body encodes.
_Publish = tuple[str, bytes, dict[str, str], tuple[Event, ...]]
#: Events of this process's stored messages kept for it to fetch without decoding (see NatsTransport.send).
_KEPT_EVENTS = 20_000
#: Bytes hashlib hashes while holding the GIL (it releases it for 2048 and more).
_UNRELEASED = 2047


def token(name: str) -> str:
    """``name`` as one NATS subject token and consumer name: letters, digits, ``_`` and ``-`` kept, every
    other character written ``=XX`` (its UTF-8 bytes in hex)."""
    out = []
    for char in name:
        if char.isascii() and (char.isalnum() or char in "_-"):
            out.append(char)
        else:
            out.extend(f"={b:02X}" for b in char.encode())
    return "".join(out) or "=00"


def untoken(name: str) -> str:
    """Inverse of :func:`token` (a name :func:`token` cannot have written is returned as it is)."""
    try:
        return re.sub(rb"(?:=[0-9A-F]{2})+", lambda m: bytes.fromhex(m.group().decode().replace("=", "")),
                      name.encode()).decode()
    except (UnicodeDecodeError, ValueError):
        return name


@attrs.frozen
class StrandedConsumer:
    """A durable consumer of the stream for a target the config of this process does not have: its binding
    removed from the config, or added by a newer config (a rolling deploy). ``waiting``: its messages not yet
    acked; ``pulled``: a process is pulling from it now (one whose config has the target)."""

    target: str
    consumer: str
    waiting: int
    pulled: bool


@attrs.frozen
class DropOutcome:
    """What :meth:`NatsTransport.drop_target` did: ``dead_lettered`` events; ``left`` messages it could not
    take (handed out to a process, or held back for a retry until due), in which case the consumer was kept
    (``deleted`` False) so that none is lost: run it again later."""

    target: str
    dead_lettered: int
    left: int
    deleted: bool


def _msg_id(message: Message) -> str:
    ids = [event.id for event in message.events]
    if len(ids) == 1:
        return f"{message.target}:{ids[0]}"
    data = "\n".join(ids).encode()
    digest = hashlib.sha256()
    # Fed in pieces hashlib hashes without releasing the GIL (it does from 2 KiB): on the answer's path a
    # release lets the delivery worker take the interpreter for a switch interval before it is back.
    for start in range(0, len(data), _UNRELEASED):
        digest.update(data[start:start + _UNRELEASED])
    return f"{message.target}:{digest.hexdigest()}"


class NatsTransport(Transport):
    """The bus's queues in JetStream stream ``stream`` at ``url`` (see the module docstring).

    :param poison_after: handlings of one message, after its first delivery, that may end without an outcome
        (the process died or stopped) before it is handed to the poison callback (``[events] max_attempts``).
    :raises StartupError: the server cannot be reached, has no JetStream, or refuses the stream's config.
    """

    durable = True
    shared = True

    def __init__(self, url: str, *, stream: str = "SBT_EVENTS", subject_prefix: str = "sbt.events",
                 retention: str = "workqueue", max_age_seconds: float = 7 * 86400.0, max_bytes: int = -1,
                 duplicate_window_seconds: float = 120.0, ack_wait_seconds: float = 30.0,
                 poison_after: int = 5, connect_timeout: float = 5.0) -> None:
        self.stream, self.prefix = stream, subject_prefix
        self.ack_wait = ack_wait_seconds
        self.poison_after = poison_after
        #: The key-value bucket counting the handlings of redelivered messages (``KV_<bucket>`` stream).
        self.marks_bucket = f"{stream}_HANDLING"
        self._url = url
        self._config = StreamConfig(name=stream, subjects=[f"{subject_prefix}.>"], retention=_RETENTION[retention],
                                    max_age=max_age_seconds, max_bytes=max_bytes, storage=StorageType.FILE,
                                    duplicate_window=duplicate_window_seconds)
        self._closed = False
        self._subjects: dict[str, str] = {}  # target -> its subject
        self._subs: dict[str, JetStreamContext.PullSubscription] = {}
        self._batch: dict[str, int] = {}  # messages one fetch of a target asks for
        self._ready: dict[str, deque[Message]] = {}  # fetched, not yet handed out (receive asked for fewer)
        self._prefetch: dict[str, Future[list[Msg]]] = {}  # each target's fetch under way (under the lock)
        self._inflight: dict[int, Msg] = {}  # id(message) -> its JetStream message, until acked
        self._suspects: set[int] = set()  # id() of fetched messages a process may have died on (_suspect)
        self._marked: dict[int, str] = {}  # id(message) -> its key in the marks bucket, until acked
        self._marks: KeyValue | None = None
        self._poison: Callable[[Message, str], None] | None = None
        self._fetches: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._acks: list[Msg] = []  # acked by the bus, not yet sent (under _ack_lock)
        # Sends waiting for the loop (under _out_lock): each one's publishes and what its caller waits on.
        self._outbox: list[tuple[list[_Publish], Future[None]]] = []
        # The events of messages this process stored, by stream sequence, until it fetches them itself: the
        # same bytes need no decoding (a third of one process's cost per request). Bounded by _KEPT_EVENTS;
        # what another process fetches is dropped oldest first.
        self._sent_here: dict[int, tuple[Event, ...]] = {}
        self._sent_here_events = 0
        self._out_lock = threading.Lock()
        self._ack_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sbt-bus-nats", daemon=True)
        self._thread.start()
        self._nc: Client | None = None
        try:
            self._nc = self._run(nats.connect([u.strip() for u in url.split(",")], connect_timeout=connect_timeout,
                                              max_reconnect_attempts=-1, allow_reconnect=True,
                                              error_cb=self._on_error), connect_timeout * 2 + 1)
            self._js = self._nc.jetstream(timeout=_REQUEST_TIMEOUT)
            self._run(self._ensure_stream(), _REQUEST_TIMEOUT * 2)
        except BaseException as exc:
            self._shutdown()
            raise StartupError(f"cannot use NATS JetStream at {self.describe()}: {exc or type(exc).__name__}") \
                from exc
        self._heartbeat = asyncio.run_coroutine_threadsafe(self._keep_in_progress(), self._loop)

    @classmethod
    def from_config(cls, events: EventsConfig) -> NatsTransport:
        """The transport ``[events]`` describes (``transport = "nats"``, ``url`` set)."""
        if events.url is None:
            raise StartupError('[events] transport = "nats" needs [events] url')
        return cls(events.url.get_secret_value(), stream=events.stream, subject_prefix=events.subject_prefix,
                   retention=events.retention, max_age_seconds=events.max_age_seconds, max_bytes=events.max_bytes,
                   duplicate_window_seconds=events.duplicate_window_seconds, ack_wait_seconds=events.ack_wait_seconds,
                   poison_after=events.max_attempts)

    def describe(self) -> str:
        """The server URL(s) without credentials, for messages."""
        return ",".join(u.strip().rsplit("@", 1)[-1] for u in self._url.split(","))

    # --- the Transport contract ------------------------------------------------------------------------

    def open(self, target: str, *, exclusive: bool = False) -> None:
        if target in self._subs:
            return
        name = token(target)
        config = ConsumerConfig(durable_name=name, name=name, filter_subject=f"{self.prefix}.{name}",
                                ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                ack_wait=self.ack_wait, max_deliver=-1,
                                max_ack_pending=1 if exclusive else _MAX_ACK_PENDING)

        async def attach() -> JetStreamContext.PullSubscription:
            # Created, or updated to this config (ack_wait and max_ack_pending may change between runs).
            await self._js._jsm.add_consumer(self.stream, config=config)
            return await self._js.pull_subscribe_bind(durable=name, stream=self.stream)

        try:
            self._subs[target] = self._run(attach(), _REQUEST_TIMEOUT * 2)
            # An exclusive consumer hands out one message at a time: a fetch asking for more would wait
            # for the rest until it expires.
            self._batch[target] = 1 if exclusive else _FETCH
            self._ready[target] = deque()
        except Exception as exc:
            raise StartupError(f"cannot open the JetStream consumer {name} of stream {self.stream} at "
                               f"{self.describe()}: {exc or type(exc).__name__}") from exc

    def send(self, messages: Iterable[Message], *, delay: float = 0.0, dedup: bool = True) -> None:
        if self._closed:
            raise RuntimeError("the transport is closed")
        items: list[_Publish] = []
        due = f"{time.time() + delay:.6f}" if delay > 0 else None
        for message in messages:
            headers = {"Sbt-Attempt": str(message.attempt), "Sbt-Batch": str(message.batch)}
            if due is not None:
                headers["Sbt-Due"] = due
            elif dedup and message.attempt == 1:
                headers["Nats-Msg-Id"] = _msg_id(message)
            subject = self._subjects.get(message.target)
            if subject is None:
                subject = self._subjects[message.target] = f"{self.prefix}.{token(message.target)}"
            items.append((subject, encode_events(message.events), headers, message.events))
        if not items:
            return
        done: Future[None] = Future()
        with self._out_lock:
            if self._closed:
                raise RuntimeError("the transport is closed")
            self._outbox.append((items, done))
            first = len(self._outbox) == 1
        if first:  # the sends of other threads queued meanwhile go out with this wake-up of the loop
            self._loop.call_soon_threadsafe(self._publish_outbox)
        try:
            done.result(_REQUEST_TIMEOUT + 5)
        except Exception as exc:
            raise UnavailableError(f"the bus could not store the events in NATS JetStream at {self.describe()}: "
                                   f"{exc or type(exc).__name__}") from exc

    def receive(self, target: str) -> Message | None:
        got = self.receive_many(target, 1)
        return got[0] if got else None

    def receive_many(self, target: str, limit: int) -> list[Message]:
        """Handed out from the messages already fetched, else from the fetch started when the last one
        returned (so the next batch travels while the worker runs this one), else a new fetch."""
        ready = self._ready[target]
        while True:
            if self._closed:  # what it had fetched is NAKed by close(), for another process
                return []
            if ready:
                out = self._hand_out(target, ready, limit)
                if out:
                    return out
                continue  # all were poison: dead-lettered
            with self._lock:  # so close() either sees this fetch to cancel it, or this sees it closed
                if self._closed:
                    return []
                future = self._prefetch.pop(target, None) or self._start_fetch(target)
            try:
                msgs = future.result()
            except (FutureCancelled, asyncio.CancelledError):
                return []
            except (TimeoutError, nats.errors.TimeoutError, FutureTimeout):
                continue
            except Exception as exc:  # connection lost meanwhile: nats-py reconnects; ask again shortly
                if not self._closed:
                    log.warning("fetching %s from NATS JetStream failed, retrying: %s", target, exc)
                    time.sleep(0.5)
                continue
            finally:
                with self._lock:
                    self._fetches.discard(future)
            # Not for an exclusive target: its next message must go to whichever process is free first.
            with self._lock:
                if not self._closed and self._batch[target] > 1:
                    self._prefetch[target] = self._start_fetch(target)
            ready.extend(self._take(target, msgs))

    def _hand_out(self, target: str, ready: deque[Message], limit: int) -> list[Message]:
        """Up to ``limit`` of ``ready``. A message a process may have died on (see :meth:`_suspect`) goes out
        alone, after its handling is counted in the marks bucket; one whose count reached ``poison_after``
        goes to the bus's poison callback instead (empty list: it was)."""
        out: list[Message] = []
        while ready and len(out) < limit:
            if id(ready[0]) in self._suspects:
                if out:
                    break
                message = ready.popleft()
                self._suspects.discard(id(message))
                reason = self._count_handling(target, message)
                if reason is None:
                    return [message]
                self._give_up(message, reason)
                continue
            out.append(ready.popleft())
        return out

    def _count_handling(self, target: str, message: Message) -> str | None:
        """Count one more handling of ``message`` (a redelivery) in the marks bucket: None to hand it out,
        or why it is poison (``poison_after`` handlings counted already, none of which finished). Should the
        bucket not answer, the message is handed out (counting is a safeguard, never a reason not to deliver)."""
        msg = self._inflight.get(id(message))
        if msg is None or self._poison is None:
            return None
        key = f"{token(target)}.{msg.metadata.sequence.stream}"

        async def bump() -> int:
            marks = await self._marks_bucket()
            try:
                entry = await marks.get(key)
                counted = int(entry.value or b"0")
            except nats.js.errors.NotFoundError:
                counted = 0
            if counted < self.poison_after:
                await marks.put(key, str(counted + 1).encode())
            return counted

        try:
            counted = self._run(bump(), _REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot count the deliveries of message %s of %s in bucket %s (%s): handed out",
                        msg.metadata.sequence.stream, target, self.marks_bucket, exc)
            return None
        self._marked[id(message)] = key
        if counted < self.poison_after:
            return None
        return (f"poison: handed out {msg.metadata.num_delivered} times, and {counted} handlings after the first "
                "never finished (the process handling it died, or stopped before it was done, each time); "
                "not handed to the target again")

    def _give_up(self, message: Message, reason: str) -> None:
        assert self._poison is not None
        msg = self._inflight.get(id(message))
        log.error("message %s of %s (%d event(s), attempt %d) dead-lettered as poison: %s",
                  msg.metadata.sequence.stream if msg is not None else "?", message.target, len(message.events),
                  message.attempt, reason)
        self._poison(message, reason)  # dead-letters it, then acks it

    async def _marks_bucket(self) -> KeyValue:
        """The key-value bucket counting handlings of redelivered messages, created on first use (only a
        redelivery needs it)."""
        if self._marks is None:
            try:
                self._marks = await self._js.key_value(self.marks_bucket)
            except nats.js.errors.BucketNotFoundError:
                ttl = self._config.max_age if self._config.max_age and self._config.max_age > 0 else None
                self._marks = await self._js.create_key_value(KeyValueConfig(
                    bucket=self.marks_bucket, history=1, ttl=ttl, storage=StorageType.FILE,
                    description=f"sbt: unfinished handlings of redelivered messages of stream {self.stream}"))
        return self._marks

    def _start_fetch(self, target: str) -> Future[list[Msg]]:
        """(Lock held.) A fetch of ``target``'s next messages, running on the loop; close() cancels it."""
        future = asyncio.run_coroutine_threadsafe(self._fetch(self._subs[target], self._batch[target]), self._loop)
        self._fetches.add(future)
        return future

    def ack(self, message: Message) -> None:
        msg = self._inflight.pop(id(message), None)
        mark = self._marked.pop(id(message), None)
        if msg is None or self._closed:
            return
        if mark is not None:  # its handling finished: its count goes (rare: redeliveries only)
            self._loop.call_soon_threadsafe(self._spawn, self._unmark(mark))
        # Queued, and sent by one task per wake-up of the loop: a worker acking a burst of messages wakes
        # the loop once rather than once per message.
        with self._ack_lock:
            self._acks.append(msg)
            first = len(self._acks) == 1
        if first:
            self._loop.call_soon_threadsafe(self._send_acks)

    def close(self) -> None:
        """Wake the receivers and disconnect. Messages handed out and not acked are NAKed, so another
        process takes them at once (JetStream keeps everything else for the next consumer)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fetches = list(self._fetches)
        for future in fetches:
            future.cancel()
        self._heartbeat.cancel()
        with self._out_lock:
            unsent, self._outbox = self._outbox, []
        for _, done in unsent:
            done.set_exception(RuntimeError("the transport is closed"))
        left = list(self._inflight.values())
        self._inflight.clear()
        for future in fetches:  # a prefetch that had arrived: its messages are this process's too
            if future.done() and not future.cancelled() and future.exception() is None:
                left += future.result()

        async def finish() -> None:
            await self._ack_all(self._take_acks())
            # Interest in the fetches still open on the server goes first, so that a server that checks it does
            # not hand a NAKed message straight back to this process's expiring pull request.
            await asyncio.gather(*(sub.unsubscribe() for sub in self._subs.values()), return_exceptions=True)
            await asyncio.gather(*(msg.nak() for msg in left), return_exceptions=True)
            if self._nc is not None:
                await self._nc.close()  # flushes the acks and NAKs written so far

        try:
            self._run(finish(), _REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - un-acked messages come back after ack_wait anyway
            log.warning("closing the NATS connection to %s: %s", self.describe(), exc)
        self._shutdown()

    def take_stranded(self, targets: Collection[str]) -> list[Message]:
        """Nothing is taken: the consumers of targets not in ``targets`` are named in a warning, left as they
        are. Several processes may run different config versions (a rolling deploy): the target this process
        lacks may be one a newer config added, or one an older config still delivers, so deleting its consumer
        or taking its messages here could steal them from a process that handles them. ``sbt events
        drop-target`` (:meth:`drop_target`) does it once every process runs the config without it."""
        try:
            stranded = self.stranded(targets)
        except UnavailableError as exc:
            log.warning("cannot list the consumers of stream %s: %s", self.stream, exc)
            return []
        if stranded:
            log.warning(
                "stream %s has consumer(s) of target(s) this config does not have: %s. Left as they are (another "
                "process may run a config version that has them); once no process's config has one, `sbt events "
                "drop-target <target>` dead-letters its messages and deletes its consumer", self.stream,
                "; ".join(f"{c.target} ({c.waiting} message(s) not acked, "
                          f"{'pulled by a running process' if c.pulled else 'no process pulling'})" for c in stranded))
        return []

    def stranded(self, targets: Collection[str]) -> list[StrandedConsumer]:
        """The durable consumers of the stream's subjects (``<subject_prefix>.<token>``) for no target of
        ``targets``, by target name.

        :raises UnavailableError: JetStream did not answer.
        """
        names = {token(target) for target in targets}
        try:
            infos = self._run(self._js._jsm.consumers_info(self.stream), _REQUEST_TIMEOUT)
        except Exception as exc:
            raise UnavailableError(f"NATS JetStream at {self.describe()}: {exc or type(exc).__name__}") from exc
        out = []
        for info in infos:
            name = info.config.durable_name or info.name
            if not name or name in names or not (info.config.filter_subject or "").startswith(f"{self.prefix}."):
                continue
            waiting = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            out.append(StrandedConsumer(untoken(name), name, waiting, bool(info.num_waiting)))
        return sorted(out, key=lambda c: c.target)

    def drop_target(self, target: str, dead_letters: DeadLetterStore, *, force: bool = False,
                    wait_seconds: float = 1.0) -> DropOutcome:
        """Dead-letter (in ``dead_letters``, reason "target removed") every message of ``target``'s consumer
        it can take within ``wait_seconds`` of the last one, ack them, then — when none is left — delete the
        consumer and purge the target's subject. A message handed out to a process or held back for a retry
        cannot be taken: then the consumer is kept and :attr:`DropOutcome.left` counts them.

        :raises NotFoundError: the stream has no consumer for ``target``.
        :raises ConflictError: a process pulls from it now (its config has ``target``) and ``force`` is False.
        :raises UnavailableError: JetStream did not answer.
        """
        name, jsm = token(target), self._js._jsm
        reason = (f"target removed: {target} is in no config any more (its messages dead-lettered by sbt events "
                  "drop-target)")

        async def drop() -> DropOutcome:
            try:
                info = await jsm.consumer_info(self.stream, name)
            except nats.js.errors.NotFoundError:
                raise NotFoundError(f"stream {self.stream} has no consumer for target {target}") from None
            if info.num_waiting and not force:
                raise ConflictError(f"a process is pulling {target}'s messages from stream {self.stream} (its config "
                                    "has the target): stop it or deploy the config without the target first, or "
                                    "pass --force")
            sub = await self._js.pull_subscribe_bind(durable=name, stream=self.stream)
            dead = 0
            try:
                while True:
                    try:
                        msgs = await sub.fetch(_FETCH, timeout=wait_seconds)
                    except (TimeoutError, nats.errors.TimeoutError):
                        break
                    letters: list[DeadLetter] = []
                    for msg in msgs:
                        try:
                            headers = msg.headers or {}
                            attempt = int(headers.get("Sbt-Attempt", 1))
                            events = decode_events(msg.data)
                        except (ValueError, TypeError, KeyError, IndexError) as exc:
                            log.error("message %s on %s cannot be read (%s): dropped", msg.metadata.sequence.stream,
                                      msg.subject, exc)
                            continue
                        when = utcnow()
                        letters += (DeadLetter(event, target, attempt - 1, reason, when) for event in events)
                    # Kept before they are acked: a crash in between delivers them once more, never loses them.
                    await asyncio.to_thread(dead_letters.add, letters)
                    dead += len(letters)
                    await self._ack_all(msgs)
                await self._js._nc.flush()  # the acks, before the count of what is left
                info = await jsm.consumer_info(self.stream, name)
                left = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
                if left:
                    return DropOutcome(target, dead, left, False)
                await jsm.delete_consumer(self.stream, name)
                await jsm.purge_stream(self.stream, subject=f"{self.prefix}.{name}")
                return DropOutcome(target, dead, 0, True)
            finally:
                await sub.unsubscribe()

        try:
            return self._run(drop(), _REQUEST_TIMEOUT * 30)
        except (NotFoundError, ConflictError):
            raise
        except Exception as exc:
            raise UnavailableError(f"NATS JetStream at {self.describe()}: {exc or type(exc).__name__}") from exc

    # --- health ----------------------------------------------------------------------------------------

    def check(self) -> str | None:
        """None when JetStream answers for the stream, else what is wrong (``/health``)."""
        if self._closed:
            return "the transport is closed"
        try:
            self._run(self._js._jsm.stream_info(self.stream), 2.0)
        except Exception as exc:  # noqa: BLE001
            return f"NATS JetStream at {self.describe()}: {exc or type(exc).__name__}"
        return None

    def pending(self, target: str) -> int:
        """Messages of ``target`` in the stream not yet acked by any process (waiting, handed out, or held
        back for a retry): JetStream's consumer ``num_pending + num_ack_pending``.

        :raises UnavailableError: JetStream did not answer.
        """
        try:
            info = self._run(self._js._jsm.consumer_info(self.stream, token(target)), _REQUEST_TIMEOUT)
        except Exception as exc:
            raise UnavailableError(f"NATS JetStream at {self.describe()}: {exc or type(exc).__name__}") from exc
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    # --- internals -------------------------------------------------------------------------------------

    def _take(self, target: str, msgs: list[Msg]) -> list[Message]:
        """Decode fetched messages; those not yet due go back to JetStream with the rest of their delay."""
        out: list[Message] = []
        now = time.time()
        for msg in msgs:
            headers = msg.headers or {}
            due = float(headers.get("Sbt-Due", 0) or 0)
            if due > now:
                self._loop.call_soon_threadsafe(self._spawn, msg.nak(delay=due - now))
                continue
            try:
                events = self._sent_events(msg.metadata.sequence.stream)
                if events is None:
                    events = decode_events(msg.data)
                message = Message(target, events, batch=int(headers.get("Sbt-Batch", 0)))
                attempt = int(headers.get("Sbt-Attempt", 1))
                if attempt != 1:
                    message = Message(target, message.events, attempt, message.batch)
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                # Not ours (or corrupt): kept in the stream for inspection, never handed out again.
                log.error("message %s on %s cannot be read (%s): terminated", msg.metadata.sequence.stream,
                          msg.subject, exc)
                self._loop.call_soon_threadsafe(self._spawn, msg.term())
                continue
            self._inflight[id(message)] = msg
            if _suspect(msg):
                self._suspects.add(id(message))
            out.append(message)
        return out

    async def _fetch(self, sub: JetStreamContext.PullSubscription, batch: int) -> list[Msg]:
        """The next message (waiting up to ``_POLL_SECONDS`` for one), then as many of those JetStream said were
        waiting behind it as are there within ``_DRAIN_SECONDS``, up to ``batch`` in all. One fetch of
        ``batch`` would not do: once its request waits on the server, nats-py returns it only when ``batch``
        messages came or it expired, so messages arriving a few at a time (another process takes the rest)
        would sit in it for up to ``_POLL_SECONDS``."""
        try:
            got = await sub.fetch(1, timeout=_POLL_SECONDS)
            more = min(batch - 1, int(got[-1].metadata.num_pending or 0)) if got else 0
            if more > 0:
                try:
                    got += await sub.fetch(more, timeout=_DRAIN_SECONDS)
                except (TimeoutError, nats.errors.TimeoutError):
                    pass  # another process took them
            return got
        except nats.errors.ConnectionClosedError:
            if self._closed:  # close() won the race with this fetch's cancellation
                return []
            raise

    def _publish_outbox(self) -> None:
        """(On the loop.) Publish every queued send; each caller is answered once JetStream acked all of its
        messages. The publishes are written back to back and their acks awaited together (``publish_async``):
        no task or wait per message, one flush for all."""
        with self._out_lock:
            sends, self._outbox = self._outbox, []
        if sends:
            self._spawn(self._publish(sends))

    async def _publish(self, sends: list[tuple[list[_Publish], Future[None]]]) -> None:
        for items, done in sends:
            acks: list[asyncio.Future[Any]] = []
            try:
                for subject, body, headers, _ in items:
                    acks.append(await self._js.publish_async(subject, body, headers=headers, stream=self.stream))
            except Exception as exc:  # noqa: BLE001 - told to the caller, who answers 503
                for ack in acks:
                    ack.cancel()
                if not done.done():
                    done.set_exception(exc)
                continue
            _answer_when_acked(self._loop, acks, done)
            for ack, (_, _, _, events) in zip(acks, items, strict=True):
                ack.add_done_callback(partial(self._keep_sent, events))

    def _keep_sent(self, events: tuple[Event, ...], ack: asyncio.Future[Any]) -> None:
        """(On the loop.) Remember the events JetStream stored under the ack's sequence (not a duplicate's:
        the stored message may be another sender's)."""
        if ack.cancelled() or ack.exception() is not None or getattr(ack.result(), "duplicate", False):
            return
        with self._out_lock:
            self._sent_here[ack.result().seq] = events
            self._sent_here_events += len(events)
            while self._sent_here_events > _KEPT_EVENTS:
                self._sent_here_events -= len(self._sent_here.pop(next(iter(self._sent_here))))

    def _sent_events(self, seq: int) -> tuple[Event, ...] | None:
        with self._out_lock:
            events = self._sent_here.pop(seq, None)
            if events is not None:
                self._sent_here_events -= len(events)
        return events

    async def _unmark(self, key: str) -> None:
        await (await self._marks_bucket()).purge(key)

    def on_poison(self, dead_letter: Callable[[Message, str], None]) -> None:
        self._poison = dead_letter

    def _take_acks(self) -> list[Msg]:
        with self._ack_lock:
            acks, self._acks = self._acks, []
        return acks

    def _send_acks(self) -> None:
        """(On the loop.) Send the acks queued so far."""
        acks = self._take_acks()
        if acks:
            self._spawn(self._ack_all(acks))

    @staticmethod
    async def _ack_all(msgs: list[Msg]) -> None:
        for msg in msgs:
            try:
                await msg.ack()
            except Exception as exc:  # noqa: BLE001 - not acked: JetStream redelivers it (at-least-once)
                log.debug("NATS ack failed: %s", exc)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self._loop.create_task(coro)
        task.add_done_callback(_quiet)

    async def _keep_in_progress(self) -> None:
        """Every ack_wait/3, tell JetStream that the messages handed out are still being worked on."""
        while True:
            await asyncio.sleep(self.ack_wait / 3)
            for msg in list(self._inflight.values()):
                try:
                    await msg.in_progress()
                except Exception:  # noqa: BLE001, S112 - disconnected: JetStream redelivers, at-least-once
                    continue

    async def _ensure_stream(self) -> None:
        jsm = self._js._jsm
        try:
            info = await jsm.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await jsm.add_stream(self._config)
            log.info("created JetStream stream %s on %s", self.stream, self._config.subjects)
            return
        current = info.config
        if current.retention != self._config.retention:
            raise StartupError(f"stream {self.stream} has retention {current.retention}, the config asks for "
                               f"{self._config.retention} (JetStream cannot change it: delete the stream or "
                               "change [events] retention)")
        subjects = sorted({*(current.subjects or []), *(self._config.subjects or [])})
        if (current.subjects != subjects or current.max_age != self._config.max_age
                or current.max_bytes != self._config.max_bytes
                or current.duplicate_window != self._config.duplicate_window):
            await jsm.update_stream(dataclasses.replace(current, subjects=subjects, max_age=self._config.max_age,
                                                        max_bytes=self._config.max_bytes,
                                                        duplicate_window=self._config.duplicate_window))

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _on_error(self, exc: Exception) -> None:
        if not self._closed:
            log.warning("NATS connection to %s: %s", self.describe(), exc)

    def _shutdown(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                self._run(self._nc.close(), 5.0)
            except Exception:  # noqa: BLE001, S110 - best effort at shutdown
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)


def _suspect(msg: Msg) -> bool:
    """Whether a process may have died handling ``msg``: JetStream handed it out before (twice before for a
    delayed retry, which is normally received once early and NAKed until due). The count also grows when a
    process only held it (fetched, not yet handed to its worker) or stopped and NAKed it, so it only makes a
    message a suspect; the marks bucket counts the handlings that actually started."""
    delivered = msg.metadata.num_delivered or 1
    return delivered > (2 if msg.headers and "Sbt-Due" in msg.headers else 1)


def _answer_when_acked(loop: asyncio.AbstractEventLoop, acks: list[asyncio.Future[Any]], done: Future[None]) -> None:
    """Resolve ``done`` once every publish ack of ``acks`` arrived (None), or with the first error; acks
    missing after the request timeout are given up on (a TimeoutError for the caller)."""
    left = len(acks)

    def one(ack: asyncio.Future[Any]) -> None:
        nonlocal left
        if done.done():
            return
        if ack.cancelled():
            done.set_exception(TimeoutError("no publish ack from JetStream"))
        elif (exc := ack.exception()) is not None:
            done.set_exception(exc)
        else:
            left -= 1
            if left == 0:
                done.set_result(None)
        if done.done():
            timer.cancel()
            for other in acks:
                other.cancel()  # a no-op on those done; frees publish_async's slots of the others

    timer = loop.call_later(_REQUEST_TIMEOUT, lambda: [ack.cancel() for ack in acks])
    for ack in acks:
        ack.add_done_callback(one)


def _quiet(task: asyncio.Task[Any]) -> None:
    """Fire-and-forget acks and NAKs: a failure means the message is redelivered (at-least-once)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("NATS ack/nak failed: %s", task.exception())
