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
from sqlalchemy.engine import URL

from .._sql import check_database_url, database_url
from ..config import Config
from ..errors import ConfigError
from ..models import Secret

__all__ = ["SQLITE_FILE", "TenantsSettings", "load_settings"]

SQLITE_FILE = "tenants.sqlite3"
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
    url = None
    if "database_url" in table:
        url = check_database_url(table["database_url"], "tenants.database_url", problems)
    ttl = table.get("idempotency_ttl_hours", 24.0)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
        problems.append("tenants.idempotency_ttl_hours: expected a number of hours above 0")
        ttl = 24.0
    if problems:
        raise ConfigError(problems)
    return TenantsSettings(database_url=url, idempotency_ttl_hours=float(ttl))
