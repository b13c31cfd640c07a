"""The ControlPlane: config -> providers -> binding table -> bus + HTTP app + scheduler (docs/design.md section 6).

::

    catalog = discover()
    config = load_config(catalog, path)
    cp = ControlPlane.from_config(catalog, config)
    cp.add_component(my_component)          # optional, before start: routes + bus subscribers
    await cp.start()                        # sbt_startup, auth settings, admin user, bus, scheduler
    app = cp.asgi_app                       # the Starlette app (serve it with uvicorn)
    ...
    await cp.stop()                         # stop the scheduler, drain the bus, sbt_shutdown

``open()``/``close()`` are the same steps for synchronous callers (tests, the CLI). Core components
(the tenant registry) plug in through :meth:`ControlPlane.add_component` — anything with ``routes``
(a RouteGroup), ``attach(bus)`` (subscribe and keep the bus to publish), ``start()`` and ``close()`` —
or separately through :meth:`ControlPlane.add_routes` and :meth:`ControlPlane.subscribe`.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from ..bindings import BindingTable, build_binding_table
from ..config import Config
from ..errors import StartupError
from ..models import AuthSettings, Event, User, utcnow
from ..plugins import PluginCatalog, Providers, build_providers
from ..triggers import EventTrigger
from .bus import Bus, DeadLetterStore, SqlDeadLetters, SqliteTransport, Transport, dead_letter_routes
from .bus.shared_log import SqlEventLog
from .contracts import EventBus, RouteGroup
from .metrics import Metrics, metrics_routes
from .scheduler import Scheduler, schedule_routes

__all__ = ["SERVING_GC_THRESHOLD", "Component", "ControlPlane", "dead_letter_store", "tune_gc_for_serving"]

log = logging.getLogger("sbt.runtime")

#: Container allocations between young-generation collections in a serving process (CPython's default: 700).
SERVING_GC_THRESHOLD = 50_000


def tune_gc_for_serving() -> None:
    """Tune CPython's cyclic garbage collector for a process that serves the control plane, once started.

    A hundred-entry ``POST /events`` allocates more than 700 containers (envelopes, details) that live
    until the bus has delivered them, a millisecond or two. With CPython's default threshold every request
    triggered a young collection that found them all alive and moved them to an older generation, where
    the next collections traversed them again: about a third of the request's cost in the in-process
    ``benchmarks/http.py`` (less over uvicorn, where the HTTP machinery allocates its own). With
    ``SERVING_GC_THRESHOLD`` they are freed by reference counting before a collection sees them.
    ``gc.freeze()`` also moves everything start-up allocated (modules, config, providers) out of the
    collector's sight, so a full collection traverses only what traffic keeps alive, a common recipe for
    long-running Python servers. Reference counting still frees everything else at once; only garbage
    cycles wait longer to be collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(SERVING_GC_THRESHOLD, *gc.get_threshold()[1:])


class Component(Protocol):
    """A core component run by the control plane (e.g. :class:`sbt_core.tenants.TenantRegistry`)."""

    @property
    def routes(self) -> RouteGroup:
        """Core routes it serves (mounted by the HTTP app with the authorizer and scopes)."""

    def attach(self, bus: EventBus) -> None:
        """Subscribe to ``bus`` and keep it to publish; called once, before start."""

    def start(self) -> None:
        """Open what it needs; called at start, after the providers and before traffic."""

    def close(self) -> None:
        """Release resources; called at stop, after the bus drained."""


def _transport(config: Config) -> Transport | None:
    """The transport ``[events] transport`` names (None: the bus's in-process default).

    :raises StartupError: the queue file cannot be opened, or another process holds it.
    """
    if config.events.transport == "nats":
        from .bus.nats_transport import NatsTransport  # nats-py only where it is used

        return NatsTransport.from_config(config.events)
    if config.events.transport != "sqlite":
        return None
    return SqliteTransport.in_state_dir(config.state_dir)


