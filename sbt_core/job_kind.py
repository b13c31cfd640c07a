"""What a job kind is: how the application plane runs one job (docs/application-plane.md).

A job kind is a class named by its entry point in the group ``sbt``, like a provider
(``[project.entry-points.sbt] terraform = "sbt_terraform_job:TerraformJob"``); the plugin loader lists it
with kind ``job`` because it subclasses :class:`JobKind`. The entry-point name is what a ``[[jobs]]``
table's ``kind`` names. The first-party kind is ``script`` (:mod:`sbt_core.app_plane.script`, bash, as
sbt-aws's ScriptJob runs in CodeBuild).

The core owns everything around a run: the trigger, the job identifier, idempotency, the variables
imported from the incoming event, the outgoing success/failure event and its ``jobOutput``. A kind only
runs: it gets a :class:`JobRequest` (its validated settings, the environment to run with, the names to
export, a timeout) and answers a :class:`JobResult` (exit code, exported values, or why it failed).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs

from .provider import NoSettings

__all__ = ["OUTPUT_TAIL", "JobKind", "JobRequest", "JobResult", "mask"]

#: Lines of output a run keeps (:attr:`JobResult.output`).
OUTPUT_TAIL = 20
MASK = "**********"


def mask(text: str, secrets: frozenset[str]) -> str:
    """``text`` with every secret value replaced by ``**********`` (longest first, so a secret that contains
    another is masked whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


@attrs.frozen
class JobRequest:
    """One run of a job, as the core hands it to its kind.

    :ivar job: the job's name (``[[jobs]] name``).
    :ivar job_id: the job identifier (the incoming detail's ``job_identifier_key``, e.g. the
        ``tenantRegistrationId``); with ``job`` it names the run in logs.
    :ivar settings: the kind's validated settings (an instance of its ``settings_class``).
    :ivar environment: every variable the job runs with, and only those: the variables imported from the
        incoming detail, then the job's fixed ``environment`` (secrets resolved). Values are strings.
    :ivar secrets: the values among ``environment`` that are secrets; a kind never logs them.
    :ivar export: the variable names whose final values the job must report (``JobResult.exported``).
    :ivar timeout_seconds: how long the run may take; past it the kind stops everything it started and
        answers ``timed_out=True``.
    :ivar base_dir: the config file's folder, against which relative paths in the settings resolve.
    :ivar log: the logger to stream the job's output to, one record per line, prefixed with the run's name.
    :ivar stop: set when the application plane stops: the kind stops the run as for a timeout and answers
        an error (the run is taken up again by the next start).
    """

    job: str
    job_id: str
    settings: Any
    environment: Mapping[str, str]
    secrets: frozenset[str] = frozenset()
    export: tuple[str, ...] = ()
    timeout_seconds: float = 3600.0
    base_dir: Path = Path(".")
    log: logging.Logger = attrs.field(factory=lambda: logging.getLogger("sbt.jobs"), eq=False)
    stop: threading.Event = attrs.field(factory=threading.Event, eq=False)

    @property
    def run_name(self) -> str:
        """``<job>/<job id>``: how the run appears in the log."""
        return f"{self.job}/{self.job_id}"


@attrs.frozen
class JobResult:
    """How a run ended.

    :ivar exit_code: the process's exit status (None when there was no process, or it was killed).
    :ivar exported: the final value of each name of ``JobRequest.export`` the job set (unset names are
        absent).
    :ivar error: why the run failed, for the run record and the log (None: it succeeded); never a secret.
    :ivar timed_out: the run passed its timeout and was stopped.
    :ivar output: the last lines of the job's output (at most :data:`OUTPUT_TAIL`), secrets masked, kept with
        the run so ``sbt jobs runs`` can show why it failed.
    """

    exit_code: int | None = None
    exported: Mapping[str, str] = attrs.field(factory=dict)
    error: str | None = None
    timed_out: bool = False
    output: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.error is None


class JobKind(ABC):
    """Base class of a job kind. Subclasses set ``settings_class`` (an attrs class validated from the keys
    of a ``[[jobs]]`` table the core does not own, e.g. ``script``) and implement :meth:`run`.

    It is constructed with no arguments, once per process, and serves every job of its kind: :meth:`run`
    is called from worker threads, several at once, and blocks until the run ends. It must not raise for a
    failing job (answer a :class:`JobResult` with ``error``); an exception it raises is recorded as the run's
    error all the same.
    """

    settings_class: ClassVar[type] = NoSettings

    def check(self, settings: Any, base_dir: Path) -> list[str]:
        """Problems with ``settings`` beyond their types (a script file that does not exist…), each as
        ``key: message``; reported at start-up with the job's dotted path. Default: none."""
        return []

    @abstractmethod
    def run(self, request: JobRequest) -> JobResult:
        """Run ``request`` to its end (or its timeout) and report how it ended."""
