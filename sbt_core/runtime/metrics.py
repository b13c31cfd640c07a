"""Prometheus metrics of a running control plane (prometheus-client), served at ``GET /metrics``.

Every control plane keeps its own :class:`Metrics` in a registry of its own (not prometheus-client's
global one), so two control planes in one process (tests) never share a counter. The families, all
prefixed ``sbt_`` (counters are exposed with prometheus-client's ``_total`` suffix):

==========================================  ======================  =============================================
family                                      labels                  what it counts
==========================================  ======================  =============================================
``sbt_http_requests_total``                 method, route, status   answered requests; ``route`` is the path
                                                                    template (``/meters/{meterId}``), or
                                                                    ``unmatched`` for a path no route serves
``sbt_http_request_duration_seconds``       method, route           time to answer (histogram)
``sbt_events_accepted_total``               binding                 events queued for a bus target
``sbt_events_delivered_total``              binding                 events its handler took
``sbt_events_retried_total``                binding                 failed attempts that will be tried again
``sbt_events_dead_lettered_total``          binding, reason         events dead-lettered; reason: ``refused``
                                                                    (not retryable), ``retries_exhausted``,
                                                                    ``internal_error``, ``stopped``,
                                                                    ``poison`` (killed every process handling it)
``sbt_bus_queue_depth``                     binding                 events queued, running or waiting to retry
``sbt_bus_oldest_message_age_seconds``      binding                 age of the oldest of those (0: none)
``sbt_schedule_firings_total``              hook, trigger           runs handed to the bus; trigger:
                                                                    ``schedule`` or ``manual``
``sbt_metering_ingested_events_total``      —                       usage events the metering provider recorded
``sbt_metering_refused_events_total``       reason                  usage events dead-lettered (reasons as above)
``sbt_provider_hook_duration_seconds``      hook, provider          time in a provider's hook (histogram)
==========================================  ======================  =============================================

Bounded label values only: routes are templates, bindings and hooks come from the binding table, reasons
from the list above, so a client can never grow the number of series.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ForbiddenError
from .bus.core import DeadLetterReason
from .contracts import RouteDoc, RouteGroup, document_route

if TYPE_CHECKING:
    from .authorizer import Authorizer

__all__ = ["INGEST_HOOK", "Metrics", "MetricsMiddleware", "QueueStats", "metrics_routes"]

#: The binding whose deliveries are metering ingest (its batch form is delivered under the same target).
INGEST_HOOK = "metering_ingest_usage_event"

#: (binding, events outstanding, age in seconds of the oldest of them) for each bus target.
QueueStats = tuple[str, int, float]

# Request latencies: a local call answers in well under a millisecond, a provider over the network in
# tens to hundreds of milliseconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _QueueCollector(Collector):
    """Queue depth and oldest message age per target, read from the bus at scrape time."""

    def __init__(self, source: Callable[[], Iterable[QueueStats]]) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("sbt_bus_queue_depth", "Events queued, running or waiting to retry, per binding.",
                                  labels=["binding"])
        age = GaugeMetricFamily("sbt_bus_oldest_message_age_seconds",
                                "Age of the oldest event still queued, running or waiting to retry (0: none).",
                                labels=["binding"])
        for binding, outstanding, oldest in self._source():
            depth.add_metric([binding], outstanding)
            age.add_metric([binding], oldest)
        yield depth
        yield age


class Metrics:
    """The control plane's metric families (see the module docstring), in :attr:`registry`.

    The bus, the scheduler, the providers' callers and the HTTP middleware record into it; the methods
    below are what they call, so none of them knows prometheus-client.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("sbt_http_requests", "HTTP requests answered.", ["method", "route", "status"],
                                     registry=r)
        self.http_duration = Histogram("sbt_http_request_duration_seconds", "Time to answer an HTTP request.",
                                       ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.events_accepted = Counter("sbt_events_accepted", "Events queued for a bus target.", ["binding"],
                                       registry=r)
        self.events_delivered = Counter("sbt_events_delivered", "Events a bus target's handler took.", ["binding"],
                                        registry=r)
        self.events_retried = Counter("sbt_events_retried", "Failed attempts that will be tried again.", ["binding"],
                                      registry=r)
        self.events_dead_lettered = Counter("sbt_events_dead_lettered", "Events dead-lettered.", ["binding", "reason"],
                                            registry=r)
        self.schedule_firings = Counter("sbt_schedule_firings", "Schedule runs handed to the bus.", ["hook", "trigger"],
                                        registry=r)
        self.metering_ingested = Counter("sbt_metering_ingested_events", "Usage events the metering provider recorded.",
                                         registry=r)
        self.metering_refused = Counter("sbt_metering_refused_events", "Usage events dead-lettered, by reason.",
                                        ["reason"], registry=r)
        self.hook_duration = Histogram("sbt_provider_hook_duration_seconds", "Time spent in a provider's hook.",
                                       ["hook", "provider"], buckets=_LATENCY_BUCKETS, registry=r)

    # --- recorders -------------------------------------------------------------------------------------

    def accepted(self, binding: str, count: int) -> None:
        self.events_accepted.labels(binding).inc(count)

    def delivered(self, binding: str, count: int) -> None:
        if count:
            self.events_delivered.labels(binding).inc(count)
            if binding == INGEST_HOOK:
                self.metering_ingested.inc(count)

    def retried(self, binding: str, count: int) -> None:
        if count:
            self.events_retried.labels(binding).inc(count)

    def dead_lettered(self, binding: str, reason: DeadLetterReason, count: int = 1) -> None:
        self.events_dead_lettered.labels(binding, reason).inc(count)
        if binding == INGEST_HOOK:
            self.metering_refused.labels(reason).inc(count)

    def fired(self, hook: str, manual: bool) -> None:
        self.schedule_firings.labels(hook, "manual" if manual else "schedule").inc()

    def hook_called(self, hook: str, provider: str, seconds: float) -> None:
        self.hook_duration.labels(hook, provider).observe(seconds)

    def watch_queues(self, source: Callable[[], Iterable[QueueStats]]) -> None:
        """Report ``source()`` (the bus's :meth:`~sbt_core.runtime.bus.Bus.queue_stats`) at every scrape."""
        self.registry.register(_QueueCollector(source))

    def exposition(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status (pure ASGI, so a streamed
    or failed response is counted too; a request whose client went away before an answer counts as 499)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 499
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = 500
            raise
        finally:
            # Starlette's router writes the matched route into the scope it was given (this same dict).
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_duration.labels(method, template).observe(time.perf_counter() - start)


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an address (a Unix socket, an in-process test client): not provably local
        return False


def metrics_routes(metrics: Metrics, access: str, authorizer: Callable[[], Authorizer | None]) -> RouteGroup:
    """``GET /metrics``: :meth:`Metrics.exposition` as ``text/plain`` (prometheus-client's ``CONTENT_TYPE_LATEST``).

    :param access: ``[server] metrics``: ``loopback`` (answered without a token to clients on a loopback
        address, 403 to others), ``scope`` (a bearer token with scope ``event/event_read``, from anywhere)
        or ``open`` (anyone who reaches the port). ``off`` mounts no route.
    :param authorizer: the HTTP app's authorizer, read when a request comes (built after this group).
    """
    from ..models.scopes import EVENT_READ
    from .authorizer import bearer_token

    if access == "off":
        return []
    from ..bindings import CORE_ROUTES

    trigger = next(r for r in CORE_ROUTES if (r.method, r.path) == ("GET", "/metrics"))

    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus metrics of this process (text exposition format)."""
        if access == "loopback" and not _loopback(request):
            raise ForbiddenError("/metrics answers loopback clients only ([server] metrics = \"loopback\")")
        if access == "scope":
            verifier = authorizer()
            if verifier is None:
                raise ForbiddenError("/metrics needs a token but no auth provider is configured")
            claims = verifier.verify(bearer_token(request.headers.get("authorization")))
            verifier.check_scope(claims, EVENT_READ)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    document_route(metrics_endpoint, RouteDoc(operation_id="metrics", tag="core", media_type="text/plain",
                                              response_schema=lambda reg: {"type": "string"}))
    return [(trigger, metrics_endpoint)]

