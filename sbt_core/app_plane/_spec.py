"""``[[jobs]]`` and ``[app_plane]`` of ``sbt.toml``: the application plane's jobs, as sbt-aws's ScriptJob.

```toml
[[jobs]]
preset = "provisioning"                   # onboardingRequest -> provisionSuccess / provisionFailure
script = 'DB_NAME="tenant_$tenantId"'     # the kind's own keys (script, script_file, post_script...)
import_variables = ["tenantId", "tier"]   # from the incoming detail
export_tenant_data = ["DB_NAME"]          # into jobOutput.tenantData of the success event

[app_plane]
database_url = { env = "SBT_JOBS_DATABASE_URL" }   # default: sqlite:///<state_dir>/jobs.sqlite3
```

Each key of a job and the ScriptJob property it mirrors (sbt-aws ``src/core-app-plane/script-job.ts``):

=================================  ==========================================================
``name``                           the construct id; default: the preset's name
``kind``                           (how it runs; the job kind plugin, default ``script``)
``incoming_event``, ``incoming_source``   ``incomingEvent`` (detail type; source default SBT's)
``job_identifier_key``             ``jobIdentifierKey`` (default ``tenantRegistrationId``)
``import_variables``               ``environmentStringVariablesFromIncomingEvent``
``import_json_variables``          ``environmentJSONVariablesFromIncomingEvent``
``environment``                    ``scriptEnvironmentVariables`` (values may be secret references)
``export_tenant_data``             ``environmentVariablesToOutgoingEvent.tenantData``
``export_tenant_registration_data``  ``environmentVariablesToOutgoingEvent.tenantRegistrationData``
``success_event``, ``failure_event``  ``outgoingEvent.success`` / ``.failure``
``failure_status``                 ``jobFailureStatus``
``timeout_seconds``                the state machine's timeout (upstream: one hour)
=================================  ==========================================================

Every other key belongs to the kind and is validated by its ``settings_class``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .._sql import check_database_url, database_url
from ..config import Config, structure_table
from ..errors import ConfigError
from ..job_kind import JobKind
from ..models import APPLICATION_PLANE_SOURCE, CONTROL_PLANE_SOURCE, DEFAULT_SOURCES, DetailType, Secret
from ..models.events import canonical_detail_type
from ..plugins import PluginCatalog, Status
from ..structure import Refusal
from ..triggers import EventTrigger

__all__ = ["PRESETS", "AppPlaneSettings", "JobSpec", "load_app_plane_settings", "load_jobs"]

SQLITE_FILE = "jobs.sqlite3"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")

#: sbt-aws's ProvisioningScriptJob and DeprovisioningScriptJob (``tenant-lifecycle-script-jobs.ts``).
PRESETS: dict[str, dict[str, Any]] = {
    "provisioning": {"incoming_event": DetailType.ONBOARDING_REQUEST.value,
                     "success_event": DetailType.PROVISION_SUCCESS.value,
                     "failure_event": DetailType.PROVISION_FAILURE.value,
                     "failure_status": {"tenantStatus": "Failed to provision tenant."}},
    "deprovisioning": {"incoming_event": DetailType.OFFBOARDING_REQUEST.value,
                       "success_event": DetailType.DEPROVISION_SUCCESS.value,
                       "failure_event": DetailType.DEPROVISION_FAILURE.value,
                       "failure_status": {"tenantStatus": "Failed to deprovision tenant."}},
}


def _names(_: object, __: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    bad = [name for name in value if not _NAME.match(name)]
    if bad:
        raise Refusal("must be shell variable names", ", ".join(map(repr, bad)))


@attrs.frozen
class _JobTable:
    """The keys of a ``[[jobs]]`` table the core owns (see the module docstring)."""

    incoming_event: str
    success_event: str
    failure_event: str
    name: str | None = None
    preset: str | None = None
    kind: str = "script"
    incoming_source: str | None = None
    job_identifier_key: str = "tenantRegistrationId"
    import_variables: tuple[str, ...] = attrs.field(default=(), validator=_names)
    import_json_variables: tuple[str, ...] = attrs.field(default=(), validator=_names)
    environment: dict[str, Secret] = attrs.field(factory=dict)
    export_tenant_data: tuple[str, ...] = attrs.field(default=(), validator=_names)
    export_tenant_registration_data: tuple[str, ...] = attrs.field(default=(), validator=_names)
    failure_status: dict[str, str] = attrs.field(factory=dict)
    timeout_seconds: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0))


_OWN_KEYS = frozenset(a.name for a in attrs.fields(_JobTable))


@attrs.frozen
class JobSpec:
    """One validated job: its trigger, what it imports and exports, its outgoing events, and its kind
    (the plugin instance and its validated settings)."""

    name: str
    kind_name: str
    kind: JobKind = attrs.field(eq=False, repr=False)
    settings: Any
    trigger: EventTrigger
    job_identifier_key: str
    import_variables: tuple[str, ...]
    import_json_variables: tuple[str, ...]
    environment: Mapping[str, Secret]
    export_tenant_data: tuple[str, ...]
    export_tenant_registration_data: tuple[str, ...]
    success_event: str
    failure_event: str
    failure_status: Mapping[str, str]
    timeout_seconds: float
    base_dir: Path
    preset: str | None = None

    @property
    def exported_names(self) -> tuple[str, ...]:
        """Every variable the job exports, tenant data first, each once."""
        return tuple(dict.fromkeys((*self.export_tenant_data, *self.export_tenant_registration_data)))

    @property
    def secret_names(self) -> frozenset[str]:
        """Fixed variables whose value came from a secret reference (``{ env = }`` / ``{ file = }``)."""
        return frozenset(name for name, value in self.environment.items() if value.reference is not None)

    def outgoing_source(self, detail_type: str) -> str:
        """SBT's source for a standard outgoing event; the application plane's for a custom one."""
        return DEFAULT_SOURCES.get(canonical_detail_type(detail_type), APPLICATION_PLANE_SOURCE)


@attrs.frozen
class AppPlaneSettings:
    """``[app_plane]``: where job runs are kept, how many run at once, how long a run's claim lasts without
    a heartbeat (a process that died holding it loses it then), and how often a standalone application
    plane asks the control plane for new events."""

    database_url: Secret | None = None
    max_concurrent_jobs: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    lease_seconds: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    poll_interval_seconds: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))

    def url(self, state_dir: Path) -> Any:
        """The job store's SQLAlchemy URL: ``database_url``, else ``<state_dir>/jobs.sqlite3``."""
        return database_url(self.database_url, Path(state_dir) / SQLITE_FILE)


