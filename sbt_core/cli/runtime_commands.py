"""``sbt serve``, ``sbt events put|list|get|dlq``, ``sbt schedule list|run``.

``sbt serve`` runs the control plane — HTTP API (uvicorn), event bus and scheduler — in this process.
The other commands talk to that running server over HTTP (:class:`~sbt_core.runtime.bus.client.BusClient`),
because the event log, the dead-letter store and the providers' in-memory state live there:

- the server is ``--url`` / ``$SBT_URL``, else ``http://<[server] host>:<[server] port>`` of the config;
- the token is ``--token`` / ``$SBT_TOKEN``, else — with the ``local`` auth provider — one is minted from
  the key in the state directory (as ``sbt token`` does) with just the ``event/*`` scope the command needs.

Errors print one line (``error: ...``) and exit 1; ``--json`` prints stable JSON for scripts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import BadRequestError
from ..models import Event, scopes, to_json
from ._common import ConfigOption, JsonOption, fail, handle_errors, json_object, parse_object, print_json, state

__all__ = ["register", "resolve_server"]

UrlOption = Annotated[str | None, typer.Option(
    "--url", envvar="SBT_URL", show_default=False,
    help="Control plane URL (default: \\[server] host and port of the config).")]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="SBT_TOKEN", show_default=False,
                                                help="Bearer token (default: minted with the local auth provider).")]
#: Entries per ``POST /events`` when putting a file (EventBridge PutEvents takes at most 10; we take more).
DEFAULT_BATCH = 100


def resolve_server(ctx: typer.Context, config: Path | None, url: str | None, token: str | None,
                   scope: str) -> tuple[str, str]:
    """The server's base URL and a bearer token for ``scope`` (see the module docstring for the rules).

    :raises ConfigError: the config is needed (no ``--url`` or no ``--token``) and invalid.
    :raises BadRequestError: no token given and the configured auth provider is not ``local``.
    """
    if url is not None and token is not None:
        return url, token
    _, cfg = state(ctx).load(config)
    if url is None:
        host = cfg.server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # bound to every interface: use loopback
        url = f"http://{host}:{cfg.server.port}"
    if token is None:
        selection = cfg.provider("auth")
        if selection is None or selection.type != "local":
            which = f"the '{selection.type}' auth provider" if selection else "no auth provider"
            raise BadRequestError(f"no token: pass --token or set SBT_TOKEN (with {which} configured, sbt cannot "
                                  f"mint one; it needs the {scope} scope)")
        from ..auth_local import mint_token

        token = mint_token([scope], config=cfg)
    return url, token


def _client(ctx: typer.Context, config: Path | None, url: str | None, token: str | None, scope: str) -> Any:
    from ..runtime.bus.client import BusClient

    base, bearer = resolve_server(ctx, config, url, token, scope)
    return BusClient(base, bearer)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """Every non-blank line of a JSON-lines file (``-``: stdin), each an object (envelope or PutEvents entry)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise BadRequestError(f"--file: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    entries = [parse_object(line, f"{path}:{number}", "a JSON object (one event per line)")
               for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not entries:
        raise BadRequestError(f"{path}: no events in the file")
    return entries


def _batches(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _summary(deliveries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{d['target']}={d['state']}" for d in deliveries) or "(no bindings)"


def register(app: typer.Typer) -> None:
    _register_serve(app)
    _register_events(app)
    _register_schedule(app)


# --- sbt serve ---------------------------------------------------------------------------------------------

def _register_serve(app: typer.Typer) -> None:
    @app.command("serve")
    @handle_errors
    def serve(ctx: typer.Context, config: ConfigOption = None,
              host: Annotated[str | None, typer.Option("--host", help="Interface to bind (default: \\[server] host).",
                                                       show_default=False)] = None,
              port: Annotated[int | None, typer.Option("--port", "-p", min=0, max=65535, show_default=False,
                                                       help="Port (default: \\[server] port; 0 = any free).")] = None,
              log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info") -> None:
        """Run the control plane: HTTP API, event bus and scheduler in one process (Ctrl-C stops it, draining
        events)."""
        from ..runtime.control_plane import ControlPlane

        if log_level in ("info", "debug", "trace"):
            logging.getLogger("sbt.jobs").setLevel(logging.INFO)  # each job's output, line by line
        catalog, cfg = state(ctx).load(config)
        cp = ControlPlane.from_config(catalog, cfg)
        auth = cfg.provider("auth")

        def ready(url: str) -> None:
            typer.echo(f"sbt control plane listening on {url}")
            typer.echo(f"  API description: {url}/openapi.json")
            if auth is not None and auth.type == "local":
                # The token must come from the same config (state directory, key) as this server.
                where = f" --config {shlex.quote(str(cfg.path))}" if cfg.path is not None and config else ""
                typer.echo(f"  admin token:     TOKEN=$(sbt token{where})   # every scope; narrow it with "
                           "--scope 'user/user_read user/user_write'")
                typer.echo(f"                   curl -H \"Authorization: Bearer $TOKEN\" {url}/users")
            elif cp.auth_settings is not None:
                typer.echo(f"  tokens:          from the {auth.type if auth else ''} auth provider's token endpoint "
                           f"{cp.auth_settings.token_endpoint}")
            typer.echo("  press Ctrl-C to stop (in-flight events are drained first)")

        # uvicorn turns SIGINT/SIGTERM into a graceful shutdown and re-raises the signal afterwards; with
        # these handlers in place that re-raise is a no-op, so a drained shutdown exits 0.
        received: list[int] = []
        previous = {sig: signal.signal(sig, lambda s, _f: received.append(s))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            asyncio.run(cp.serve(host, port, ready=ready, log_level=log_level))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        typer.echo("sbt control plane stopped")


# --- sbt events --------------------------------------------------------------------------------------------

def _register_events(app: typer.Typer) -> None:
    events = typer.Typer(help="Events on the running control plane's bus: put, list, get, dead letters.",
                         no_args_is_help=True)
    app.add_typer(events, name="events")
    dlq = typer.Typer(help="The dead-letter store: events a binding failed to handle.", no_args_is_help=True)
    events.add_typer(dlq, name="dlq")

    @events.command("put")
    @handle_errors
    def put(ctx: typer.Context,
            detail_type: Annotated[str | None, typer.Argument(
                help="Detail type, e.g. ingestUsage or sbt_aws_onboardingRequest (omit with --file).",
                show_default=False)] = None,
            detail: Annotated[str, typer.Option("--detail", "-d",
                                                help="Detail as a JSON object, or @file.json.")] = "{}",
            source: Annotated[str | None, typer.Option("--source", help="Source (default: SBT's for the detail type).",
                                                       show_default=False)] = None,
            event_id: Annotated[str | None, typer.Option("--id", help="Event id (default: a new uuid; reuse one to "
                                                         "test dedup).", show_default=False)] = None,
            file: Annotated[Path | None, typer.Option("--file", "-f", show_default=False,
                                                      help="JSON-lines file (- for stdin): one envelope or PutEvents "
                                                           "entry per line.")] = None,
            batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1000,
                                                    help="Events per POST /events.")] = DEFAULT_BATCH,
            config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
            as_json: JsonOption = False) -> None:
        """Put one event (DETAIL_TYPE + --detail) or a JSON-lines --file on the bus (POST /events)."""
        if (detail_type is None) == (file is None):
            raise fail("give a DETAIL_TYPE or --file (not both)")
        if file is not None:
            entries = _read_lines(file)
        else:
            assert detail_type is not None
            try:
                event = Event.create(detail_type, json_object(detail, "--detail"), source=source)
            except ValueError as exc:
                raise BadRequestError(str(exc)) from None
            entries = [to_json(Event(event.detail_type, event.source, event.detail, id=event_id or event.id,
                                     time=event.time))]
        answers: list[dict[str, Any]] = []
        with _client(ctx, config, url, token, scopes.EVENT_WRITE) as client:
            if file is None:
                answers += client.put_events(entries)["Entries"]
            else:
                columns = (TextColumn("putting events"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
                with Progress(*columns, console=Console(stderr=True), transient=True, disable=as_json) as progress:
                    task = progress.add_task("put", total=len(entries))
                    for batch in _batches(entries, batch_size):
                        answers += client.put_events(batch)["Entries"]
                        progress.advance(task, len(batch))
        failed = [(i, a) for i, a in enumerate(answers) if "EventId" not in a]
        if as_json:
            print_json({"FailedEntryCount": len(failed), "Entries": answers})
        else:
            # One event: its id (for `sbt events get`). A file: a summary, not a line per event (a
            # replay may hold 100,000); --json gives every id.
            if file is None and not failed:
                typer.echo(answers[0]["EventId"])
            for index, answer in failed:
                where = f"line {index + 1}" if file is not None else "event"
                typer.echo(f"error: {where}: {answer.get('ErrorCode')}: {answer.get('ErrorMessage')}", err=True)
            if file is not None:
                typer.echo(f"{len(answers) - len(failed)} put, {len(failed)} failed")
        if failed:
            raise typer.Exit(1)

    @events.command("list")
    @handle_errors
    def list_events(ctx: typer.Context,
                    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many.")] = 50,
                    config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                    as_json: JsonOption = False) -> None:
        """Recent events, newest first, with each binding's delivery state."""
        with _client(ctx, config, url, token, scopes.EVENT_READ) as client:
            records = client.list_events(limit)
        if as_json:
            print_json(records)
            return
        table = Table(title="sbt events")
        for column in ("received", "id", "detail-type", "source", "deliveries"):
            table.add_column(column, overflow="fold")
        for record in records:
            event = record["event"]
            table.add_row(record["received"], event["id"], event["detail-type"], event["source"],
                          _summary(record["deliveries"]))
        Console().print(table)

    @events.command("get")
    @handle_errors
    def get_event(ctx: typer.Context, event_id: Annotated[str, typer.Argument(help="The event id.")],
                  config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                  as_json: JsonOption = False) -> None:
        """One event: its envelope and each binding's delivery (state, attempts, last error)."""
        with _client(ctx, config, url, token, scopes.EVENT_READ) as client:
            record = client.get_event(event_id)
        if as_json:
            print_json(record)
            return
        console = Console()
        console.print_json(json.dumps(record["event"]))
        table = Table(title=f"deliveries (received {record['received']})")
        for column in ("target", "state", "attempts", "last error", "updated"):
            table.add_column(column, overflow="fold")
        for d in record["deliveries"]:
            table.add_row(d["target"], d["state"], str(d["attempts"]), d.get("lastError") or "", d.get("updated") or "")
        console.print(table)

    @dlq.command("list")
    @handle_errors
    def dlq_list(ctx: typer.Context,
                 event_id: Annotated[str | None, typer.Option("--event-id", help="Only this event's.")] = None,
                 target: Annotated[str | None, typer.Option("--target",
                                                            help="Only this binding's (hook name).")] = None,
                 config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                 as_json: JsonOption = False) -> None:
        """Dead-lettered events with the binding that failed them and the last error."""
        with _client(ctx, config, url, token, scopes.EVENT_READ) as client:
            letters = client.dead_letters(event_id=event_id, target=target)
        if as_json:
            print_json(letters)
            return
        if not letters:
            typer.echo("no dead letters")
            return
        table = Table(title="sbt dead letters")
        for column in ("dead-lettered", "event id", "detail-type", "target", "attempts", "last error"):
            table.add_column(column, overflow="fold")
        for d in letters:
            table.add_row(d["deadLettered"], d["event"]["id"], d["event"]["detail-type"], d["target"],
                          str(d["attempts"]), d["lastError"])
        Console().print(table)

    @dlq.command("replay")
    @handle_errors
    def dlq_replay(ctx: typer.Context,
                   event_id: Annotated[str | None, typer.Argument(help="Replay this event's dead letters.",
                                                                  show_default=False)] = None,
                   target: Annotated[str | None, typer.Option("--target", help="Only this binding's.")] = None,
                   all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
                   config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                   as_json: JsonOption = False) -> None:
        """Re-deliver dead letters, each only to the binding that failed it (fix the provider first)."""
        if not (event_id or target or all_):
            raise fail("name an EVENT_ID, a --target, or --all")
        with _client(ctx, config, url, token, scopes.EVENT_WRITE) as client:
            replayed = client.replay(event_id=event_id, target=target)
        if as_json:
            print_json(replayed)
            return
        for d in replayed:
            typer.echo(f"replayed {d['event']['id']} to {d['target']}")
        typer.echo(f"{len(replayed)} dead letter(s) replayed")


# --- sbt schedule ------------------------------------------------------------------------------------------

def _register_schedule(app: typer.Typer) -> None:
    schedule = typer.Typer(help="Schedule bindings of the running control plane.", no_args_is_help=True)
    app.add_typer(schedule, name="schedule")

    @schedule.command("list")
    @handle_errors
    def schedule_list(ctx: typer.Context, config: ConfigOption = None, url: UrlOption = None,
                      token: TokenOption = None, as_json: JsonOption = False) -> None:
        """Scheduled hooks with their expression, next due time and runs fired/skipped."""
        with _client(ctx, config, url, token, scopes.EVENT_READ) as client:
            items = client.schedules()
        if as_json:
            print_json(items)
            return
        table = Table(title="sbt schedules")
        for column in ("hook", "expression", "next due", "fired", "skipped"):
            table.add_column(column)
        for s in items:
            table.add_row(s["hook"], s["expression"], s["nextDue"], str(s["fired"]), str(s["skipped"]))
        Console().print(table)

    @schedule.command("run")
    @handle_errors
    def schedule_run(ctx: typer.Context, hook: Annotated[str, typer.Argument(help="The scheduled hook, e.g. "
                                                                             "billing_put_usage.")],
                     config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                     as_json: JsonOption = False) -> None:
        """Fire a run of HOOK now in the running server (queued behind a run in progress, never beside it)."""
        with _client(ctx, config, url, token, scopes.EVENT_WRITE) as client:
            answer = client.run_schedule(hook)
        if as_json:
            print_json(answer)
        else:
            typer.echo(f"{hook} run queued as event {answer['eventId']} (see: sbt events get {answer['eventId']})")