def dead_letter_store(config: Config) -> DeadLetterStore | None:
    """The store ``[events] dead_letters`` names (None: the bus's in-memory default).

    :raises StartupError: the SQLite file cannot be opened (an unwritable state directory, say).
    """
    url = config.events.database_url
    if url is None and config.events.dead_letters != "sqlite":
        return None
    try:
        if url is not None:
            return SqlDeadLetters(url.get_secret_value())
        return SqlDeadLetters.in_state_dir(config.state_dir)
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(f"cannot open the dead-letter store in {config.state_dir}: "
                           f"{getattr(exc, 'orig', None) or exc}") from exc


def _shared_log(config: Config) -> SqlEventLog | None:
    """The event log shared by every process, with ``[events] database_url`` (None: each bus its own).

    :raises StartupError: the database cannot be reached or its tables created.
    """
    url = config.events.database_url
    if url is None:
        return None
    try:
        return SqlEventLog(url.get_secret_value(), config.events.log_size)
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(f"cannot open the shared event log: {getattr(exc, 'orig', None) or exc}") from exc


class ControlPlane:
    """One running control plane: its providers, binding table, bus, scheduler and HTTP app.

    Build it with :meth:`from_config`. Attributes: ``config``, ``catalog``, ``providers``, ``bindings``,
    ``bus``, ``scheduler``, ``components``, ``metrics`` (Prometheus, ``GET /metrics``); ``auth_settings``
    (the auth provider's, read once) and ``admin_user`` (after start); ``asgi_app`` (built on first access).
    """

    def __init__(self, *, config: Config, catalog: PluginCatalog, providers: Providers, bindings: BindingTable,
                 bus: Bus, scheduler: Scheduler, metrics: Metrics | None = None) -> None:
        self.config = config
        self.catalog = catalog
        self.providers = providers
        self.bindings = bindings
        self.bus = bus
        self.scheduler = scheduler
        self.components: list[Component] = []
        self.admin_user: User | None = None
        self.metrics = metrics or Metrics()
        self.metrics.watch_queues(bus.queue_stats)
        self._route_groups: list[RouteGroup] = [
            dead_letter_routes(bus), schedule_routes(scheduler),
            metrics_routes(self.metrics, config.server.metrics, lambda: getattr(self._app, "state", None)
                           and self._app.state.authorizer)]
        self._auth_settings: AuthSettings | None = None
        self._app: Any = None
        self._server: Any = None  # the uvicorn.Server of serve()
        self._startup_failure: Exception | None = None  # why the lifespan start failed, for serve()
        self._state = "new"  # new -> started -> stopped
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, catalog: PluginCatalog, config: Config, *, transport: Transport | None = None,
                    tenants: bool = True, jobs: bool = True, clock: Callable[[], datetime] = utcnow) -> ControlPlane:
        """Construct the providers (:func:`build_providers`) and the binding table, bind every event
        binding to the bus and every schedule binding to the scheduler, attach the bus to the providers
        (their ``context.publish``), with ``tenants`` open the tenant registry and, with ``jobs``, the
        application plane of the config's ``[[jobs]]`` (none declared: none).

        :param transport: the bus transport (default: the one ``[events] transport`` names).
        :param tenants, jobs: run the tenant registry / the application plane (tests turn them off).
        :param clock: the scheduler's clock (aware UTC), injectable for tests.
        :raises StartupError: a provider misses a required hook or fails to construct, or routes clash.
        :raises ConfigError: a core section (``[tenants]``, ``[[jobs]]``, ``[app_plane]``) is invalid.
        """
        providers = build_providers(catalog, config)
        try:
            bindings = build_binding_table(catalog, config, providers.routes)
            metrics = Metrics()
            providers.time_calls(metrics.hook_called)
            bus = Bus(config.events, transport=transport or _transport(config),
                      dead_letters=dead_letter_store(config), event_log=_shared_log(config), observer=metrics)
            bus.bind(bindings, providers)
            providers.attach(bus.publish)
            scheduler = Scheduler(bus, bindings.schedules(), providers.call, clock=clock, on_fire=metrics.fired)
            cp = cls(config=config, catalog=catalog, providers=providers, bindings=bindings, bus=bus,
                     scheduler=scheduler, metrics=metrics)
            if tenants:
                from ..tenants import open_registry

                cp.add_component(open_registry(config, auth_settings=lambda: cp.auth_settings))
            if jobs and config.sections.get("jobs"):
                from ..app_plane import open_app_plane

                cp.add_component(open_app_plane(config, catalog))
        except BaseException:
            providers.shutdown()  # constructed providers may hold files or connections
            raise
        return cp

    # --- before start: core components ---------------------------------------------------------------------

    def add_routes(self, group: RouteGroup) -> None:
        """Mount ``group`` beside the hook routes; before the app is built, which refuses a route that
        clashes with another and documents each in OpenAPI. Plugins add routes with ``sbt_register_routes``."""
        if self._app is not None:
            raise RuntimeError("routes must be added before the ASGI app is built")
        self._route_groups.append(group)

    def subscribe(self, name: str, trigger: EventTrigger, handler: Callable[[Event], Any]) -> None:
        """A core bus subscriber (same delivery rules as a hook binding); see :meth:`Bus.subscribe`."""
        self.bus.subscribe(name, trigger, handler)

    def add_component(self, component: Component) -> None:
        """Mount its routes, attach it to the bus now; start it at :meth:`open`, close it at :meth:`close`."""
        if self._state != "new":
            raise RuntimeError("components must be added before the control plane starts")
        self.add_routes(component.routes)
        component.attach(self.bus)
        self.components.append(component)

    def health_problems(self) -> list[str]:
        """What this process cannot reach (``/health``): the bus's broker and database, and every component's
        database (a component with a ``check()``); empty when healthy. Blocks on the network: call it from
        a thread."""
        problems = self.bus.health_problems()
        for component in self.components:
            check = getattr(component, "check", None)
            problem = check() if check is not None else None
            if problem is not None:
                problems.append(problem)
        return problems

    @property
    def route_groups(self) -> list[RouteGroup]:
        """Every core route group the HTTP app mounts (dead letters, schedules, components')."""
        return list(self._route_groups)

    # --- auth ------------------------------------------------------------------------------------------

    @property
    def auth_settings(self) -> AuthSettings | None:
        """The selected auth provider's settings (``auth_settings`` hook, called once), or None without one.

        :raises SbtError: the provider failed to answer.
        """
        if self._auth_settings is None and self.providers.auth is not None:
            self._auth_settings = self.providers.auth.settings()
        return self._auth_settings

    @property
    def asgi_app(self) -> Any:
        """The Starlette app (``sbt_core.runtime.http.app.build_app``), built once on first access."""
        if self._app is None:
            from .http.app import ControlPlaneLike, build_app

            self._app = build_app(cast("ControlPlaneLike", self), route_groups=self._route_groups)
        return self._app

    # --- lifecycle ---------------------------------------------------------------------------------------

    def open(self) -> None:
        """Start synchronously: ``sbt_startup`` on every plugin, the auth settings, the configured admin
        (``auth_create_admin_user``, idempotent), the components, the bus workers and the scheduler.
        Idempotent; a failure undoes what was started and raises StartupError naming the step."""
        with self._lock:
            if self._state != "new":
                return
            self._state = "started"
        step = "sbt_startup"
        try:
            self.providers.startup()
            if self.providers.auth is not None:
                step = "auth_settings"
                _ = self.auth_settings
                step = "auth_create_admin_user"
                self.admin_user = self.providers.auth.create_admin_user(self.config.admin)
            for component in self.components:
                step = f"starting {type(component).__name__}"
                component.start()
            self.bus.start()
            self.scheduler.start()
        except Exception as exc:
            self.close(timeout=0)
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            raise StartupError(f"control plane failed to start ({step}): {message}") from exc
        log.info("control plane started: %d event target(s), %d schedule(s)", len(self.bus.targets()),
                 len(self.scheduler.schedules))

    def close(self, timeout: float | None = None) -> bool:
        """Stop synchronously: stop the scheduler, drain the bus (up to ``timeout`` seconds, default
        ``[events] drain_timeout_seconds``), close the components, ``sbt_shutdown`` every plugin.
        Returns False when the drain timed out. Idempotent."""
        with self._lock:
            if self._state == "stopped":
                return True
            self._state = "stopped"
        self.scheduler.stop()
        drained = self.bus.stop(timeout)
        for component in reversed(self.components):
            try:
                component.close()
            except Exception:
                log.exception("component %s failed to close", type(component).__name__)
        self.providers.shutdown()
        return drained

    async def start(self) -> None:
        """:meth:`open` off the event loop (start-up hooks may do I/O)."""
        await run_in_threadpool(self.open)

    async def stop(self, timeout: float | None = None) -> bool:
        """:meth:`close` off the event loop, so draining never blocks it."""
        return await run_in_threadpool(self.close, timeout)

    def lifespan_app(self) -> Any:
        """:attr:`asgi_app` wrapped so the ASGI lifespan starts and stops the control plane: uvicorn's
        graceful shutdown (SIGINT/SIGTERM) then finishes in-flight requests *before* the bus drains."""
        app = self.asgi_app

        async def asgi(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
            if scope["type"] != "lifespan":
                await app(scope, receive, send)
                return
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    try:
                        await self.start()
                    except Exception as exc:
                        self._startup_failure = exc
                        await send({"type": "lifespan.startup.failed", "message": getattr(exc, "message", str(exc))})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

        return asgi

    async def serve(self, host: str | None = None, port: int | None = None, *,
                    ready: Callable[[str], None] | None = None, log_level: str = "info",
                    lifecycle: bool = True) -> None:
        """Run the HTTP app (uvicorn), the bus and the scheduler in this process until uvicorn exits
        (SIGINT/SIGTERM in the main thread, or ``should_exit``): start, serve, then stop with a drain.

        :param host, port: default ``[server]``; port 0 picks a free port.
        :param ready: called with the base URL (``http://host:port``) once the socket listens.
        :param lifecycle: start and stop the control plane with the server, which then owns the process:
            once started, the garbage collector is tuned for serving (:func:`tune_gc_for_serving`). False:
            serve the app of a control plane the caller starts and stops, as the test harness does.
        :raises StartupError: the control plane or the socket failed to start.
        """
        import asyncio

        import uvicorn

        host = host or self.config.server.host
        port = self.config.server.port if port is None else port
        app = self.lifespan_app() if lifecycle else self.asgi_app
        from .logs import uvicorn_log_config

        config = uvicorn.Config(app, host=host, port=port, lifespan="on" if lifecycle else "off",
                                log_level=log_level, access_log=log_level == "debug",
                                log_config=uvicorn_log_config(self.config.server.log_format, log_level))
        server = uvicorn.Server(config)
        self._server = server

        async def serve_until_exit() -> None:
            # uvicorn ends a failed start with sys.exit(3) inside this task; caught here, the failure is the
            # StartupError below (one line on the CLI) instead of asyncio's "exception never retrieved".
            try:
                await server.serve()
            except SystemExit:
                if server.started:
                    raise

        serving = asyncio.create_task(serve_until_exit())
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if lifecycle and server.started:
            tune_gc_for_serving()
        if server.started and ready is not None:
            bound = server.servers[0].sockets[0].getsockname() if server.servers else (host, port)
            shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
            ready(f"http://{shown}:{bound[1]}")
        await serving
        if lifecycle and server.started:
            # Normally the lifespan shutdown already stopped it (a no-op then); after a forced exit (a second
            # Ctrl-C) uvicorn skips the lifespan, so close here without waiting for the drain.
            await self.stop(timeout=0 if server.force_exit else None)
        if not server.started:
            if lifecycle:
                self.close(timeout=0)
            failure = self._startup_failure
            if failure is not None:
                # The log above holds the whole message; the CLI's one line is its first.
                message = getattr(failure, "message", None) or str(failure)
                raise StartupError(message.splitlines()[0]) from failure
            raise StartupError(f"the HTTP server failed to start on {host}:{port} (see the log above)")

    def request_exit(self) -> None:
        """Ask a running :meth:`serve` to shut down gracefully (what SIGTERM does)."""
        server = getattr(self, "_server", None)
        if server is not None:
            server.should_exit = True

    async def __aenter__(self) -> ControlPlane:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __enter__(self) -> ControlPlane:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