def load_app_plane_settings(config: Config) -> AppPlaneSettings:
    """Validate ``[app_plane]`` (absent: the defaults). :raises ConfigError: every problem, dotted."""
    table = dict(config.sections.get("app_plane", {}) or {})
    problems: list[str] = []
    url = None
    if "database_url" in table:
        url = check_database_url(table.pop("database_url"), "app_plane.database_url", problems)
    settings, more = structure_table(table, AppPlaneSettings, "app_plane")
    problems += more
    if problems:
        raise ConfigError(problems)
    assert isinstance(settings, AppPlaneSettings)
    return attrs.evolve(settings, database_url=url)


def load_jobs(config: Config, catalog: PluginCatalog) -> list[JobSpec]:
    """Every ``[[jobs]]`` table validated: presets applied, the kind found among the loaded job kinds and
    its own keys validated by it.

    :raises ConfigError: every problem at once, each as ``jobs[i].key: message``.
    """
    tables = config.sections.get("jobs", [])
    if not isinstance(tables, list):
        raise ConfigError(["jobs: must be an array of tables ([[jobs]])"])
    base_dir = config.path.parent if config.path is not None else Path.cwd()
    problems: list[str] = []
    jobs: list[JobSpec] = []
    names: dict[str, int] = {}
    kinds: dict[str, JobKind] = {}  # one instance per kind, shared by its jobs
    for i, table in enumerate(tables):
        path = f"jobs[{i}]"
        if not isinstance(table, dict):
            problems.append(f"{path}: must be a table")
            continue
        job = _job(table, path, catalog, base_dir, problems, kinds)
        if job is None:
            continue
        if job.name in names:
            problems.append(f"{path}.name: job {job.name!r} is already declared in jobs[{names[job.name]}]")
            continue
        names[job.name] = i
        jobs.append(job)
    if problems:
        raise ConfigError(problems)
    return jobs


