"""Settings of the ``sql`` metering provider: the ``[providers.metering]`` table of ``sbt.toml``.

Example::

    [providers.metering]
    type = "sql"
    database_url = { env = "SBT_METERING_DATABASE_URL" }   # postgresql://user@host/db; default: SQLite
    horizon_past_days = 35
    horizon_future_seconds = 300
    dedup_window_days = 32
    unknown_event = "reject"        # or "drop"
    unknown_tenant = "accept"       # or "reject"
"""

from __future__ import annotations

from pathlib import Path

import attrs
from sqlalchemy.engine import URL

from sbt_core._sql import check_database_url, database_url
from sbt_core.models import Secret

__all__ = ["SQLITE_FILE", "SqlMeteringSettings"]

#: The embedded default: this file in the provider's folder of the state directory.
SQLITE_FILE = "metering.sqlite3"
_POLICIES = {"unknown_event": ("reject", "drop"), "unknown_tenant": ("accept", "reject")}


def _url(_: object, attribute: attrs.Attribute, value: Secret | None) -> None:  # type: ignore[type-arg]
    problems: list[str] = []
    if value is not None and check_database_url(value, attribute.name, problems) is None:
        raise ValueError(problems[0].removeprefix(f"{attribute.name}: "))


@attrs.frozen
class SqlMeteringSettings:
    """Knobs of the SQL metering provider; the semantic ones have ``memory``'s (Stripe's, OpenMeter's) defaults.

    - ``database_url`` (secret-capable: a string or ``{ env = "NAME" }`` / ``{ file = "path" }``):
      ``postgresql://...`` (psycopg 3) for several processes, ``sqlite:///path`` for one; default
      ``sqlite:///<state_dir>/sql/metering.sqlite3``.
    - ``horizon_past_days`` (> 0), ``horizon_future_seconds`` (>= 0): accepted event times around now.
    - ``dedup_window_days`` (> 0): an identifier is a duplicate while a stored event of the meter with that
      identifier has an event time less than this before the moment of ingestion.
    - ``unknown_event``: ``reject`` | ``drop``; ``unknown_tenant``: ``accept`` | ``reject`` (as ``memory``).
    """

    database_url: Secret | None = attrs.field(default=None, validator=_url)
    horizon_past_days: float = attrs.field(default=35.0, validator=attrs.validators.gt(0))
    horizon_future_seconds: float = attrs.field(default=300.0, validator=attrs.validators.ge(0))
    dedup_window_days: float = attrs.field(default=32.0, validator=attrs.validators.gt(0))
    unknown_event: str = attrs.field(default="reject", validator=attrs.validators.in_(_POLICIES["unknown_event"]))
    unknown_tenant: str = attrs.field(default="accept", validator=attrs.validators.in_(_POLICIES["unknown_tenant"]))

    def url(self, data_dir: Path) -> URL:
        """The SQLAlchemy URL to open (``postgresql://`` gets the psycopg 3 driver sbt depends on)."""
        return database_url(self.database_url, Path(data_dir) / SQLITE_FILE)
