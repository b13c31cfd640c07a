"""``sbt tenants register|list|get|update|delete``: tenant registrations through the running control plane.

The commands call the server's ``/tenant-registrations`` routes (see :mod:`sbt_core.tenants.client` for
why not the database directly), found as every client command finds it (:mod:`sbt_core.cli._server`):
``--url`` / ``$SBT_URL``, else ``[server]`` of the config; ``--token`` / ``$SBT_TOKEN``, else — with the
``local`` auth provider — one minted from the local key with just the scope the command needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from .. import input_policy
from ..errors import BadRequestError
from ..models import scopes
from ..tenants.client import TenantClient
from ._common import ConfigOption, JsonOption, handle_errors, json_object, print_json
from ._server import TokenOption, UrlOption, connect
from ._table import Column, WideOption, count_line, print_table

__all__ = ["register"]

TenantDataOption = Annotated[str | None, typer.Option("--tenant-data", "-t", show_default=False,
                                                     help="tenantData as a JSON object, or @file.json.")]
RegistrationDataOption = Annotated[str | None, typer.Option(
    "--registration-data", "-r", show_default=False, help="tenantRegistrationData as a JSON object, or @file.json.")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", show_default=False, help="KEY=VALUE added to tenantData (repeatable; VALUE may be JSON).")]


def _pairs(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BadRequestError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = input_policy.loads(raw, f"--set {key}")
        except BadRequestError:
            out[key] = raw  # a bare word is a string
    return out


def _client(ctx: typer.Context, config: Path | None, url: str | None, token: str | None, scope: str) -> TenantClient:
    """A client of the running server, resolved as every client command does (:func:`connect`)."""
    return connect(TenantClient, ctx, config, url, token, scope)


def _status(item: dict[str, Any]) -> Text:
    """``registrationStatus`` when the application plane has set one (``created``, ``failed`` …), else what
    ``sbtaws_active`` says: ``active`` or ``deleted`` (sbt-aws's soft delete)."""
    active = item.get("sbtaws_active") is not False
    status = item.get("registrationStatus")
    text = status if isinstance(status, str) and status else ("active" if active else "deleted")
    return Text(text, style="" if active and text != "failed" else "red")


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Tenant registrations (through the running control plane).", no_args_is_help=True)
    app.add_typer(group, name="tenants")

    @group.command("register")
    @handle_errors
    def register_tenant(ctx: typer.Context, tenant_data: TenantDataOption = None,
                        registration_data: RegistrationDataOption = None, set_: SetOption = None,
                        idempotency_key: Annotated[str | None, typer.Option(
                            "--idempotency-key", help="Retry-safe: the same key returns the first answer.")] = None,
                        config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                        as_json: JsonOption = False) -> None:
        """Register a tenant (POST /tenant-registrations); emits onboardingRequest on the server."""
        data = json_object(tenant_data, "--tenant-data") | _pairs(set_)
        reg_data = json_object(registration_data, "--registration-data")
        with _client(ctx, config, url, token, scopes.TENANT_WRITE) as client:
            answer = client.register(data, reg_data, idempotency_key=idempotency_key)
        if as_json:
            print_json(answer)
        else:
            typer.echo(f"{answer['message']}: tenant {answer['tenantId']}, "
                       f"registration {answer['tenantRegistrationId']}")

    @group.command("list")
    @handle_errors
    def list_registrations(ctx: typer.Context,
                           limit: Annotated[int | None, typer.Option("--limit", help="Page size (default 10).")] = None,
                           next_token: Annotated[str | None, typer.Option("--next-token")] = None,
                           all_: Annotated[bool, typer.Option("--all", help="Follow next_token to the end.")] = False,
                           tenants: Annotated[bool, typer.Option("--tenants", help="List tenants (GET /tenants) "
                                                                 "instead of registrations.")] = False,
                           config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                           as_json: JsonOption = False, wide: WideOption = False) -> None:
        """List registrations (or tenants), one page or --all (--wide: the other id too)."""
        with _client(ctx, config, url, token, scopes.TENANT_READ) as client:
            if all_:
                every = client.iter_tenants if tenants else client.iter_registrations
                items, token_out = list(every(limit or 100)), None
            else:
                page = client.list_tenants if tenants else client.list_registrations
                items, token_out = page(limit, next_token)
        if as_json:
            body: dict[str, Any] = {"data": items}
            if token_out:
                body["next_token"] = token_out
            print_json(body)
            return
        columns: tuple[Column, ...]
        rows: list[tuple[object, ...]]
        if tenants:
            columns = (Column("tenantId", ident=True), Column("tenantName", flex=True), Column("status"),
                       Column("tenantRegistrationId", ident=True, wide=True))
            rows = [(t.get("tenantId", ""), t.get("tenantName", ""), _status(t), t.get("tenantRegistrationId", ""))
                    for t in items]
        else:
            columns = (Column("tenantRegistrationId", ident=True), Column("status", flex=True),
                       Column("tenantId", ident=True, wide=True))
            rows = [(r.get("tenantRegistrationId", ""), _status(r), r.get("tenantId", "")) for r in items]
        more = f"more: --next-token {token_out}, or --all" if token_out else None
        noun = "tenants" if tenants else "registrations"
        print_table(noun if tenants else "tenant registrations", columns, rows, wide=wide,
                    footer=count_line(len(items), None if token_out else len(items), noun, more=more))


    @group.command("get")
    @handle_errors
    def get(ctx: typer.Context, identifier: Annotated[str, typer.Argument(help="tenantRegistrationId (or tenantId "
                                                                         "with --tenant).")],
            tenant: Annotated[bool, typer.Option("--tenant", help="Get the tenant with this tenantId.")] = False,
            config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
            as_json: JsonOption = False) -> None:
        """Show one registration (or tenant) as JSON."""
        with _client(ctx, config, url, token, scopes.TENANT_READ) as client:
            data = client.get_tenant(identifier) if tenant else client.get_registration(identifier)
        print_json(data)

    @group.command("update")
    @handle_errors
    def update(ctx: typer.Context, registration_id: Annotated[str, typer.Argument(help="tenantRegistrationId")],
               tenant_data: TenantDataOption = None, registration_data: RegistrationDataOption = None,
               set_: SetOption = None, config: ConfigOption = None, url: UrlOption = None,
               token: TokenOption = None, as_json: JsonOption = False) -> None:
        """Merge keys into a registration and its tenant (PATCH /tenant-registrations/{id})."""
        data = json_object(tenant_data, "--tenant-data") | _pairs(set_)
        reg_data = json_object(registration_data, "--registration-data")
        if not data and not reg_data:
            raise BadRequestError("nothing to update: give --tenant-data, --registration-data or --set")
        with _client(ctx, config, url, token, scopes.TENANT_WRITE) as client:
            answer = client.update_registration(registration_id, tenant_data=data, tenant_registration_data=reg_data)
        print_json(answer)

    @group.command("delete")
    @handle_errors
    def delete(ctx: typer.Context, registration_id: Annotated[str, typer.Argument(help="tenantRegistrationId")],
               config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
               as_json: JsonOption = False) -> None:
        """Soft-delete a registration and its tenant; emits offboardingRequest on the server."""
        with _client(ctx, config, url, token, scopes.TENANT_WRITE) as client:
            answer = client.delete_registration(registration_id)
        if as_json:
            print_json(answer)
        else:
            typer.echo(answer["message"])