def _job(table: dict[str, Any], path: str, catalog: PluginCatalog, base_dir: Path, problems: list[str],
         kinds: dict[str, JobKind]) -> JobSpec | None:
    problems_before = len(problems)
    preset = table.get("preset")
    defaults: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            problems.append(f"{path}.preset: must be one of {', '.join(map(repr, PRESETS))} (got {preset!r})")
            return None
        defaults = {"name": preset, **PRESETS[preset]}
    own = {**defaults, **{k: v for k, v in table.items() if k in _OWN_KEYS}}
    spec, more = structure_table(own, _JobTable, path)
    problems += more
    kind_name = own.get("kind", "script")
    kind_table = {k: v for k, v in table.items() if k not in _OWN_KEYS}
    kind = kinds.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        kind = _kind(kind_name, catalog, f"{path}.kind", problems)
        if kind is not None:
            kinds[kind_name] = kind
    settings = None
    if kind is not None:
        settings_class = type(kind).settings_class
        kind_keys = [a.name for a in attrs.fields(settings_class)] if attrs.has(settings_class) else []
        unknown = sorted(k for k in kind_table if k not in kind_keys)
        if unknown:
            valid = ", ".join(sorted(_OWN_KEYS - {"kind"})) + f"; and of kind {kind_name!r}: " + \
                (", ".join(kind_keys) or "none")
            problems.append(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {valid}")
            kind_table = {k: v for k, v in kind_table.items() if k in kind_keys}
        settings, more = structure_table(kind_table, settings_class, path)
        problems += more
        if settings is not None:
            problems += [f"{path}.{problem}" for problem in kind.check(settings, base_dir)]
    if spec is None or settings is None or kind is None or problems_before != len(problems):
        return None
    name = spec.name or ""
    if not _JOB_NAME.match(name):
        problems.append(f"{path}.name: required (letters, digits, '_', '.', '-'); or give a preset")
        return None
    incoming = spec.incoming_event
    source = spec.incoming_source or DEFAULT_SOURCES.get(canonical_detail_type(incoming), CONTROL_PLANE_SOURCE)
    for key in ("incoming_event", "success_event", "failure_event", "job_identifier_key"):
        if not getattr(spec, key):
            problems.append(f"{path}.{key}: must not be empty")
            return None
    if any(not isinstance(v, str) for v in spec.failure_status.values()):
        problems.append(f"{path}.failure_status: values must be strings")
        return None
    return JobSpec(
        name=name, kind_name=kind_name, kind=kind, settings=settings,
        trigger=EventTrigger(canonical_detail_type(incoming), source),
        job_identifier_key=spec.job_identifier_key, import_variables=spec.import_variables,
        import_json_variables=spec.import_json_variables, environment=dict(spec.environment),
        export_tenant_data=spec.export_tenant_data,
        export_tenant_registration_data=spec.export_tenant_registration_data, success_event=spec.success_event,
        failure_event=spec.failure_event, failure_status=dict(spec.failure_status),
        timeout_seconds=spec.timeout_seconds, base_dir=base_dir, preset=preset)


def _kind(name: Any, catalog: PluginCatalog, path: str, problems: list[str]) -> JobKind | None:
    installed = catalog.job_kinds()
    choices = f"installed: {', '.join(installed)}" if installed else "none installed"
    record = catalog.get(name) if isinstance(name, str) else None
    if record is None or (record.status is Status.LOADED and name not in installed):
        problems.append(f"{path}: unknown job kind {name!r}; {choices}")
        return None
    if record.status is not Status.LOADED:
        why = f"failed to load: {record.error}" if record.status is Status.FAILED else "is disabled"
        problems.append(f"{path}: job kind {name!r} {why}")
        return None
    kind = record.obj()  # a job kind is constructed with no arguments (its settings are per job)
    assert isinstance(kind, JobKind)
    return kind
