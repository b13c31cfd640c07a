"""The application plane (docs/application-plane.md): sbt-aws's CoreApplicationPlane and ScriptJob.

Jobs are declared in ``[[jobs]]`` (:mod:`._spec`), run by a job kind plugin (:class:`sbt_core.job_kind.JobKind`;
the first-party ``script`` kind is :mod:`.script`), claimed and recorded in the job store (:mod:`._store`)
and bound to a bus by :class:`AppPlane` (:mod:`.plane`): the control plane's in ``sbt serve``, or one fed by
a control plane over HTTP in ``sbt app-plane run`` (:mod:`.standalone`).
"""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError
from ..plugins import PluginCatalog
from ._spec import PRESETS, AppPlaneSettings, JobSpec, load_app_plane_settings, load_jobs
from ._store import Claim, JobRun, JobRunStore, RunStatus
from .plane import AppPlane, Publisher, job_environment

__all__ = ["PRESETS", "AppPlane", "AppPlaneSettings", "Claim", "JobRun", "JobRunStore", "JobSpec", "Publisher",
           "RunStatus", "job_environment", "load_app_plane_settings", "load_jobs", "open_app_plane", "open_store"]


def open_store(config: Config) -> JobRunStore:
    """The job store of ``config``: ``[app_plane] database_url`` or ``<state_dir>/jobs.sqlite3``.

    :raises ConfigError: ``[app_plane]`` is invalid.
    """
    return JobRunStore(load_app_plane_settings(config).url(config.state_dir))


def open_app_plane(config: Config, catalog: PluginCatalog, publish: Publisher | None = None) -> AppPlane:
    """The application plane of ``config``'s ``[[jobs]]`` and ``[app_plane]``.

    :raises ConfigError: every problem of both sections, with dotted paths.
    """
    problems: list[str] = []
    jobs: list[JobSpec] = []
    settings = AppPlaneSettings()
    try:
        jobs = load_jobs(config, catalog)
    except ConfigError as exc:
        problems += exc.problems
    try:
        settings = load_app_plane_settings(config)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return AppPlane(jobs, JobRunStore(settings.url(config.state_dir)), settings, naming=config.events.naming,
                    publish=publish)
