"""``[tenants]`` of ``sbt.toml``: where the registry keeps its rows.

```toml
[tenants]
database_url = { env = "SBT_TENANTS_DATABASE_URL" }   # default: sqlite:///<state_dir>/tenants.sqlite3
idempotency_ttl_hours = 24                            # how long an Idempotency-Key answer is kept
```

The config loader keeps ``[tenants]`` as a plain table (``config.sections["tenants"]``, secret
references already resolved into :class:`~sbt_core.models.Secret`); this module validates it and
reports every problem with its dotted path, like the rest of the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .._sql import database_url
from ..config import Config
from ..errors import ConfigError
from ..models import Secret

__all__ = ["SQLITE_FILE", "TenantsSettings", "load_settings"]

SQLITE_FILE = "tenants.sqlite3"
_BACKENDS = ("sqlite", "postgresql")
_KEYS = ("database_url", "idempotency_ttl_hours")


@attrs.frozen
class TenantsSettings:
    """Validated ``[tenants]``. ``database_url`` is None for the embedded SQLite default."""

    database_url: Secret | None = None
    idempotency_ttl_hours: float = 24.0

    def url(self, state_dir: Path) -> URL:
        """The SQLAlchemy URL to open: the configured one (``postgresql://`` gets the installed psycopg 3
        driver), else ``sqlite:///<state_dir>/tenants.sqlite3``."""
        return database_url(self.database_url, Path(state_dir) / SQLITE_FILE)


def _parse_url(value: Any, problems: list[str]) -> Secret | None:
    path = "tenants.database_url"
    if isinstance(value, str):
        value = Secret(value)
    if not isinstance(value, Secret):
        problems.append(f"{path}: expected a URL string or a {{ env = ... }} / {{ file = ... }} reference")
        return None
    try:
        url = make_url(value.get_secret_value())
    except ArgumentError:
        # Never echo the value: it may hold a password.
        problems.append(f"{path}: not a database URL (e.g. postgresql+psycopg://user@host:5432/db)")
        return None
    if url.get_backend_name() not in _BACKENDS:
        problems.append(f"{path}: unsupported database {url.get_backend_name()!r}; use one of {', '.join(_BACKENDS)}")
        return None
    if url.get_backend_name() == "postgresql" and "+" in url.drivername and url.get_driver_name() != "psycopg":
        problems.append(f"{path}: sbt talks to PostgreSQL through psycopg 3; write postgresql+psycopg:// "
                        f"(not {url.drivername}://)")
        return None
    return value


def load_settings(config: Config) -> TenantsSettings:
    """Validate ``config.sections["tenants"]`` (absent: the SQLite default).

    :raises ConfigError: every problem as ``tenants.<key>: message``.
    """
    table: Mapping[str, Any] = config.sections.get("tenants", {}) or {}
    problems: list[str] = []
    if not isinstance(table, Mapping):
        raise ConfigError(["tenants: must be a table"])
    for key in table:
        if key not in _KEYS:
            problems.append(f"tenants.{key}: unknown key; valid keys: {', '.join(_KEYS)}")
    url = _parse_url(table["database_url"], problems) if "database_url" in table else None
    ttl = table.get("idempotency_ttl_hours", 24.0)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
        problems.append("tenants.idempotency_ttl_hours: expected a number of hours above 0")
        ttl = 24.0
    if problems:
        raise ConfigError(problems)
    return TenantsSettings(database_url=url, idempotency_ttl_hours=float(ttl))
