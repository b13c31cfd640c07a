"""``sbt.toml`` -> attrs records, with every problem reported at once.

Secrets are references — ``{ env = "NAME" }`` or ``{ file = "path" }`` (relative to the config file) —
resolved at load and redacted whenever the config is printed. Each provider's table is validated by the
provider's own ``settings_class``. With no config file the embedded default runs: auth ``local``,
metering ``memory``, no billing (docs/design.md section 5).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError
from .hookspecs import CONTRACT, INTERFACES, SBT_INTERFACES, Interface
from .models import AdminUser, Secret
from .plugins._loader import PluginCatalog, Status
from .provider import NoSettings
from .structure import Invalid, StrictConverter
from .triggers import AnyTrigger, EventTrigger, RouteTrigger, ScheduleTrigger, parse_route, parse_schedule

__all__ = [
    "CONFIG_ENV", "DEFAULT_CONFIG_NAME", "BindingOverride", "Config", "EventsConfig", "PluginsConfig",
    "DEFAULT_PROVIDERS", "NO_PROVIDER", "ProviderSelection", "ServerConfig", "find_config_path", "load_config",
    "providers_line", "read_raw_config", "selected_provider", "redacted", "structure_table",
]

CONFIG_ENV = "SBT_CONFIG"
DEFAULT_CONFIG_NAME = "sbt.toml"
REDACTED = "**********"
_URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")
_SECRET_WORDS = ("secret", "password", "api_key", "apikey", "token", "private", "dsn", "credential")

#: The embedded default provider of each interface: what runs for an interface the config does not name
#: (and with no config file at all). Billing has none: nothing is billed until a provider is chosen.
DEFAULT_PROVIDERS: dict[Interface, str | None] = {"auth": "local", "billing": None, "metering": "memory"}
#: ``[providers.<interface>] type = "none"``: no provider on purpose (for auth: every route but the public
#: ones answers 401, the API is closed).
NO_PROVIDER = "none"
#: The embedded default: what runs with no config file.
EMBEDDED_DEFAULT: dict[str, Any] = {"providers": {i: {"type": t} for i, t in DEFAULT_PROVIDERS.items() if t}}


@attrs.frozen
class ServerConfig:
    """``[server]``: where ``sbt serve`` listens, how large a request body may be (bytes), who may read
    ``GET /metrics`` and how the log is written."""

    host: str = "127.0.0.1"
    port: int = attrs.field(default=8080, validator=attrs.validators.and_(attrs.validators.ge(0),
                                                                         attrs.validators.le(65535)))
    max_body_bytes: int = attrs.field(default=1_048_576, validator=attrs.validators.gt(0))
    #: ``GET /metrics`` (Prometheus): ``loopback`` answers clients on a loopback address without a token (a
    #: scraper on the same host or a sidecar), ``scope`` asks a token with ``event/event_read`` from anyone,
    #: ``open`` answers anyone who reaches the port, ``off`` serves no such route.
    metrics: str = attrs.field(default="loopback", validator=attrs.validators.in_(("loopback", "scope", "open", "off")))
    #: ``text`` (one human-readable line per record) or ``json`` (one JSON object per line, for a log
    #: pipeline; delivery lines carry ``event_id``/``event_ids`` and ``binding`` as fields).
    log_format: str = attrs.field(default="text", validator=attrs.validators.in_(("text", "json")))


@attrs.frozen
class EventsConfig:
    """``[events]``: output naming of detail types (``sbt`` bare, or ``sbt_aws`` 0.9 prefix) and delivery rules.

    ``max_attempts`` counts every attempt of one event at one binding (first + retries); the wait after
    failed attempt ``n`` is random in ``[0, min(backoff_max_seconds, backoff_base_seconds * 2**(n-1))]``
    seconds ("full jitter").
    """

    naming: str = attrs.field(default="sbt", validator=attrs.validators.in_(("sbt", "sbt_aws")))
    max_attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    backoff_base_seconds: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    backoff_max_seconds: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    dedup_window_seconds: float = attrs.field(default=86400.0, validator=attrs.validators.ge(0))
    #: Event ids remembered per binding for dedup; the oldest are forgotten first beyond this (memory bound).
    dedup_max_ids: int = attrs.field(default=100_000, validator=attrs.validators.ge(0))
    #: Events kept in the event log (``sbt events list``, ``GET /events``); the oldest are dropped first.
    log_size: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    #: How long shutdown waits for in-flight events (queued, running and retrying) before giving up.
    drain_timeout_seconds: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    #: The bus transport: ``sqlite`` (the default of ``sbt serve``: the queues are journaled in
    #: ``<state_dir>/bus.sqlite3``, so ``POST /events`` answers once its events are on disk and an event
    #: accepted before a crash or ``kill -9`` is delivered after the restart) or ``inprocess`` (the queues
    #: live in this process's memory: faster, but what is queued at a crash is lost and what a stop could
    #: not drain is dead-lettered; the test harness's choice). A bare ``Bus()`` is in-process.
    #: ``nats`` carries them on NATS JetStream at ``url``, shared by every ``sbt serve`` of the control plane
    #: (``docs/several-processes.md``; :mod:`sbt_core.runtime.bus.nats_transport`).
    transport: str = attrs.field(default="sqlite", validator=attrs.validators.in_(("sqlite", "inprocess", "nats")))
    #: ``transport = "nats"``: the server URL(s), e.g. ``nats://user:pw@host:4222`` (a secret: ``{ env = }``
    #: works); several separated by commas.
    url: Secret | None = None
    #: ``transport = "nats"``: the JetStream stream holding the control plane's messages (created on start if
    #: missing, else checked and its limits updated to these) and the subject prefix its messages are
    #: published under (``<subject_prefix>.<target>``, one subject and one durable consumer per target).
    stream: str = "SBT_EVENTS"
    subject_prefix: str = "sbt.events"
    #: The stream's retention: ``workqueue`` (a message is deleted once acked: each target has its own
    #: subject, so one consumer per message), ``limits`` (kept until ``max_age_seconds``/``max_bytes``) or
    #: ``interest``.
    retention: str = attrs.field(default="workqueue",
                                 validator=attrs.validators.in_(("workqueue", "limits", "interest")))
    #: The stream's limits (0 / -1: none): how long and how many bytes of messages it keeps.
    max_age_seconds: float = attrs.field(default=7 * 86400.0, validator=attrs.validators.ge(0))
    max_bytes: int = -1
    #: JetStream's dedup window: a message whose ``Nats-Msg-Id`` was stored within it is dropped (a PutEvents
    #: entry re-put with its id, a schedule slot fired by several processes). Must exceed the clock skew
    #: between processes for schedules to fire once per slot.
    duplicate_window_seconds: float = attrs.field(default=120.0, validator=attrs.validators.gt(0))
    #: How long a message handed to a process may stay un-acked before JetStream gives it to another (a
    #: crashed process's messages are redelivered after at most this); a running hook extends it.
    ack_wait_seconds: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    #: PostgreSQL (or any SQLAlchemy URL) for the dead-letter store and the event log shared by every process
    #: (a secret: ``{ env = }`` works); overrides ``dead_letters``.
    database_url: Secret | None = None
    #: Where ``sbt serve`` keeps dead letters: ``sqlite`` (``<state_dir>/events.sqlite3``, kept across
    #: restarts) or ``memory`` (lost when the process ends).
    dead_letters: str = attrs.field(default="sqlite", validator=attrs.validators.in_(("sqlite", "memory")))


@attrs.frozen
class PluginsConfig:
    """``[plugins]``: names never loaded, and whether one broken plugin stops everything."""

    disabled: tuple[str, ...] = ()
    strict: bool = False


@attrs.frozen
class ProviderSelection:
    """``[providers.<interface>]``: the provider type and its validated settings."""

    interface: Interface
    type: str
    settings: Any
    #: The table as written, with references unresolved: what ``sbt config show`` prints (redacted).
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen
class BindingOverride:
    """One ``[[bindings]]`` entry: a hook and at most one new trigger, or ``enabled = false``."""

    hook: str
    trigger: AnyTrigger | None = None
    enabled: bool = True
    index: int = 0


@attrs.frozen
class Config:
    """The whole validated configuration."""

    server: ServerConfig = ServerConfig()
    state_dir: Path = Path(".sbt")
    admin: AdminUser = AdminUser()
    providers: dict[Interface, ProviderSelection] = attrs.field(factory=dict)
    bindings: tuple[BindingOverride, ...] = ()
    plugins: PluginsConfig = PluginsConfig()
    events: EventsConfig = EventsConfig()
    #: Sections owned by other parts of the core (``[tenants]`` …), kept as plain tables.
    sections: Mapping[str, Any] = attrs.field(factory=dict)
    path: Path | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    #: Interfaces the config does not name, given their embedded default provider (``DEFAULT_PROVIDERS``).
    defaulted: frozenset[Interface] = frozenset()
    #: Interfaces set to ``type = "none"``: no provider on purpose.
    closed: frozenset[Interface] = frozenset()

    def provider(self, interface: Interface) -> ProviderSelection | None:
        return self.providers.get(interface)


def selected_provider(config: Config, interface: Interface) -> str:
    """The provider serving ``interface`` and why: ``local (embedded default)``, ``stripe``,
    ``none (type = "none")``, ``none``."""
    selection = config.provider(interface)
    if selection is not None:
        return selection.type + (" (embedded default)" if interface in config.defaulted else "")
    if interface in config.closed:
        return 'none (type = "none")'
    default = DEFAULT_PROVIDERS.get(interface)
    return "none" + (f" (default {default!r} not installed or disabled)" if default else "")


def providers_line(config: Config) -> str:
    """Which provider serves each interface and why, in one line: ``providers: auth local (embedded default),
    billing none, metering memory`` — ``sbt serve`` prints it at start-up, ``sbt config show`` too."""
    return "providers: " + ", ".join(f"{i} {selected_provider(config, i)}" for i in INTERFACES)


# --- reading ------------------------------------------------------------------------------------------

def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``--config``, else ``$SBT_CONFIG``, else ``./sbt.toml`` if it exists, else None (embedded default)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def read_raw_config(path: Path | None) -> dict[str, Any]:
    """The TOML table at ``path`` (or the embedded default); raises ConfigError with the parse error."""
    if path is None:
        return {k: dict(v) if isinstance(v, dict) else v for k, v in EMBEDDED_DEFAULT.items()}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file {str(path)!r} not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def _is_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("env", "file")


class _Problems(list[str]):
    def add(self, path: str, message: str) -> None:
        self.append(f"{path}: {message}" if path else message)


def _resolve(value: Any, path: str, base: Path, problems: _Problems) -> Any:
    """Replace every secret reference below ``value`` by a :class:`Secret`."""
    if _is_reference(value):
        (kind, target), = value.items()
        if not isinstance(target, str) or not target:
            problems.add(path, f"{{ {kind} = ... }} needs a non-empty string")
            return None
        if kind == "env":
            if target not in os.environ:
                problems.add(path, f"environment variable {target} is not set")
                return None
            return Secret(os.environ[target], reference=f"env:{target}")
        file = (base / target).expanduser()
        try:
            return Secret(file.read_text().strip(), reference=f"file:{target}")
        except OSError as exc:
            problems.add(path, f"cannot read secret file {target!r}: {exc.strerror or exc}")
            return None
    if isinstance(value, dict) and ("env" in value or "file" in value) and len(value) > 1:
        problems.add(path, "a secret reference is { env = \"NAME\" } or { file = \"path\" }, with nothing else")
        return None
    if isinstance(value, dict):
        return {k: _resolve(v, f"{path}.{k}" if path else k, base, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, f"{path}[{i}]", base, problems) for i, v in enumerate(value)]
    return value


# --- structuring -----------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    # A reference given where a plain value is expected: use the value (it is still redacted in show).
    return value.get_secret_value() if isinstance(value, Secret) else value


def _secret(value: Any, _: type) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    raise ValueError("expected a string or a { env = ... } / { file = ... } reference")


def _settings_converter() -> StrictConverter:
    conv = StrictConverter(unwrap=_plain)
    conv.register_structure_hook(Secret, _secret)
    # Never unstructure a secret's value, whatever record it sits in.
    conv.register_unstructure_hook(Secret, lambda s: {"env": s.reference[4:]}
                                   if (s.reference or "").startswith("env:") else REDACTED)
    conv.register_unstructure_hook(Path, str)
    conv.register_structure_hook(Path, lambda v, _: Path(conv.scalar(v, str)))
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], lambda v, _: tuple(
        conv.scalar(x, str) for x in (v if isinstance(v, list) else [v])))
    return conv


_CONV = _settings_converter()


def _structure(table: Any, cls: type, path: str, problems: _Problems) -> Any:
    """Structure ``table`` into ``cls``, adding each problem with its dotted path."""
    if not isinstance(table, dict):
        problems.add(path, f"must be a table, got {type(table).__name__}")
        return None
    try:
        return _CONV.check(table, cls)
    except Invalid as exc:
        for where, message in exc.problems:
            problems.add(f"{path}.{where}" if path and where else path or where, message)
    return None


def structure_table(table: Any, cls: type, path: str) -> tuple[Any, list[str]]:
    """``table`` structured into the attrs class ``cls`` as the loader structures its own sections (secret
    references already resolved, unknown keys refused), for a part of the core that validates a section
    of its own: ``(value, [])``, or ``(None, problems)`` each as ``<path>.<key>: message``."""
    problems = _Problems()
    value = _structure(table, cls, path, problems)
    return value, list(problems)


# --- the loader -------------------------------------------------------------------------------------------

_TOP_KEYS = {"server", "state_dir", "admin", "providers", "bindings", "plugins", "events"}
#: Sections other parts of sbt_core own and validate themselves.
OWNED_SECTIONS: set[str] = {"tenants", "jobs", "app_plane"}


def load_config(catalog: PluginCatalog, path: Path | None = None, *, raw: dict[str, Any] | None = None) -> Config:
    """Validate the config at ``path`` (None: the embedded default) against the installed plugins.

    :raises ConfigError: listing every problem found, each as ``dotted.path: message``.
    """
    data = read_raw_config(path) if raw is None else raw
    base = path.parent if path is not None else Path.cwd()
    problems = _Problems()
    for key in data:
        if key not in _TOP_KEYS and key not in OWNED_SECTIONS:
            close = difflib.get_close_matches(key, [*_TOP_KEYS, *OWNED_SECTIONS], n=1)
            problems.add(key, "unknown section" + (f" (did you mean {close[0]}?)" if close else ""))
    resolved = _resolve(data, "", base, problems)

    server = _structure(resolved.get("server", {}), ServerConfig, "server", problems) or ServerConfig()
    admin = _structure(resolved.get("admin", {}), AdminUser, "admin", problems) or AdminUser()
    plugins = _structure(resolved.get("plugins", {}), PluginsConfig, "plugins", problems) or PluginsConfig()
    events = _structure(resolved.get("events", {}), EventsConfig, "events", problems) or EventsConfig()
    if events.transport == "nats" and events.url is None and not any(p.startswith("events.url") for p in problems):
        problems.add("events.url", 'transport = "nats" needs the NATS server url (e.g. "nats://127.0.0.1:4222")')
    state_dir = resolved.get("state_dir", ".sbt")
    if not isinstance(state_dir, str):
        problems.add("state_dir", "must be a path string")
        state_dir = ".sbt"
    state_path = Path(state_dir).expanduser()
    if not state_path.is_absolute() and path is not None:
        state_path = base / state_path

    providers, closed = _providers(catalog, resolved.get("providers", {}), data.get("providers", {}), plugins,
                                   problems)
    defaulted = _defaults(catalog, providers, closed, plugins)
    bindings = _bindings(catalog, resolved.get("bindings", []), providers, problems)
    if problems:
        raise ConfigError(problems)
    sections = {k: v for k, v in resolved.items() if k in OWNED_SECTIONS}
    return Config(server=server, state_dir=state_path, admin=admin, providers=providers, bindings=tuple(bindings),
                  plugins=plugins, events=events, sections=sections, path=path, raw=data,
                  defaulted=frozenset(defaulted), closed=frozenset(closed))


def _defaults(catalog: PluginCatalog, providers: dict[Interface, ProviderSelection], closed: set[Interface],
              plugins: PluginsConfig) -> set[Interface]:
    """Select the embedded default of every interface the config leaves unnamed (when it is installed and not
    disabled); returns those interfaces."""
    out: set[Interface] = set()
    for interface, type_name in DEFAULT_PROVIDERS.items():
        if type_name is None or interface in providers or interface in closed or type_name in plugins.disabled:
            continue
        record = catalog.get(type_name)
        if record is None or record.status is not Status.LOADED or interface not in record.interfaces:
            continue
        problems = _Problems()
        settings = _structure({}, getattr(record.obj, "settings_class", NoSettings), f"providers.{interface}",
                              problems)
        if problems:  # a default provider that needs settings cannot run unnamed
            continue
        providers[interface] = ProviderSelection(interface, type_name, settings)
        out.add(interface)
    return out


def _providers(catalog: PluginCatalog, table: Any, raw_table: Any, plugins: PluginsConfig,
               problems: _Problems) -> tuple[dict[Interface, ProviderSelection], set[Interface]]:
    """The selected providers, and the interfaces closed on purpose (``type = "none"``)."""
    closed: set[Interface] = set()
    if not isinstance(table, dict):
        problems.add("providers", "must be a table of [providers.auth], [providers.billing], [providers.metering]")
        return {}, closed
    selected: dict[Interface, ProviderSelection] = {}
    for interface, entry in table.items():
        path = f"providers.{interface}"
        if interface not in INTERFACES:
            problems.add(path, f"unknown interface; valid: {', '.join(INTERFACES)}")
            continue
        if not isinstance(entry, dict):
            problems.add(path, "must be a table with a type")
            continue
        type_name = entry.get("type")
        installed = catalog.providers_of(interface)
        choices = f"installed: {', '.join(installed)}" if installed else "none installed"
        if not isinstance(type_name, str) or not type_name:
            problems.add(f"{path}.type", f"required: name the {interface} provider ({choices}), or \"none\"")
            continue
        if type_name == NO_PROVIDER:
            if len(entry) > 1:
                problems.add(path, f'type = "none" selects no {interface} provider; it takes no settings')
            closed.add(interface)
            continue
        record = catalog.get(type_name)
        if record is None or (record.status is Status.LOADED and interface not in record.interfaces):
            what = "unknown" if record is None else f"'{type_name}' does not implement {SBT_INTERFACES[interface]};"
            name = f" '{type_name}'" if record is None else ""
            problems.add(f"{path}.type", f"{what} {interface} provider{name}; {choices}".replace("  ", " "))
            continue
        if record.status is Status.DISABLED or type_name in plugins.disabled:
            problems.add(f"{path}.type",
                         f"{interface} provider '{type_name}' is disabled in [plugins] or SBT_LOAD_PLUGINS")
            continue
        if record.status is Status.FAILED:
            problems.add(f"{path}.type", f"{interface} provider '{type_name}' failed to load: {record.error}")
            continue
        settings_cls = getattr(record.obj, "settings_class", NoSettings)
        body = {k: v for k, v in entry.items() if k != "type"}
        settings = _structure(body, settings_cls, path, problems)
        raw = raw_table.get(interface, {}) if isinstance(raw_table, dict) else {}
        selected[interface] = ProviderSelection(interface, type_name, settings, raw)
    return selected, closed


def _bindings(catalog: PluginCatalog, table: Any, providers: Mapping[Interface, ProviderSelection],
              problems: _Problems) -> list[BindingOverride]:
    if not isinstance(table, list):
        problems.add("bindings", "must be an array of tables ([[bindings]])")
        return []
    out: list[BindingOverride] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(table):
        path = f"bindings[{i}]"
        if not isinstance(entry, dict):
            problems.add(path, "must be a table")
            continue
        hook = entry.get("hook")
        if not isinstance(hook, str) or hook not in CONTRACT:
            close = difflib.get_close_matches(str(hook), list(CONTRACT), n=1)
            problems.add(f"{path}.hook", f"unknown hook {hook!r}" + (f" (did you mean {close[0]}?)" if close else ""))
            continue
        row = CONTRACT[hook]
        extra = set(entry) - {"hook", "event", "source", "route", "scope", "authorizer", "schedule", "enabled"}
        if extra:
            problems.add(path, f"unknown key(s) {', '.join(sorted(extra))}; valid: hook, event, source, route, "
                               "scope, authorizer, schedule, enabled")
        if hook in seen:
            problems.add(path, f"hook {hook} is already overridden in bindings[{seen[hook]}]")
        seen[hook] = i
        given = [k for k in ("event", "route", "schedule") if k in entry]
        if len(given) > 1:
            problems.add(path, f"two triggers ({' and '.join(given)}); a binding takes exactly one")
            continue
        if not row.overridable and (given or "enabled" in entry):
            problems.add(path, f"{hook} runs at start-up and cannot be rebound")
            continue
        selection = providers.get(row.interface)
        if selection is not None:
            record = catalog.get(selection.type)
            if record is not None and hook not in record.hooks:
                problems.add(f"{path}.hook", f"{hook} is not implemented by the {row.interface} provider "
                                             f"'{selection.type}'")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.add(f"{path}.enabled", "must be true or false")
            enabled = True
        trigger = None
        if given:
            trigger = _override_trigger(row.default_trigger, entry, given[0], path, problems)
            if trigger is None:
                continue
        elif any(k in entry for k in ("source", "scope", "authorizer")):
            # A bare scope/source change keeps the default trigger's other parts.
            trigger = _override_trigger(row.default_trigger, entry, None, path, problems)
            if trigger is None:
                continue
        out.append(BindingOverride(hook=hook, trigger=trigger, enabled=enabled, index=i))
    return out


def _override_trigger(default: AnyTrigger, entry: dict[str, Any], key: str | None, path: str,
                      problems: _Problems) -> AnyTrigger | None:
    kind = key or default.kind
    if kind != default.kind:
        problems.add(f"{path}.{key}", f"this hook is triggered by {default.kind}s; it cannot be bound to a {kind}")
        return None
    try:
        if isinstance(default, EventTrigger):
            detail_type = entry.get("event", default.detail_type)
            source = entry.get("source", default.source)
            if not isinstance(detail_type, str) or not detail_type or not isinstance(source, str) or not source:
                raise ValueError("event and source must be non-empty strings")
            return EventTrigger(detail_type, source)
        if isinstance(default, RouteTrigger):
            route = entry.get("route", f"{default.method} {default.path}")
            scope = entry.get("scope", default.scope)
            authorizer = entry.get("authorizer", default.authorizer.value)
            if not isinstance(route, str) or not (scope is None or isinstance(scope, str)):
                raise ValueError("route and scope must be strings")
            return parse_route(route, scope=scope or None, authorizer=authorizer)
        if isinstance(default, ScheduleTrigger):
            expression = entry.get("schedule")
            if not isinstance(expression, str):
                raise ValueError("schedule must be a string such as 'rate(1 hour)'")
            return parse_schedule(expression)
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc)
        problems.add(f"{path}.{kind if key else 'scope'}", message)
        return None
    return None


# --- printing --------------------------------------------------------------------------------------------

def redacted(value: Any, key: str = "") -> Any:
    """``value`` fit to print: references shown as references, secret-looking literals as ``**********``."""
    if _is_reference(value):
        return dict(value)
    if isinstance(value, Secret):
        reference = value.reference or ""
        return {"env": reference[4:]} if reference.startswith("env:") else REDACTED
    if isinstance(value, dict):
        return {k: redacted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, key) for v in value]
    if isinstance(value, str) and any(word in key.lower() for word in _SECRET_WORDS):
        return REDACTED
    if isinstance(value, str):
        # A URL's password (postgresql://user:pw@host) is a secret wherever it appears.
        return _URL_PASSWORD.sub(r"\1" + REDACTED + "@", value)
    return value


def show(config: Config, catalog: PluginCatalog) -> dict[str, Any]:
    """The effective configuration as JSON-ready data, defaults filled in, never a secret."""
    providers: dict[str, Any] = {}
    for interface, sel in config.providers.items():
        settings = _CONV.unstructure(sel.settings) if attrs.has(type(sel.settings)) else {}
        merged = {"type": sel.type, **{k: v for k, v in settings.items()}}
        for k, v in sel.raw.items():
            if _is_reference(v):
                merged[k] = v
        for field in attrs.fields(type(sel.settings)) if attrs.has(type(sel.settings)) else ():
            value = getattr(sel.settings, field.name)
            if isinstance(value, Secret) and not _is_reference(sel.raw.get(field.name)):
                merged[field.name] = REDACTED
        providers[interface] = redacted(merged)
    out = {
        "config_file": str(config.path) if config.path else None,
        "server": _CONV.unstructure(config.server),
        "state_dir": str(config.state_dir),
        "admin": _CONV.unstructure(config.admin),
        "providers": providers,
        # Why each interface has its provider (or none): the line ``sbt serve`` prints at start-up.
        "selection": providers_line(config),
        "bindings": [redacted(dict(b)) for b in config.raw.get("bindings", [])],
        "plugins": {"disabled": list(config.plugins.disabled), "strict": config.plugins.strict},
        "events": _CONV.unstructure(config.events),
    }
    for name in OWNED_SECTIONS:
        if name in config.raw:
            out[name] = redacted(config.raw[name], name)
    return out
