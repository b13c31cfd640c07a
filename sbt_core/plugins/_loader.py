"""Discovering plugins: entry points of group ``sbt`` plus the built-ins, each recorded with its status.

Our own loader over :func:`importlib.metadata.entry_points` rather than pluggy's
``load_setuptools_entrypoints``, which stops at the first plugin that fails to import and records only
what it loaded (pluggy#154). Here a broken plugin becomes a ``failed`` record with its error and the rest
load; ``SBT_STRICT_PLUGINS=1`` (or ``strict=True``) makes the first failure fatal instead.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Iterable, Mapping
from enum import StrEnum
from importlib import metadata
from typing import Any

import attrs
import pluggy

from .._markers import PROJECT_NAME
from ..errors import PluginError
from ..hookspecs import BATCH_FORMS, CONTRACT, INTERFACES, SPEC_MODULES, Interface, interface_of
from ..job_kind import JobKind
from ..provider import Provider

ENTRY_POINT_GROUP = "sbt"
STRICT_ENV = "SBT_STRICT_PLUGINS"
LOAD_ENV = "SBT_LOAD_PLUGINS"

#: Plugins shipped inside sbt-core, loaded through the same path as installed ones (llm's DEFAULT_PLUGINS).
BUILTIN_PLUGINS: dict[str, str] = {"local": "sbt_core.auth_local:LocalAuth",
                                   "script": "sbt_core.app_plane.script:ScriptJob"}


class Status(StrEnum):
    LOADED = "loaded"
    FAILED = "failed"
    DISABLED = "disabled"


class Kind(StrEnum):
    PROVIDER = "provider"  # a class implementing interface hooks, selectable in config
    EXTENSION = "extension"  # observers and wrappers: loaded unless disabled
    JOB = "job"  # a JobKind subclass: how the application plane runs a [[jobs]] table of its kind


@attrs.frozen
class PluginRecord:
    """What ``sbt plugins list`` shows of one plugin."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    status: Status
    kind: Kind | None = None
    interfaces: tuple[Interface, ...] = ()
    hooks: tuple[str, ...] = ()
    error: str | None = None
    builtin: bool = False
    obj: Any = attrs.field(default=None, eq=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Stable JSON for ``sbt plugins list --json``."""
        return {"name": self.name, "value": self.value, "distribution": self.distribution, "version": self.version,
                "status": self.status.value, "kind": self.kind.value if self.kind else None,
                "interfaces": list(self.interfaces), "hooks": list(self.hooks), "error": self.error,
                "builtin": self.builtin}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _allow_list(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def new_plugin_manager() -> pluggy.PluginManager:
    """A PluginManager of project ``sbt`` with every hookspec added."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    for module in SPEC_MODULES:
        pm.add_hookspecs(module)
    return pm


@attrs.define
class PluginCatalog:
    """Every plugin discovered, loaded or not, and a PluginManager holding the loaded ones as loaded
    (classes, not instances): enough to list hooks and register CLI commands without constructing anything.
    """

    records: dict[str, PluginRecord]
    pm: pluggy.PluginManager

    def get(self, name: str) -> PluginRecord | None:
        return self.records.get(name)

    def loaded(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.status is Status.LOADED]

    def providers_of(self, interface: Interface) -> list[str]:
        """Names of loaded providers implementing ``interface``, sorted."""
        return sorted(r.name for r in self.loaded() if r.kind is Kind.PROVIDER and interface in r.interfaces)

    def extensions(self) -> list[PluginRecord]:
        return [r for r in self.loaded() if r.kind is Kind.EXTENSION]

    def job_kinds(self) -> list[str]:
        """Names of loaded job kinds (``[[jobs]] kind``), sorted."""
        return sorted(r.name for r in self.loaded() if r.kind is Kind.JOB)

    def check_pending(self) -> None:
        """pluggy's check: every loaded hookimpl has a spec (unknown hooks were already refused per plugin)."""
        self.pm.check_pending()


def _describe_impls(pm: pluggy.PluginManager, plugin: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(hook names, hook names that are neither wrappers nor lifecycle) implemented by ``plugin``."""
    names: list[str] = []
    interface_impls: list[str] = []
    for caller in pm.get_hookcallers(plugin) or []:
        names.append(caller.name)
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper) and caller.name in CONTRACT:
                interface_impls.append(caller.name)
    return tuple(sorted(names)), tuple(sorted(set(interface_impls)))


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    unknown = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is None and not all(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin):
            close = difflib.get_close_matches(caller.name, [*CONTRACT, *BATCH_FORMS, "sbt_startup", "sbt_shutdown",
                                                            "sbt_register_commands", "sbt_register_routes"], n=1)
            unknown.append(caller.name + (f" (did you mean {close[0]}?)" if close else ""))
    return unknown


#: Lifecycle hooks pluggy calls on a plugin class itself (no instance exists yet: the CLI is built before
#: any provider is constructed); the others are called on the constructed instance.
_CLASS_LEVEL_HOOKS = ("sbt_register_commands",)


def _uncallable_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Class-level hooks of a plugin class that pluggy cannot call as declared, each with its fix.

    pluggy drops a leading ``self`` from the arguments it passes, so a plain method called on the class
    lacks it and fails only when the hook is called (a ``TypeError`` at CLI build)."""
    if not inspect.isclass(plugin):
        return []
    problems = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.name not in _CLASS_LEVEL_HOOKS:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            try:
                inspect.signature(impl.function).bind(**dict.fromkeys(impl.argnames))
            except TypeError:
                args = ", ".join(impl.argnames)
                problems.append(f"{caller.name} is called on the class {plugin.__qualname__}, not on an instance: "
                                f"declare it as a @staticmethod taking ({args}), without self")
    return problems


@attrs.frozen
class _Candidate:
    name: str
    value: str
    distribution: str | None
    version: str | None
    builtin: bool
    obj: Any = None  # given directly (tests); else imported from ``value``


def _entry_point_candidates() -> Iterable[_Candidate]:
    seen: set[tuple[str | None, str]] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else None
        # A dist-info seen twice (lib64 -> lib symlink) must not register twice (instawow#188).
        if (dist, ep.name) in seen:
            continue
        seen.add((dist, ep.name))
        yield _Candidate(ep.name, ep.value, dist, ep.dist.version if ep.dist else None, builtin=False)


def _core_version() -> str | None:
    try:
        return metadata.version("sbt-core")
    except metadata.PackageNotFoundError:
        return None


def discover(*, entry_points: bool = True, builtins: bool = True, extra: Mapping[str, Any] | None = None,
             disabled: Iterable[str] = (), load_only: Iterable[str] | None = None,
             strict: bool | None = None) -> PluginCatalog:
    """Find, import and check every plugin; never raises for a broken plugin unless strict.

    :param entry_points: read installed entry points of group ``sbt``.
    :param builtins: include :data:`BUILTIN_PLUGINS`.
    :param extra: ``{name: class or module}`` registered without installing (tests, inline plugins).
    :param disabled: names never loaded (``[plugins] disabled``); recorded as ``disabled``.
    :param load_only: allow list of installed plugins (``SBT_LOAD_PLUGINS``, comma-separated; ``""`` = none).
        Built-ins and ``extra`` are not filtered by it.
    :param strict: raise :class:`PluginError` on the first failure (default: ``SBT_STRICT_PLUGINS``).
    """
    strict = _truthy(os.environ.get(STRICT_ENV)) if strict is None else strict
    allow = _allow_list(os.environ.get(LOAD_ENV)) if load_only is None else set(load_only)
    blocked = set(disabled)
    candidates: list[_Candidate] = []
    if builtins:
        candidates += [_Candidate(n, v, "sbt-core", _core_version(), builtin=True) for n, v in BUILTIN_PLUGINS.items()]
    if entry_points:
        candidates += [c for c in _entry_point_candidates() if allow is None or c.name in allow]
    for name, obj in (extra or {}).items():
        module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
        candidates.append(_Candidate(name, f"{module}:{getattr(obj, '__qualname__', '')}".rstrip(":"), None, None,
                                     builtin=False, obj=obj))

    pm = new_plugin_manager()
    records: dict[str, PluginRecord] = {}
    for cand in candidates:
        if cand.name in blocked:
            records[cand.name] = PluginRecord(cand.name, cand.value, cand.distribution, cand.version,
                                              Status.DISABLED, builtin=cand.builtin)
            continue
        if cand.name in records and records[cand.name].status is Status.LOADED:
            # Later sources (extra) override earlier ones of the same name, as a test replacing a built-in expects.
            pm.unregister(name=cand.name)
        try:
            record = _load_one(pm, cand)
        except Exception as exc:  # any import or validation error: record it, keep going
            if strict:
                raise PluginError(cand.name, _error_text(exc)) from exc
            record = PluginRecord(cand.name, cand.value, cand.distribution, cand.version, Status.FAILED,
                                  error=_error_text(exc), builtin=cand.builtin)
        records[cand.name] = record
    return PluginCatalog(records, pm)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, PluginError):
        return exc.message.split(": ", 1)[-1]
    return f"{type(exc).__name__}: {exc}"


def _load_one(pm: pluggy.PluginManager, cand: _Candidate) -> PluginRecord:
    obj = cand.obj if cand.obj is not None else metadata.EntryPoint(cand.name, cand.value, ENTRY_POINT_GROUP).load()
    try:
        pm.register(obj, name=cand.name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(cand.name, str(exc)) from None
    except ValueError as exc:  # already registered under another name
        raise PluginError(cand.name, str(exc)) from None
    unknown = _unknown_hooks(pm, obj)
    if unknown:
        pm.unregister(obj)
        raise PluginError(cand.name, f"implements unknown hook(s): {', '.join(unknown)}")
    uncallable = _uncallable_hooks(pm, obj)
    if uncallable:
        pm.unregister(obj)
        raise PluginError(cand.name, "; ".join(uncallable))
    hooks, interface_hooks = _describe_impls(pm, obj)
    if inspect.isclass(obj) and issubclass(obj, JobKind):
        if interface_hooks:
            pm.unregister(obj)
            raise PluginError(cand.name, "a job kind cannot implement interface hooks (make them two plugins)")
        return PluginRecord(cand.name, cand.value, cand.distribution, cand.version, Status.LOADED, kind=Kind.JOB,
                            hooks=hooks, builtin=cand.builtin, obj=obj)
    interfaces = tuple(i for i in INTERFACES if any(interface_of(h) == i for h in interface_hooks))
    if interface_hooks or (inspect.isclass(obj) and issubclass(obj, Provider)):
        if not inspect.isclass(obj):
            pm.unregister(obj)
            raise PluginError(cand.name, "implements interface hooks but is not a provider class "
                                         "(a provider is a class constructed with its settings and context)")
        kind = Kind.PROVIDER
    else:
        kind = Kind.EXTENSION
    return PluginRecord(cand.name, cand.value, cand.distribution, cand.version, Status.LOADED, kind=kind,
                        interfaces=interfaces, hooks=hooks, builtin=cand.builtin, obj=obj)
