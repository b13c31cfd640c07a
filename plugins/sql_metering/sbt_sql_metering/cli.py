"""``sbt metering stats`` and ``sbt metering check``: an operator's view of the ``sql`` provider's database.

- ``sbt metering stats``: schema version, meters, customers, series, events (cancelled among them), dedup
  entries, rollup cells and, on PostgreSQL, bytes per table (indexes included).
- ``sbt metering check [--meter ID] [--repair]``: recompute every rollup cell from the events and list
  the cells that differ (exit 1 when any does); ``--repair`` replaces them with the recomputed ones.

Both read ``[providers.metering]`` of the config (``--config``/``$SBT_CONFIG``/``./sbt.toml``) and open the
database directly (no server needed); they refuse a config whose metering provider is not ``sql``.
"""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
import typer

from sbt_core.cli._common import ConfigOption, JsonOption, handle_errors, print_json, state
from sbt_core.errors import BadRequestError, NotFoundError

from ._rollups import differences
from ._schema import meters
from ._store import Store
from .settings import SqlMeteringSettings

__all__ = ["register"]


def _store(ctx: typer.Context, config: Any) -> Store:
    _, cfg = state(ctx).load(config)
    selection = cfg.provider("metering")
    if selection is None or not isinstance(selection.settings, SqlMeteringSettings):
        raise BadRequestError("[providers.metering] does not select the 'sql' provider")
    store = Store(selection.settings.url(cfg.state_dir / selection.type))
    store.migrate()
    return store


def register(cli: typer.Typer) -> None:
    """Add the ``sbt metering`` command group."""
    group = typer.Typer(help="SQL metering provider: database statistics and rollup consistency.",
                        no_args_is_help=True)
    cli.add_typer(group, name="metering")

    @group.command("stats")
    @handle_errors
    def stats(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """Rows and bytes of the metering database."""
        store = _store(ctx, config)
        try:
            report = store.stats()
        finally:
            store.dispose()
        if as_json:
            print_json(report)
            return
        for key, value in report.items():
            if isinstance(value, dict):
                typer.echo(f"{key}:")
                for name, size in value.items():
                    typer.echo(f"  {name}: {size}")
            else:
                typer.echo(f"{key}: {value}")

    @group.command("check")
    @handle_errors
    def check(ctx: typer.Context, config: ConfigOption = None,
              meter: Annotated[str | None, typer.Option("--meter", help="Check one meter (its id).")] = None,
              repair: Annotated[bool, typer.Option("--repair", help="Replace differing cells.")] = False,
              as_json: JsonOption = False) -> None:
        """Recompute rollups from events and report every cell that differs (exit 1 if any)."""
        store = _store(ctx, config)
        report: dict[str, list[str]] = {}
        try:
            with store.write() as conn:
                q = sa.select(meters.c.meter_seq, meters.c.meter_id).order_by(meters.c.meter_seq)
                if meter is not None:
                    q = q.where(meters.c.meter_id == meter)
                rows = conn.execute(q).all()
                if meter is not None and not rows:
                    raise NotFoundError(f"meter {meter!r} not found")
                for seq, meter_id in rows:
                    store.lock_meter(conn, seq, exclusive=True)
                    report[meter_id] = differences(conn, seq, repair=repair)
        finally:
            store.dispose()
        bad = sum(len(v) for v in report.values())
        if as_json:
            print_json({"meters": len(report), "differences": report, "repaired": repair and bad > 0})
        else:
            if not report:
                typer.echo("no meters")
            for meter_id, lines in report.items():
                typer.echo(f"{meter_id}: {'ok' if not lines else f'{len(lines)} cell(s) differ'}")
                for line in lines:
                    typer.echo(f"  {line}")
            if repair and bad:
                typer.echo(f"repaired {bad} cell(s)")
        if bad and not repair:
            raise typer.Exit(1)
