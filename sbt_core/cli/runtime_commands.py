"""``sbt serve``, ``sbt events put|list|get|dlq|drop-target``, ``sbt schedule list|run``.

``sbt serve`` runs the control plane — HTTP API (uvicorn), event bus and scheduler — in this process.
The other commands (``events drop-target`` aside: it works on the NATS stream and the dead-letter database
directly) talk to that running server over HTTP (:class:`~sbt_core.runtime.bus.client.BusClient`),
because the event log, the dead-letter store and the providers' in-memory state live there:

- the server is ``--url`` / ``$SBT_URL``, else ``http://<[server] host>:<[server] port>`` of the config;
- the token is ``--token`` / ``$SBT_TOKEN``, else — with the ``local`` auth provider — one is minted from
  the key in the state directory (as ``sbt token`` does) with just the ``event/*`` scope the command needs.

Errors print one line (``error: ...``) and exit 1; ``--json`` prints stable JSON for scripts.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import re
import shlex
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..config import providers_line
from ..errors import BadRequestError
from ..models import Event, scopes, to_json
from ..runtime.bus.client import BusClient
from ._common import ConfigOption, JsonOption, fail, handle_errors, json_object, parse_object, print_json, state
from ._server import TokenOption, UrlOption, connect, resolve_server
from ._table import Column, LimitOption, WideOption, count_line, print_table

__all__ = ["TokenOption", "UrlOption", "register", "resolve_server"]

#: Entries per ``POST /events`` when putting a file (EventBridge PutEvents takes at most 10; we take more).
DEFAULT_BATCH = 100
#: Off a terminal, ``events put --file`` prints a progress line every this many events.
PROGRESS_EVERY = 10_000


def _client(ctx: typer.Context, config: Path | None, url: str | None, token: str | None, scope: str) -> BusClient:
    return connect(BusClient, ctx, config, url, token, scope)


def _open(path: Path) -> IO[str]:
    if str(path) == "-":
        return sys.stdin
    try:
        return path.open(encoding="utf-8")
    except OSError as exc:
        raise BadRequestError(f"--file: cannot read {str(path)!r}: {exc.strerror or exc}") from None


def _entries(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of every non-blank line of a JSON-lines file (``-``: stdin), read one line at a
    time; BadRequestError naming ``file:line`` for a line that is not a JSON object."""
    stream = _open(path)
    try:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield number, parse_object(line, f"{path}:{number}", "a JSON object (one event per line)")
    except OSError as exc:
        raise BadRequestError(f"--file: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def _count(path: Path) -> int:
    """How many events a file holds, checking every line before anything is sent (so a typo on line 90,000
    puts nothing instead of the first 89,999); stdin cannot be read twice and is checked as it goes."""
    count = sum(1 for _ in _entries(path))
    if not count:
        raise BadRequestError(f"{path}: no events in the file")
    return count


def _batches(entries: Iterator[tuple[int, dict[str, Any]]], size: int) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    batch: list[tuple[int, dict[str, Any]]] = []
    for item in entries:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Reporter:
    """Progress of a file put: a rich bar on a terminal, else a line on stderr every PROGRESS_EVERY events."""

    def __init__(self, stack: ExitStack, total: int | None, quiet: bool) -> None:
        console = Console(stderr=True)
        self.total, self.done, self._next_line = total, 0, PROGRESS_EVERY
        self._lines = not quiet and not console.is_terminal
        self._progress: Progress | None = None
        if not quiet and console.is_terminal:
            columns = (TextColumn("putting events"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            self._progress = stack.enter_context(Progress(*columns, console=console, transient=True))
            self._task = self._progress.add_task("put", total=total)

    def advance(self, count: int) -> None:
        self.done += count
        if self._progress is not None:
            self._progress.advance(self._task, count)
        elif self._lines and self.done >= self._next_line:
            of = f" of {self.total}" if self.total is not None else ""
            typer.echo(f"put {self.done}{of} events", err=True)
            self._next_line = (self.done // PROGRESS_EVERY + 1) * PROGRESS_EVERY


def _put_file(client: BusClient, path: Path, batch_size: int, as_json: bool, total: int | None) -> int:
    """Stream the file to ``POST /events`` a batch at a time, in constant memory: nothing is kept but
    counts, and ``--json`` writes each answer as it comes. Returns how many failed."""
    failed = put = 0
    with ExitStack() as stack:
        reporter = _Reporter(stack, total, quiet=as_json)
        for batch in _batches(_entries(path), batch_size):
            answers = client.put_events([entry for _, entry in batch])["Entries"]
            for (line, _), answer in zip(batch, answers, strict=True):
                if as_json:
                    opening = '{\n  "Entries": [\n    ' if put + failed == 0 else ",\n    "
                    sys.stdout.write(opening + json.dumps(answer))
                if "EventId" in answer:
                    put += 1
                else:
                    failed += 1
                    if not as_json:
                        typer.echo(f"error: line {line}: {answer.get('ErrorCode')}: {answer.get('ErrorMessage')}",
                                   err=True)
            reporter.advance(len(batch))
    if put + failed == 0:
        raise BadRequestError(f"{path}: no events in the file")
    if as_json:
        sys.stdout.write(f'\n  ],\n  "FailedEntryCount": {failed}\n}}\n')
    else:
        typer.echo(f"{put} put, {failed} failed")
    return failed


def _refuse_a_port_in_use(host: str, port: int) -> None:
    """One line and exit 1 when ``host:port`` is taken, before anything starts (uvicorn would start the
    control plane, then fail with tracebacks). Other bind errors are left to uvicorn to report."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise fail(f"port {port} on {host} is already in use; choose another with --port "
                           f"(e.g. sbt serve --port {port + 1 if port < 65535 else 8081})") from None


def _summary(deliveries: list[dict[str, Any]]) -> str:
    """Each binding's state: ``billing_ingest=delivered, metering_ingest_usage_event=retrying``."""
    return ", ".join(f"{d['target']}={d['state']}" for d in deliveries) or "(no bindings)"


def _states(deliveries: list[dict[str, Any]]) -> str:
    """How many deliveries are in each state, for a narrow table: ``2 delivered, 1 dead_lettered``
    (``sbt events get ID`` or ``--wide`` name the bindings)."""
    counts: dict[str, int] = {}
    for d in deliveries:
        counts[d["state"]] = counts.get(d["state"], 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items()) or "(no bindings)"


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
        from ..runtime.state_lock import StateDirLock

        if log_level in ("info", "debug", "trace"):
            logging.getLogger("sbt.jobs").setLevel(logging.INFO)  # each job's output, line by line
        catalog, cfg = state(ctx).load(config)
        _refuse_a_port_in_use(host or cfg.server.host, cfg.server.port if port is None else port)
        # Before any provider opens its files there (memory metering replays and compacts its log).
        state_lock = StateDirLock(cfg.state_dir)
        state_lock.acquire()
        cp = ControlPlane.from_config(catalog, cfg)
        auth = cfg.provider("auth")

        def ready(url: str) -> None:
            typer.echo(f"sbt control plane listening on {url}")
            typer.echo(f"  other shells:    export SBT_URL={url}   # where the sbt client commands go")
            typer.echo(f"  API description: {url}/openapi.json")
            typer.echo(f"  {providers_line(cfg)}")
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
            state_lock.release()
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
        """Put one event (DETAIL_TYPE + --detail) or a JSON-lines --file on the bus (POST /events).

        A file is streamed a batch at a time in constant memory (any size); every line is checked before the
        first batch is sent (stdin: as it is read). Progress: a bar on a terminal, else a line on stderr every
        10,000 events."""
        if (detail_type is None) == (file is None):
            raise fail("give a DETAIL_TYPE or --file (not both)")
        if file is not None:
            total = None if str(file) == "-" else _count(file)  # refused before the server is looked up
            with _client(ctx, config, url, token, scopes.EVENT_WRITE) as client:
                if _put_file(client, file, batch_size, as_json, total):
                    raise typer.Exit(1)
            return
        assert detail_type is not None
        try:
            event = Event.create(detail_type, json_object(detail, "--detail"), source=source)
        except ValueError as exc:
            raise BadRequestError(str(exc)) from None
        entry = to_json(Event(event.detail_type, event.source, event.detail, id=event_id or event.id,
                              time=event.time))
        with _client(ctx, config, url, token, scopes.EVENT_WRITE) as client:
            answers = client.put_events([entry])["Entries"]
        failed = [a for a in answers if "EventId" not in a]
        if as_json:
            print_json({"FailedEntryCount": len(failed), "Entries": answers})
        elif not failed:
            typer.echo(answers[0]["EventId"])  # for `sbt events get`
        for answer in failed if not as_json else []:
            typer.echo(f"error: event: {answer.get('ErrorCode')}: {answer.get('ErrorMessage')}", err=True)
        if failed:
            raise typer.Exit(1)

    @events.command("list")
    @handle_errors
    def list_events(ctx: typer.Context,
                    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many.")] = 50,
                    config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                    as_json: JsonOption = False, wide: WideOption = False) -> None:
        """Recent events, newest first, with each binding's delivery state (--wide: received and source)."""
        with _client(ctx, config, url, token, scopes.EVENT_READ) as client:
            records, total = client.event_page(limit)
        if as_json:
            print_json(records)
            return
        columns = (Column("received", wide=True), Column("id", ident=True), Column("detail-type"),
                   Column("source", wide=True), Column("deliveries", flex=True))
        describe = _summary if wide else _states
        rows = [(r["received"], r["event"]["id"], r["event"]["detail-type"], r["event"]["source"],
                 describe(r["deliveries"])) for r in records]
        print_table("sbt events", columns, rows, wide=wide,
                    footer=count_line(len(records), total, "events", more="--limit for more"))

    @events.command("get")
    @handle_errors
    def get_event(ctx: typer.Context, event_id: Annotated[str, typer.Argument(help="The event id.")],
                  config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                  as_json: JsonOption = False, wide: WideOption = False) -> None:
        """One event: its envelope and each binding's delivery (state, attempts, last error)."""
        with _client(ctx, config, url, token, scopes.EVENT_READ) as client:
            record = client.get_event(event_id)
        if as_json:
            print_json(record)
            return
        console = Console()
        console.print_json(json.dumps(record["event"]))
        columns = (Column("target", ident=True), Column("state"), Column("attempts", justify="right"),
                   Column("last error", flex=True), Column("updated", wide=True))
        rows = [(d["target"], d["state"], d["attempts"], d.get("lastError") or "", d.get("updated") or "")
                for d in record["deliveries"]]
        print_table(f"deliveries (received {record['received']})", columns, rows, wide=wide, console=console)

    @dlq.command("list")
    @handle_errors
    def dlq_list(ctx: typer.Context,
                 event_id: Annotated[str | None, typer.Option("--event-id", help="Only this event's.")] = None,
                 target: Annotated[str | None, typer.Option("--target",
                                                            help="Only this binding's (hook name).")] = None,
                 limit: LimitOption = None,
                 config: ConfigOption = None, url: UrlOption = None, token: TokenOption = None,
                 as_json: JsonOption = False, wide: WideOption = False) -> None:
        """Dead-lettered events with the binding that failed them and the last error."""
        with _client(ctx, config, url, token, scopes.EVENT_READ) as client:
            letters = client.dead_letters(event_id=event_id, target=target)
        shown = letters[:limit] if limit else letters
        if as_json:
            print_json(shown)
            return
        if not letters:
            typer.echo("no dead letters")
            return
        columns = (Column("dead-lettered", wide=True), Column("event id", ident=True),
                   Column("detail-type", wide=True), Column("target", ident=True),
                   Column("attempts", justify="right", wide=True), Column("last error", flex=True))
        rows = [(d["deadLettered"], d["event"]["id"], d["event"]["detail-type"], d["target"], d["attempts"],
                 d["lastError"]) for d in shown]
        print_table("sbt dead letters", columns, rows, wide=wide,
                    footer=count_line(len(shown), len(letters), "dead letters", more="--limit for more"))

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


    @events.command("drop-target")
    @handle_errors
    def drop_target(ctx: typer.Context,
                    target: Annotated[str, typer.Argument(help="The target (a hook binding) no process's config has "
                                                               "any more, as the start-up warning names it.")],
                    force: Annotated[bool, typer.Option("--force", help="Even though a process is pulling its "
                                                                        "messages.")] = False,
                    config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """NATS transport: dead-letter the messages waiting for TARGET (reason "target removed"), then delete its
        JetStream consumer. Run it once every process runs a config without TARGET (docs/several-processes.md)."""
        from ..runtime.bus.nats_transport import NatsTransport
        from ..runtime.control_plane import dead_letter_store

        _, cfg = state(ctx).load(config)
        if cfg.events.transport != "nats":
            raise fail('drop-target is for [events] transport = "nats" (the sqlite transport dead-letters the '
                       "messages of a removed target at start-up)")
        store = dead_letter_store(cfg)
        if store is None:
            raise fail('drop-target needs a dead-letter store outside the server: [events] database_url, or '
                       'dead_letters = "sqlite"')
        transport = NatsTransport.from_config(cfg.events)
        try:
            outcome = transport.drop_target(target, store, force=force)
        finally:
            transport.close()
            store.close()
        if as_json:
            print_json({"target": outcome.target, "deadLettered": outcome.dead_lettered, "left": outcome.left,
                        "deleted": outcome.deleted})
        else:
            typer.echo(f"{outcome.dead_lettered} event(s) of {target} dead-lettered (sbt events dlq list --target "
                       f"{shlex.quote(target)})")
            if outcome.deleted:
                typer.echo(f"consumer of {target} deleted")
            else:
                typer.echo(f"{outcome.left} message(s) of {target} are being handled or wait for a retry: consumer "
                           "kept; run this again once they are due")
        if not outcome.deleted:
            raise typer.Exit(1)


# --- sbt schedule ------------------------------------------------------------------------------------------

def _register_schedule(app: typer.Typer) -> None:
    schedule = typer.Typer(help="Schedule bindings of the running control plane.", no_args_is_help=True)
    app.add_typer(schedule, name="schedule")

    @schedule.command("list")
    @handle_errors
    def schedule_list(ctx: typer.Context, config: ConfigOption = None, url: UrlOption = None,
                      token: TokenOption = None, as_json: JsonOption = False, wide: WideOption = False) -> None:
        """Scheduled hooks with their expression, next due time and runs fired/skipped."""
        with _client(ctx, config, url, token, scopes.EVENT_READ) as client:
            items = client.schedules()
        if as_json:
            print_json(items)
            return
        columns = (Column("hook", ident=True), Column("expression"), Column("next due"),
                   Column("fired", justify="right"), Column("skipped", justify="right"))
        rows = [(s["hook"], s["expression"], re.sub(r"\.\d+(?=Z$)", "", s["nextDue"]), s["fired"], s["skipped"])
                for s in items]  # whole seconds are enough to read
        print_table("sbt schedules", columns, rows, wide=wide)

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
