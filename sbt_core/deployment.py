"""What a config most likely did not mean for the deployment it describes: advice ``sbt config validate``
prints as warnings (the config is still valid; ``sbt serve`` would run it).

Several processes (two hosts behind a load balancer, or a restart of one while another serves) share
state only through databases and the broker. A config that puts the tenant registry or any provider's
store on a database server, or the bus on NATS, is taken as meant for several processes; every piece it
still keeps in the process's own state directory would then split or lose state between them:

- ``memory`` metering: each process counts only the usage it received (use ``sql`` on the shared database);
- the ``local`` auth provider without ``signing_key``: each state directory generates its own key, so a
  token from one process is refused by the others;
- a provider with a ``database_url`` setting left unset (``stripe``): its state is per process;
- the tenant registry on SQLite while a provider's store is shared;
- with the bus on NATS, dead letters and the event log without ``[events] database_url``.
"""

from __future__ import annotations

from typing import Any

from .config import Config

__all__ = ["deployment_warnings"]


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
