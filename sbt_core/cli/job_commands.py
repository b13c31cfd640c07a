"""``sbt jobs list|runs`` and ``sbt app-plane run``: the application plane's jobs and their runs.

``sbt jobs`` reads the config's ``[[jobs]]`` and the job store (``<state_dir>/jobs.sqlite3`` or
``[app_plane] database_url``) directly: runs are rows in a database, whichever process ran them
(``sbt serve``, or ``sbt app-plane run``). ``sbt app-plane run`` runs the jobs in this process against a
control plane reached over HTTP (:mod:`sbt_core.app_plane.standalone`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from ..config import redacted
from ..job_kind import mask
from ..models import scopes
from ._common import ConfigOption, JsonOption, handle_errors, print_json, state
from ._table import Column, WideOption, print_table
from .runtime_commands import TokenOption, UrlOption, resolve_server

__all__ = ["register", "run_json"]


def _time(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def run_json(run: Any, secrets: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A :class:`~sbt_core.app_plane.JobRun` as ``sbt jobs runs --json`` prints it; exported values whose
    name looks secret, or that equal a secret of the job, are redacted."""
    exported = redacted(run.exported) if run.exported is not None else None
    if exported is not None and secrets:
        exported = {part: {k: mask(v, secrets) if isinstance(v, str) else v for k, v in values.items()}
                    for part, values in exported.items()}
    return {"job": run.job, "jobId": run.job_id, "status": run.status.value, "attempt": run.attempt,
            "eventId": run.event.id, "started": _time(run.started), "finished": _time(run.finished),
            "durationSeconds": None if run.duration is None else round(run.duration, 3),
            "exitCode": run.exit_code, "error": run.error, "jobOutput": exported,
            "output": [mask(line, secrets) for line in run.output]}


def register(app: typer.Typer) -> None:
    jobs = typer.Typer(help="Application-plane jobs (\\[\\[jobs]]) and their runs.", no_args_is_help=True)
    app.add_typer(jobs, name="jobs")
    plane = typer.Typer(help="The application plane as its own process.", no_args_is_help=True)
    app.add_typer(plane, name="app-plane")

    def _open(ctx: typer.Context, config: Any) -> tuple[list[Any], Any]:
        from ..app_plane import load_jobs, open_store

        catalog, cfg = state(ctx).load(config)
        specs = load_jobs(cfg, catalog)
        store = open_store(cfg)
        store.create_schema()
        return specs, store

    @jobs.command("list")
    @handle_errors
    def list_jobs(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False,
                  wide: WideOption = False) -> None:
        """The configured jobs: kind, trigger, outgoing events, timeout, and each one's last run."""
        specs, store = _open(ctx, config)
        try:
            last = store.last_runs()
        finally:
            store.dispose()
        items = []
        for job in specs:
            run = last.get(job.name)
            items.append({"name": job.name, "kind": job.kind_name, "preset": job.preset,
                          "trigger": {"detailType": job.trigger.detail_type, "source": job.trigger.source},
                          "jobIdentifierKey": job.job_identifier_key, "successEvent": job.success_event,
                          "failureEvent": job.failure_event, "timeoutSeconds": job.timeout_seconds,
                          "lastRun": None if run is None else run_json(run, _secrets(job))})
        if as_json:
            print_json(items)
            return
        if not items:
            typer.echo("no jobs: declare them in [[jobs]] of the config")
            return
        columns = (Column("job", ident=True), Column("kind"), Column("trigger", flex=True),
                   Column("success / failure", wide=True), Column("timeout", wide=True, justify="right"),
                   Column("last run", flex=True))
        rows = []
        for item in items:
            run = item["lastRun"]
            shown = "never" if run is None else f"{run['jobId']} {run['status']} ({run['started']})"
            trigger = f"{item['trigger']['detailType']} from {item['trigger']['source']}"
            rows.append((item["name"], item["kind"], trigger, f"{item['successEvent']} / {item['failureEvent']}",
                         f"{item['timeoutSeconds']:g} s", shown))
        print_table("sbt jobs", columns, rows, wide=wide)

    @jobs.command("runs")
    @handle_errors
    def list_runs(ctx: typer.Context,
                  job: Annotated[str | None, typer.Option("--job", help="Only this job's runs.")] = None,
                  limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many.")] = 20,
                  config: ConfigOption = None, as_json: JsonOption = False, wide: WideOption = False) -> None:
        """Recent runs, newest first: job id, status, duration, exit code, exported variables (secrets
        redacted)."""
        specs, store = _open(ctx, config)
        try:
            runs = store.recent(limit, job)
        finally:
            store.dispose()
        secrets = {spec.name: _secrets(spec) for spec in specs}
        items = [run_json(run, secrets.get(run.job, frozenset())) for run in runs]
        if as_json:
            print_json(items)
            return
        if not items:
            typer.echo("no runs yet")
            return
        columns = (Column("started", wide=True), Column("job"), Column("job id", ident=True), Column("status"),
                   Column("attempt", wide=True, justify="right"), Column("duration", justify="right"),
                   Column("exit", wide=True, justify="right"), Column("exported / error", flex=True))
        rows = []
        for item in items:
            duration = "" if item["durationSeconds"] is None else f"{item['durationSeconds']:.1f} s"
            output = item["jobOutput"] or {}
            detail = item["error"] or ", ".join(f"{k}={v}" for part in output.values() for k, v in part.items())
            rows.append((item["started"], item["job"], item["jobId"], item["status"], str(item["attempt"]), duration,
                         "" if item["exitCode"] is None else str(item["exitCode"]), detail))
        print_table("sbt job runs", columns, rows, wide=wide)

    @plane.command("run")
    @handle_errors
    def run(ctx: typer.Context, config: ConfigOption = None, url: UrlOption = None,
            token: TokenOption = None) -> None:
        """Run the config's \\[\\[jobs]] in this process, on the events of the control plane at --url (read from
        its GET /events), sending their outcomes to its POST /events. Ctrl-C stops it."""
        from ..app_plane.standalone import run_standalone

        logging.getLogger("sbt.jobs").setLevel(logging.INFO)  # each job's output, line by line
        catalog, cfg = state(ctx).load(config)
        scope = f"{scopes.EVENT_READ} {scopes.EVENT_WRITE}"
        base, bearer = resolve_server(ctx, config, url, token, scope)
        # A token sbt minted expires (the local provider's lifetime): mint again when the server says so.
        tokens: str | Callable[[], str] = bearer if token is not None else (
            lambda: resolve_server(ctx, config, base, None, scope)[1])
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda _s, _f: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

        def ready(app_plane: Any) -> None:
            typer.echo(f"sbt application plane running {len(app_plane.jobs)} job(s) "
                       f"({', '.join(app_plane.jobs) or 'none'}) on the events of {base}")
            typer.echo(f"  runs: {app_plane.store.describe()}   (sbt jobs runs)")

        try:
            run_standalone(cfg, catalog, base, tokens, stop, ready=ready)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        typer.echo("sbt application plane stopped")


def _secrets(job: Any) -> frozenset[str]:
    return frozenset(job.environment[name].get_secret_value() for name in job.secret_names)
