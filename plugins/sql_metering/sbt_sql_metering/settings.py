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

from collections.abc import Callable
from pathlib import Path

import attrs
from sqlalchemy.engine import URL, make_url

from sbt_core.models import Secret

__all__ = ["SQLITE_FILE", "SqlMeteringSettings"]

#: The embedded default: this file in the provider's folder of the state directory.
SQLITE_FILE = "metering.sqlite3"
_POLICIES = {"unknown_event": ("reject", "drop"), "unknown_tenant": ("accept", "reject")}


def _one_of(choices: tuple[str, ...]) -> Callable[[object, attrs.Attribute, str], None]:  # type: ignore[type-arg]
    def check(_: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {', '.join(choices)}; got {value!r}")
    return check


def _positive(_: object, attribute: attrs.Attribute, value: float) -> None:  # type: ignore[type-arg]
    if not value > 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute, value: float) -> None:  # type: ignore[type-arg]
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be 0 or more, got {value!r}")


def _url(_: object, attribute: attrs.Attribute, value: Secret | None) -> None:  # type: ignore[type-arg]
    if value is None:
        return
    try:
        backend = make_url(value.get_secret_value()).get_backend_name()
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError; the URL must not be echoed
        raise ValueError(f"{attribute.name} is not a database URL (postgresql://... or sqlite:///...)") from None
    if backend not in ("postgresql", "sqlite"):
        raise ValueError(f"{attribute.name} must be a postgresql:// or sqlite:/// URL, got a {backend} URL")


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
    horizon_past_days: float = attrs.field(default=35.0, validator=_positive)
    horizon_future_seconds: float = attrs.field(default=300.0, validator=_non_negative)
    dedup_window_days: float = attrs.field(default=32.0, validator=_positive)
    unknown_event: str = attrs.field(default="reject", validator=_one_of(_POLICIES["unknown_event"]))
    unknown_tenant: str = attrs.field(default="accept", validator=_one_of(_POLICIES["unknown_tenant"]))

    def url(self, data_dir: Path) -> URL:
        """The SQLAlchemy URL to open (``postgresql://`` gets the psycopg 3 driver sbt depends on)."""
        if self.database_url is None:
            return URL.create("sqlite", database=str(Path(data_dir) / SQLITE_FILE))
        url = make_url(self.database_url.get_secret_value())
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return url
