"""What a valid config most likely did not mean: advice ``sbt config validate`` prints as warnings (the
config is still valid; ``sbt serve`` would run it). Two kinds:

Intent (:func:`intent_warnings`), for any config:

- no auth provider: every route but the public ones answers 401 — said as a fact when the config closes
  the API on purpose (``[providers.auth] type = "none"``), as a warning when the default is missing;
- a secret setting (a :class:`~sbt_core.models.Secret` field of a provider's settings) written as plain
  text in the file instead of ``{ env = "NAME" }`` / ``{ file = "path" }``: the file then holds it;
- a provider pointed at a loopback-only service (an ``api_base``/endpoint URL on 127.0.0.1, localhost or
  ::1: a local fake such as localstripe or moto) while ``[server] host`` listens beyond this machine.

Deployment (:func:`deployment_warnings`): several processes (two hosts behind a load balancer, or a restart
of one while another serves) share state only through databases and the broker. A config that puts the
tenant registry or any provider's store on a database server, or the bus on NATS, is taken as meant for
several processes; every piece it still keeps in the process's own state directory would then split or
lose state between them:

- ``memory`` metering: each process counts only the usage it received (use ``sql`` on the shared database);
- the ``local`` auth provider without ``signing_key``: each state directory generates its own key, so a
  token from one process is refused by the others;
- a provider with a ``database_url`` setting left unset (``stripe``): its state is per process;
- the tenant registry on SQLite while a provider's store is shared;
- with the bus on NATS, dead letters and the event log without ``[events] database_url``.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import attrs

from .config import Config
from .models import Secret

__all__ = ["config_warnings", "deployment_warnings", "intent_warnings"]


def config_warnings(config: Config) -> list[str]:
    """Every warning for ``config``: intent first, then deployment; each line starts with its dotted path."""
    return [*intent_warnings(config), *deployment_warnings(config)]


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _loopback_url(value: Any) -> str | None:
    """``value``'s host when it is an http(s) URL on a loopback address."""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return None
    host = urlsplit(value).hostname or ""
    return host if _is_loopback(host) else None


def _holds_secret(text: str) -> bool:
    """False for a URL without a password (``postgresql://sbt@db/sbt``): a Secret field that names a place,
    not a credential, may be written in plain text."""
    if "://" not in text:
        return True
    try:
        return urlsplit(text).password is not None
    except ValueError:
        return True


def intent_warnings(config: Config) -> list[str]:
    """No auth, plain-text secrets, loopback fakes behind a public host (see the module docstring)."""
    out: list[str] = []
    if config.provider("auth") is None:
        if "auth" in config.closed:
            out.append('providers.auth: type = "none": the API is closed on purpose; every route except the '
                       "public ones (/health, /tenant-config, webhooks) answers 401")
        else:
            out.append("providers.auth: no auth provider (the embedded default 'local' is not installed or is "
                       "disabled): every route except the public ones answers 401; name one, or write "
                       'type = "none" to close the API on purpose')
    public = not _is_loopback(config.server.host)
    for interface, selection in config.providers.items():
        if not attrs.has(type(selection.settings)):
            continue
        for field in attrs.fields(type(selection.settings)):
            value = getattr(selection.settings, field.name)
            path = f"providers.{interface}.{field.name}"
            if (isinstance(value, Secret) and value.reference is None and field.name in selection.raw
                    and _holds_secret(value.get_secret_value())):
                out.append(f"{path}: a secret written as plain text in the config file; use "
                           f'{field.name} = {{ env = "NAME" }} or {{ file = "path" }}')
            host = _loopback_url(value)
            # Only what the file says: a provider's own default (local auth's issuer) is its business.
            if public and host is not None and field.name in selection.raw:
                out.append(f"{path}: {value} reaches {host}, this machine only (a local fake?), while [server] "
                           f"host = {config.server.host!r} serves other machines")
    return out


def _is_server(url: Any) -> bool:
    """Whether a ``database_url`` setting names a database server (anything but SQLite)."""
    if url is None:
        return False
    text = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url)
    return not text.startswith("sqlite")


def deployment_warnings(config: Config) -> list[str]:
    """One line per piece of state that several processes would not share (see the module docstring),
    each starting with its dotted config path; empty for a single-process config."""
    tenants_url = (config.sections.get("tenants") or {}).get("database_url")
    shared = {f"providers.{i}": _is_server(getattr(sel.settings, "database_url", None))
              for i, sel in config.providers.items() if hasattr(sel.settings, "database_url")}
    broker = config.events.transport == "nats"
    if not _is_server(tenants_url) and not any(shared.values()) and not broker:
        return []
    why = "the config shares state through a database (several processes), but "
    out: list[str] = []
    metering = config.provider("metering")
    if metering is not None and metering.type == "memory":
        out.append(f"providers.metering: {why}'memory' metering counts only the usage each process receives; "
                   "use type = \"sql\" on the shared database")
    auth = config.provider("auth")
    if auth is not None and auth.type == "local" and getattr(auth.settings, "signing_key", None) is None:
        out.append(f"providers.auth: {why}the local provider generates a signing key per state directory, so "
                   "one process refuses another's tokens; set signing_key = { file = ... } or { env = ... }")
    for path, on_server in shared.items():
        if not on_server:
            out.append(f"{path}.database_url: {why}this provider keeps its state in each process's state "
                       "directory; point database_url at the shared database")
    if not _is_server(tenants_url):
        out.append(f"tenants.database_url: {why}the tenant registry is SQLite in each state directory; point it "
                   "at the shared database")
    if broker and not _is_server(config.events.database_url):
        out.append(f"events.database_url: {why}dead letters and the event log stay in each process; point it "
                   "at the shared database")
    return out
