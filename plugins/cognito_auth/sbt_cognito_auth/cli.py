"""``sbt cognito bootstrap`` (one command from AWS credentials, or a local server, to a working pool) and
``sbt cognito token`` (an access token of the configured pool for ``SBT_TOKEN``).

Bootstrap's output contract: **stdout is only the TOML block** (safe to append to ``sbt.toml``); the machine client
secret never appears in it. The secret goes either to ``--secret-file`` (written with mode 0600 and
referenced as ``{ file = ... }``) or, by default, to **stderr** as an ``export NAME='...'`` line marked as
a secret, for the operator to put in their secret store.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from sbt_core.errors import SbtError

from .bootstrap import DEFAULT_SECRET_ENV, bootstrap_pool, render_config
from .client import make_client
from .settings import is_loopback_url

__all__ = ["bootstrap", "register", "token"]


def _default_region() -> str | None:
    import boto3

    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or boto3.session.Session().region_name


def bootstrap(
    region: Annotated[str | None, typer.Option(help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, profile).",
                                               show_default=False)] = None,
    endpoint_url: Annotated[str | None, typer.Option(
        "--endpoint-url", help="A local Cognito-compatible server, e.g. http://127.0.0.1:5000 (moto_server).",
        show_default=False)] = None,
    pool_name: Annotated[str, typer.Option("--pool-name", help="Name of the new user pool.")] = "sbt-control-plane",
    domain: Annotated[str | None, typer.Option(help="Cognito domain prefix to create (gives the OAuth token "
                                                    "endpoint); must be unique in the region.",
                                               show_default=False)] = None,
    tenant_attribute: Annotated[bool, typer.Option("--tenant-attribute/--no-tenant-attribute",
                                                   help="Also declare custom:tenantId.")] = False,
    callback_url: Annotated[list[str] | None, typer.Option(
        "--callback-url", help="OAuth callback URL of the user client (repeatable).", show_default=False)] = None,
    secret_env: Annotated[str, typer.Option("--secret-env", help="Environment variable the config reads the "
                                                                 "machine client secret from.")] = DEFAULT_SECRET_ENV,
    secret_file: Annotated[Path | None, typer.Option(
        "--secret-file", help="Write the machine client secret to this file (mode 0600, must not exist) and "
                              "reference it, instead of printing it to stderr.", show_default=False)] = None,
    allow_non_loopback_endpoint: Annotated[bool, typer.Option(
        "--allow-non-loopback-endpoint", help="Accept an --endpoint-url that is not on this machine.")] = False,
) -> None:
    """Create a Cognito user pool, resource servers and scopes, a user and a machine client (and optionally a
    domain) as SBT's CognitoAuth does, then print the providers.auth TOML table to paste into sbt.toml."""
    region = region or _default_region()
    if not region:
        raise _fail("no AWS region: pass --region or set AWS_REGION")
    if endpoint_url and not allow_non_loopback_endpoint and not is_loopback_url(endpoint_url):
        raise _fail(f"--endpoint-url {endpoint_url} is not on this machine; a local Cognito-compatible server "
                    "signs with a published key (pass --allow-non-loopback-endpoint if you mean it)")
    if secret_file is not None and secret_file.exists():
        raise _fail(f"--secret-file {secret_file} exists; refusing to overwrite it")
    try:
        result = bootstrap_pool(make_client(region, endpoint_url), region, pool_name=pool_name, domain=domain,
                                tenant_attribute=tenant_attribute,
                                callback_urls=callback_url or ["http://localhost"], endpoint_url=endpoint_url)
    except SbtError as exc:
        raise _fail(exc.message) from None
    secret = result.machine_client_secret.get_secret_value()
    if secret_file is not None:
        # O_EXCL + 0600: never clobber a file, never leave the secret world-readable even briefly.
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        typer.echo(f"# machine client secret written to {secret_file} (mode 0600)", err=True)
    else:
        typer.echo("# SECRET: the machine client secret. Put it in your secret store or environment;\n"
                   "# keep it out of sbt.toml, version control and shared logs.", err=True)
        typer.echo(f"export {secret_env}={shlex.quote(secret)}", err=True)
    typer.echo(render_config(result, secret_env=secret_env,
                             secret_file=str(secret_file.resolve()) if secret_file else None,
                             allow_non_loopback_endpoint=allow_non_loopback_endpoint), nl=False)


def token(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", show_default=False,
                                                help="Config file (default: $SBT_CONFIG, else ./sbt.toml).")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", show_default=False,
                                             help="Sign in as this user (USER_PASSWORD_AUTH on the user client).")]
    = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                 help="Read the password from stdin instead of prompting.")] = False,
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", show_default=False, help="Without --user: scope to request for the machine client "
                                            "(repeatable; default: all it is allowed).")] = None,
) -> None:
    """Print an access token of the configured Cognito pool: a user's (--user, password sign-in) or the
    machine client's (OAuth client_credentials at the token endpoint). Use it as SBT_TOKEN."""
    from sbt_core.cli import CliState
    from sbt_core.errors import ConfigError

    from .settings import CognitoSettings
    from .tokens import client_credentials_token, password_token

    root = ctx.find_root().obj
    cli_state = root if isinstance(root, CliState) else CliState()
    try:
        _, cfg = cli_state.load(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1) from None
    selection = cfg.provider("auth")
    settings = selection.settings if selection is not None else None
    if not isinstance(settings, CognitoSettings):
        raise _fail("[providers.auth] is not type = \"cognito\"")
    try:
        if user is not None:
            if password_stdin:
                password = typer.get_text_stream("stdin").readline().rstrip("\r\n")
            else:
                password = typer.prompt("Password", hide_input=True, err=True)
            access_token = password_token(make_client(settings.region, settings.endpoint_url), settings, user,
                                          password)
        else:
            access_token = client_credentials_token(settings, scope or ())
    except SbtError as exc:
        raise _fail(exc.message) from None
    typer.echo(access_token)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def register(cli: typer.Typer) -> None:
    """Add the ``cognito`` command group (``sbt cognito bootstrap``, ``sbt cognito token``) to ``cli``."""
    group = typer.Typer(name="cognito", help="Amazon Cognito (the 'cognito' auth provider).", no_args_is_help=True)
    group.command("bootstrap")(bootstrap)
    group.command("token")(token)
    cli.add_typer(group, name="cognito")
