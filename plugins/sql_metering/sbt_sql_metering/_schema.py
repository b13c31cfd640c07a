"""Tables of the ``sql`` metering provider (all prefixed ``sbt_metering_``) and their versioned migrations.

- ``sbt_metering_schema_versions``: one row per migration applied (version, description, time). Start-up
  applies the missing ones in order, under a PostgreSQL advisory lock so processes starting together
  migrate once; a database migrated by a newer release is refused rather than misread.
- ``sbt_metering_meters``: meters; ``meter_seq`` is the internal key (and the fetch-all cursor).
- ``sbt_metering_customers``: tenants registered by onboarding (``active`` false once offboarded).
- ``sbt_metering_series``: one row per (meter, tenant, group-by dimension values): events and rollups
  carry its small integer id instead of the texts.
- ``sbt_metering_events``: every stored event (``cancelled`` marks cancellations; they keep their row).
- ``sbt_metering_dedup``: the unique constraint behind dedup: per (meter, identifier) the earliest and the
  latest event time stored with it; an insert that conflicts with a row still inside the dedup window
  changes nothing. It is also how a cancellation finds an identifier's events: the meter's time index
  between those two times (the events table has no index on identifiers).
- ``sbt_metering_rollups``: pre-aggregated cells (count, sum, min, max, latest) of live events per
  (meter, width, series, bucket): widths of 30 minutes and one UTC day, kept in the event's transaction.
  On PostgreSQL its pages are filled to :data:`ROLLUP_FILLFACTOR` percent.
- ``sbt_metering_tenant_days``: the day cells of each tenant, all its series together (meter, tenant, UTC
  day): what a query by tenant in whole UTC days reads, one row per tenant and day instead of one per
  series and day. Kept in the events' transaction as the rollups are.

Versions (``MIGRATIONS``): 1 created the tables with 15-minute and day cells keyed (meter, width,
bucket, series); 2 sets the rollups' fillfactor (PostgreSQL); 3 keys rollups (meter, width, series,
bucket) and replaces the 15-minute cells by 30-minute cells, recomputed from the events (the fillfactor
stays); 4 adds the tenant day cells, summed from the day cells; 5 gives dedup entries their earliest
event time and drops the events' identifier index (and, on PostgreSQL, the event id key): each cost an
index entry per stored event for the rare cancellation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from sbt_core.errors import ConfigError

__all__ = ["DAY", "HALF_HOUR", "MIGRATIONS", "ROLLUP_FILLFACTOR", "SCHEMA_VERSION", "WIDTHS", "cells_from_events",
           "customers", "dedup", "events", "meters", "metadata", "migrate", "rollups", "schema_versions", "series",
           "TENANT_DAY_COLUMNS", "tenant_days", "tenant_days_from_cells"]

#: Rollup widths in milliseconds. Nearly every zone's UTC offset is a multiple of 30 minutes (whole hours
#: for most, half hours for Asia/Kolkata), so its hours, days and months are unions of UTC half hours (a
#: local day: 46, 48 or 50 cells); UTC days spare a UTC query 48 rows per day. The few quarter-hour zones
#: (Asia/Kathmandu) read events for the 15 minutes off the grid at each window edge: a 15-minute grid would
#: cost twice the cells to write and to read for every other zone. Hour cells would halve the reads of
#: whole-hour zones, but leave Kolkata's half hours to events (seconds at 10 M events a month).
HALF_HOUR = 1_800_000
DAY = 86_400_000
WIDTHS = (HALF_HOUR, DAY)

metadata = sa.MetaData()

schema_versions = sa.Table(
    "sbt_metering_schema_versions", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
)

meters = sa.Table(
    "sbt_metering_meters", metadata,
    sa.Column("meter_seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("meter_id", sa.String(64), nullable=False, unique=True),
    sa.Column("event_name", sa.String(100), nullable=False, unique=True),
    sa.Column("name", sa.String(250), nullable=False),
    sa.Column("description", sa.String(1000), nullable=True),
    sa.Column("aggregation", sa.String(16), nullable=False),
    sa.Column("value_property", sa.String(256), nullable=True),
    sa.Column("group_by", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("modified", sa.DateTime(timezone=True), nullable=False),
    # Keys are never reused (SQLite would hand a deleted meter's key to the next one; caches hold keys).
    sqlite_autoincrement=True,
)

customers = sa.Table(
    "sbt_metering_customers", metadata,
    sa.Column("tenant_id", sa.String(256), primary_key=True),
    sa.Column("active", sa.Boolean, nullable=False),
)

series = sa.Table(
    "sbt_metering_series", metadata,
    sa.Column("series_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("meter_seq", sa.Integer, nullable=False),
    sa.Column("tenant_id", sa.String(256), nullable=False),
    sa.Column("dims", sa.Text, nullable=False),  # JSON list of the group-by texts, in groupBy order
    sa.UniqueConstraint("meter_seq", "tenant_id", "dims", name="sbt_metering_series_key"),
    sqlite_autoincrement=True,
)

#: Event ids come from this sequence on PostgreSQL (allocated a batch at a time, so the rollups of a
#: batch know them before the events are copied in); SQLite, one writer at a time, counts on from max.
event_ids = sa.Sequence("sbt_metering_event_ids", metadata=metadata)

events = sa.Table(
    "sbt_metering_events", metadata,
    # The key only on SQLite, which counts event ids on from the largest; PostgreSQL's come from a sequence
    # and nothing looks an event up by id, so version 5 drops the key's index there.
    sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("meter_seq", sa.Integer, nullable=False),
    sa.Column("series_id", sa.Integer, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),  # event time, epoch milliseconds
    sa.Column("value", sa.Float, nullable=False),  # 1 for COUNT, 0 for UNIQUE_COUNT (see text)
    sa.Column("text", sa.Text, nullable=True),  # UNIQUE_COUNT: the value's text
    sa.Column("identifier", sa.String(256), nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False),
    # Raw reads (window edges, LATEST/UNIQUE_COUNT, range cancels, rollup recomputation) and cancels by
    # identifier (between the dedup entry's first and latest time) by time.
    sa.Index("sbt_metering_events_time", "meter_seq", "ts"),
)

dedup = sa.Table(
    "sbt_metering_dedup", metadata,
    sa.Column("meter_seq", sa.Integer, primary_key=True),
    sa.Column("identifier", sa.String(256), primary_key=True),
    sa.Column("ts", sa.BigInteger, nullable=False),  # the latest event time stored with the identifier
    # The earliest (version 5; a SQLite database migrated from an earlier version declares it nullable,
    # but the migration filled every row).
    sa.Column("first_ts", sa.BigInteger, nullable=False),
)


def _cell_columns() -> list[sa.Column[Any]]:
    """A cell's aggregates (new Column objects for each table): count, sum, min, max and the latest event's
    time, id and value."""
    return [sa.Column("count", sa.BigInteger, nullable=False), sa.Column("sum", sa.Float, nullable=False),
            sa.Column("min", sa.Float, nullable=False), sa.Column("max", sa.Float, nullable=False),
            sa.Column("latest_ts", sa.BigInteger, nullable=False),
            sa.Column("latest_id", sa.BigInteger, nullable=False), sa.Column("latest_value", sa.Float, nullable=False)]


rollups = sa.Table(
    "sbt_metering_rollups", metadata,
    # Key order is the query's: one meter, one width, then per series (the few a page of tenants shows)
    # a bucket range.
    sa.Column("meter_seq", sa.Integer, primary_key=True),
    sa.Column("width", sa.Integer, primary_key=True),
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    *_cell_columns(),
)

tenant_days = sa.Table(
    "sbt_metering_tenant_days", metadata,
    sa.Column("meter_seq", sa.Integer, primary_key=True),
    # Bytewise on PostgreSQL, as rows are ordered (the database's collation could order tenants otherwise):
    # a page of single-day windows walks this key in row order.
    sa.Column("tenant_id", sa.String(256).with_variant(postgresql.VARCHAR(256, collation="C"), "postgresql"),
              primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),  # the UTC day: epoch ms // DAY
    *_cell_columns(),
)


#: The tenant day cells' columns, in the order :func:`tenant_days_from_cells` selects them.
TENANT_DAY_COLUMNS = "meter_seq, tenant_id, bucket, count, sum, min, max, latest_ts, latest_id, latest_value"


def tenant_days_from_cells(where: str = "") -> str:
    """SQL of tenant day cells summed from the day cells of their series (``where``: more conditions on
    ``r``, the rollups, and ``s``, the series). Columns: meter_seq, tenant_id, bucket, count, sum, min,
    max, latest_ts, latest_id, latest_value; the latest is the cell with the latest (time, event id)."""
    part = "PARTITION BY r.meter_seq, s.tenant_id, r.bucket"
    return f"""
        SELECT {TENANT_DAY_COLUMNS}
        FROM (SELECT r.meter_seq, s.tenant_id, r.bucket, sum(r.count) OVER ({part}) AS count,
                     sum(r.sum) OVER ({part}) AS sum, min(r.min) OVER ({part}) AS min,
                     max(r.max) OVER ({part}) AS max, r.latest_ts, r.latest_id, r.latest_value,
                     row_number() OVER ({part} ORDER BY r.latest_ts DESC, r.latest_id DESC) AS rn
              FROM sbt_metering_rollups AS r JOIN sbt_metering_series AS s ON s.series_id = r.series_id
              WHERE r.width = {DAY} {where}) AS t
        WHERE rn = 1"""


def cells_from_events(width: int) -> str:
    """SQL of the cells of one width recomputed from the live events of meter ``:meter`` in
    ``[:lo, :hi)``, with a ``{series}`` slot for a filter on series. Columns: series_id, bucket, count,
    sum, min, max, latest_ts, latest_id, latest_value. The argmax of LATEST is row_number() over (time,
    id) descending, portable to SQLite (3.25+) and PostgreSQL."""
    return f"""
        SELECT series_id, ts / {int(width)} AS bucket, count(*) AS count, sum(value) AS sum, min(value) AS min,
               max(value) AS max, max(CASE WHEN rn = 1 THEN ts END) AS latest_ts,
               max(CASE WHEN rn = 1 THEN event_id END) AS latest_id,
               max(CASE WHEN rn = 1 THEN value END) AS latest_value
        FROM (SELECT series_id, ts, value, event_id,
                     row_number() OVER (PARTITION BY series_id, ts / {int(width)}
                                        ORDER BY ts DESC, event_id DESC) AS rn
              FROM sbt_metering_events
              WHERE meter_seq = :meter AND NOT cancelled AND ts >= :lo AND ts < :hi {{series}}) AS e
        GROUP BY series_id, ts / {int(width)}"""


#: PostgreSQL advisory-lock key serialising migrations when several processes start at once.
_SCHEMA_LOCK = 0x5B7_3E7E


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[meters, customers, series, events, dedup, rollups], checkfirst=True)
    if conn.dialect.name == "postgresql":
        event_ids.create(conn, checkfirst=True)


#: Rollup pages kept this full by inserts (PostgreSQL fillfactor): an ingest batch updates most cells of
#: its time range, and with room left on the page the new row version stays there without new index
#: entries (a heap-only update); the cost is bigger rollup pages.
ROLLUP_FILLFACTOR = 60


def _v2(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":  # pages written from now on; SQLite has no such setting
        conn.exec_driver_sql(f"ALTER TABLE sbt_metering_rollups SET (fillfactor = {ROLLUP_FILLFACTOR})")


def _v3(conn: Connection) -> None:
    # A new key order and 30-minute cells instead of 15-minute ones: the table is made again and every meter
    # but UNIQUE_COUNT ones (which keep no cells) gets its cells recomputed from its live events.
    # PostgreSQL storage parameters an earlier migration set on the table (version 2's fillfactor) are kept.
    options = conn.execute(sa.text("SELECT reloptions FROM pg_class WHERE oid = 'sbt_metering_rollups'::regclass")
                           ).scalar() if conn.dialect.name == "postgresql" else None
    rollups.drop(conn)
    rollups.create(conn)
    if options:
        conn.exec_driver_sql(f"ALTER TABLE sbt_metering_rollups SET ({', '.join(options)})")
    seqs = conn.execute(sa.select(meters.c.meter_seq).where(meters.c.aggregation != "UNIQUE_COUNT")).scalars().all()
    for seq in seqs:
        for width in WIDTHS:
            conn.execute(sa.text(
                "INSERT INTO sbt_metering_rollups (meter_seq, width, series_id, bucket, count, sum, min, max, "
                f"latest_ts, latest_id, latest_value) SELECT :meter, {width}, c.series_id, c.bucket, c.count, c.sum, "
                f"c.min, c.max, c.latest_ts, c.latest_id, c.latest_value "
                f"FROM ({cells_from_events(width).format(series='')}) AS c"),
                {"meter": seq, "lo": -(2**62), "hi": 2**62})


def _v4(conn: Connection) -> None:
    tenant_days.create(conn, checkfirst=True)
    conn.execute(sa.delete(tenant_days))  # a database that went back to version 3 (tests) may hold rows
    conn.exec_driver_sql(f"INSERT INTO sbt_metering_tenant_days ({TENANT_DAY_COLUMNS}) {tenant_days_from_cells()}")


def _v5(conn: Connection) -> None:
    # Every dedup entry learns the earliest time stored with its identifier (through the identifier index,
    # before it goes); an entry whose events were all purged keeps its latest time as both.
    postgres = conn.dialect.name == "postgresql"
    have = {c["name"] for c in sa.inspect(conn).get_columns("sbt_metering_dedup")}
    if "first_ts" not in have:  # a database version 1 created before this release
        conn.exec_driver_sql("ALTER TABLE sbt_metering_dedup ADD COLUMN first_ts BIGINT")
        conn.exec_driver_sql(
            "UPDATE sbt_metering_dedup SET first_ts = COALESCE((SELECT min(e.ts) FROM sbt_metering_events AS e "
            "WHERE e.meter_seq = sbt_metering_dedup.meter_seq AND e.identifier = sbt_metering_dedup.identifier), ts)")
        if postgres:
            conn.exec_driver_sql("ALTER TABLE sbt_metering_dedup ALTER COLUMN first_ts SET NOT NULL")
    conn.exec_driver_sql("DROP INDEX IF EXISTS sbt_metering_events_identifier")
    if postgres:
        conn.exec_driver_sql("ALTER TABLE sbt_metering_events DROP CONSTRAINT IF EXISTS sbt_metering_events_pkey")


#: (version, description, apply) in order; a release that changes the schema appends one.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "meters, customers, series, events, dedup, rollups", _v1),
    (2, f"rollups: fillfactor {ROLLUP_FILLFACTOR} (PostgreSQL), room for heap-only updates of cells", _v2),
    (3, "rollups keyed (meter, width, series, bucket), 30-minute cells instead of 15-minute cells", _v3),
    (4, "tenant day cells: the day cells of each tenant, all its series together", _v4),
    (5, "dedup entries keep their earliest event time; no index on event identifiers (nor, on PostgreSQL, "
        "on event ids)", _v5),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(conn: Connection) -> list[int]:
    """Bring the schema to :data:`SCHEMA_VERSION` inside ``conn``'s transaction; returns the versions applied.

    :raises ConfigError: the database holds a newer schema than this release knows.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
    schema_versions.create(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(schema_versions.c.version))).scalar() or 0
    if current > SCHEMA_VERSION:
        raise ConfigError([f"the metering database has schema version {current}, newer than this "
                           f"sbt-sql-metering knows ({SCHEMA_VERSION}); upgrade sbt-sql-metering"])
    applied = []
    for version, description, apply in MIGRATIONS:
        if version > current:
            apply(conn)
            conn.execute(sa.insert(schema_versions).values(version=version, description=description))
            applied.append(version)
    return applied
