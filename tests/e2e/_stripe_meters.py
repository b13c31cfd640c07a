"""A loopback HTTP front for localstripe that adds Stripe's Billing Meter events endpoint.

localstripe has no Billing Meters, so ``POST
/v1/billing/meter_events`` is answered here with the object Stripe documents and recorded, with Stripe's
identifier and idempotency-key rules (see :class:`MeterEvents`); every other
request is forwarded to localstripe unchanged. An HTTP-level stub is used only where no
fake exists, which is this endpoint alone.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx


class MeterEvents:
    """Meter events received, as Stripe would store them: ``{event_name, identifier, payload, timestamp}``.

    With Stripe's rules: an ``identifier`` already received is a duplicate, answered as accepted but not
    counted again (``duplicates``); an ``Idempotency-Key`` reused with a different body is refused with 400
    ``idempotency_key_in_use`` (``key_conflicts``), a reuse with the same body replays the first answer.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.duplicates = 0
        self.key_conflicts = 0
        self._identifiers: set[str] = set()
        self._keys: dict[str, tuple[bytes, dict[str, object]]] = {}
        self._lock = threading.Lock()

    def add(self, form: dict[str, str], body: bytes = b"", key: str | None = None) -> tuple[int, dict[str, object]]:
        """Status and answer of one ``POST /v1/billing/meter_events``."""
        payload = {k[len("payload["):-1]: v for k, v in form.items() if k.startswith("payload[")}
        event = {"object": "billing.meter_event", "event_name": form["event_name"],
                 "identifier": form.get("identifier"), "payload": payload,
                 "timestamp": int(form.get("timestamp", time.time())), "created": int(time.time()),
                 "livemode": False}
        with self._lock:
            if key is not None and key in self._keys:
                first_body, first_answer = self._keys[key]
                if first_body != body:
                    self.key_conflicts += 1
                    return 400, {"error": {"type": "idempotency_error", "code": "idempotency_key_in_use"}}
                return 200, first_answer
            identifier = form.get("identifier")
            if identifier is not None and identifier in self._identifiers:
                self.duplicates += 1
            else:
                if identifier is not None:
                    self._identifiers.add(identifier)
                self.events.append(event)
            if key is not None:
                self._keys[key] = (body, event)
        return 200, event


@contextmanager
def stripe_front(localstripe: str) -> Iterator[tuple[str, MeterEvents]]:
    """Serve the front on 127.0.0.1 and a free port; yields its URL and the meter events it received."""
    received = MeterEvents()
    upstream = httpx.Client(base_url=localstripe, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.command == "POST" and self.path.split("?")[0] == "/v1/billing/meter_events":
                status, obj = received.add(dict(parse_qsl(body.decode())), body, self.headers.get("Idempotency-Key"))
                answer, headers = json.dumps(obj).encode(), {"Content-Type": "application/json"}
            else:
                reply = upstream.request(self.command, self.path, content=body,
                                         headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                answer, status = reply.content, reply.status_code
                headers = {"Content-Type": reply.headers.get("content-type", "application/json")}
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_DELETE = _forward  # noqa: N815 (http.server's names)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()
