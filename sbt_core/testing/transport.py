"""What every bus transport must do, as a check a new transport (an external broker) runs in its tests::

    def test_my_broker_is_a_transport(broker_url):
        check_transport(lambda: RedisTransport(broker_url))

The checks never sleep: a delay is only checked to hold a message back behind one sent after it, never
for how long.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..models import Event
from ..runtime.bus import Message, Transport

__all__ = ["check_transport"]

_WAIT = 10.0  # hang guard


def _message(target: str, n: int) -> Message:
    return Message(target, Event.create("transportCheck", {"n": n}))


def _ids(message: Message | None) -> list[str]:
    return [] if message is None else [e.id for e in message.events]


def check_transport(make: Callable[[], Transport]) -> None:
    """Run the transport contract against fresh transports from ``make``; raises AssertionError."""
    # FIFO per target, targets independent.
    t = make()
    t.open("a")
    t.open("b")
    sent = [_message("a", i) for i in range(5)] + [_message("b", 9)]
    t.send(sent)
    got_b = t.receive("b")
    assert _ids(got_b) == _ids(sent[-1]), "targets must not share a queue"
    got_a = [t.receive("a") for _ in range(2)] + t.receive_many("a", 10)
    assert [_ids(m) for m in got_a] == [_ids(m) for m in sent[:5]], "one target's messages keep their order"
    for m in got_a:
        if m is not None:
            t.ack(m)
    # Message fields survive the trip (a broker serialises them), a batch of events as well as one.
    batch = Message("a", [sent[1].events[0], sent[2].events[0]], batch=7)
    t.send([batch])
    assert t.receive("a") == batch, "a message of several events must round-trip unchanged, batch number included"
    retry = Message("a", sent[0].events, attempt=3)
    t.send([retry])
    back = t.receive("a")
    assert back == retry, "target, event and attempt must round-trip unchanged"
    # A delayed message is not handed out before an immediate one sent after it.
    t.send([_message("a", 100)], delay=3600)
    now = _message("a", 101)
    t.send([now])
    first = t.receive("a")
    assert _ids(first) == _ids(now), "a delayed message must wait"
    # close() wakes a blocked receive, which then answers None; receive_many answers [].
    woke: list[object] = []
    waiter = threading.Thread(target=lambda: woke.append(t.receive("b")))
    waiter.start()
    t.close()
    waiter.join(_WAIT)
    assert woke == [None], "close() must wake blocked receivers with None"
    assert t.receive_many("b", 5) == []
