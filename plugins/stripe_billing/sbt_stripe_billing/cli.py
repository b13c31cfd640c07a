"""``sbt stripe meters`` and ``sbt stripe usage``: set-up and inspection of the ``stripe`` billing provider.

- ``sbt stripe meters [--create]``: for every meter event name the provider sends
  (``meter_event_names`` values, plus ``--event NAME``), whether Stripe has an active meter for it; with
  ``--create``, create the missing ones as the push expects them (``default_aggregation.formula = sum``,
  ``customer_mapping = {type: by_id, event_payload_key: <customer_id_key>}``,
  ``value_settings.event_payload_key = <value_key>``). Stripe allows one meter per event name, and a meter's
  event name cannot change, so existing meters are never modified.
- ``sbt stripe usage``: the provider's local store, read-only: open sums, and batches pending (kept for
  the next push), expired (beyond the 35-day horizon) or orphaned (tenant offboarded).

Both read ``[providers.billing]`` of the config (``--config``/``$SBT_CONFIG``/``./sbt.toml``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import attrs
import typer

from sbt_core.cli._common import ConfigOption, JsonOption, handle_errors, print_json, state
from sbt_core.errors import BadRequestError, ProviderError

__all__ = ["register"]


def _settings(ctx: typer.Context, config: Any) -> tuple[Any, Any]:
    """``(Config, StripeBillingSettings)`` of the config; refuses a config whose billing provider is not stripe."""
    from .settings import StripeBillingSettings

    _, cfg = state(ctx).load(config)
    selection = cfg.provider("billing")
    if selection is None or not isinstance(selection.settings, StripeBillingSettings):
        raise BadRequestError("[providers.billing] does not select the 'stripe' provider")
    return cfg, selection.settings


def register(cli: typer.Typer) -> None:
    """Add the ``sbt stripe`` command group."""
    group = typer.Typer(help="Stripe billing provider: meters and the local usage store.", no_args_is_help=True)
    cli.add_typer(group, name="stripe")

    @group.command("meters")
    @handle_errors
    def meters(ctx: typer.Context, config: ConfigOption = None,
               event: Annotated[list[str] | None, typer.Option(
                   "--event", help="Another meter event name to check (repeatable).", show_default=False)] = None,
               create: Annotated[bool, typer.Option("--create", help="Create the missing meters.")] = False,
               as_json: JsonOption = False) -> None:
        """Check (and with --create, create) the Stripe meters the usage push sends events to."""
        import stripe

        from ._push import describe_stripe_error
        from .client import make_client

        _, settings = _settings(ctx, config)
        names = sorted({*settings.meter_event_names.values(), *(event or [])})
        if not names:
            raise BadRequestError("no meter event names: set meter_event_names in [providers.billing] or pass --event")
        client = make_client(settings)
        try:
            meters = client.v1.billing.meters.list(params={"limit": 100}).auto_paging_iter()
            existing = {m.event_name: m for m in meters}
            rows = []
            for name in names:
                meter = existing.get(name)
                status = meter.status if meter is not None else "missing"
                if meter is None and create:
                    meter = client.v1.billing.meters.create(params={
                        "display_name": name, "event_name": name, "default_aggregation": {"formula": "sum"},
                        "customer_mapping": {"type": "by_id", "event_payload_key": settings.customer_id_key},
                        "value_settings": {"event_payload_key": settings.value_key}})
                    status = "created"
                rows.append({"eventName": name, "meterId": meter.id if meter is not None else None, "status": status})
        except stripe.StripeError as exc:
            raise ProviderError(f"stripe: {describe_stripe_error(exc)}") from exc
        if as_json:
            print_json(rows)
        else:
            for row in rows:
                typer.echo(f"{row['eventName']}: {row['status']}" + (f" ({row['meterId']})" if row["meterId"] else ""))
        if any(r["status"] != "active" and r["status"] != "created" for r in rows):
            raise typer.Exit(1)  # missing or inactive meters: the push would be rejected by Stripe

    @group.command("usage")
    @handle_errors
    def usage(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """The local usage store: open sums and batches pending, expired or orphaned."""
        from sbt_core._sql import database_url

        from ._store import STORE_FILE, Store

        cfg, settings = _settings(ctx, config)
        path = cfg.state_dir / "stripe" / STORE_FILE
        if settings.database_url is None and not path.exists():
            raise BadRequestError(f"no usage store at {path} (has the control plane run with this state_dir?)")
        store = Store(database_url(settings.database_url, path))
        try:
            report = {
                "open": [{"tenantId": t, "metric": m, "day": _day(d), "value": v}
                         for t, m, d, v, _ in store.open_usage()],
                **{status: [_batch(b) for b in store.batches(status)] for status in ("pending", "expired", "orphaned")},
            }
        finally:
            store.close()
        if as_json:
            print_json(report)
            return
        for section, rows in report.items():
            typer.echo(f"{section}: {len(rows)}")
            for row in rows:
                typer.echo("  " + ", ".join(f"{k}={v}" for k, v in row.items() if v is not None))


def _day(bucket: int) -> str:
    return datetime.fromtimestamp(bucket, tz=UTC).date().isoformat()


def _batch(batch: Any) -> dict[str, Any]:
    data = attrs.asdict(batch)
    return {"identifier": data["identifier"], "tenantId": data["tenant_id"], "metric": data["metric"],
            "day": _day(data["bucket"]), "value": data["value"], "timestamp": data["timestamp"],
            "attempts": data["attempts"], "lastError": data["last_error"]}
