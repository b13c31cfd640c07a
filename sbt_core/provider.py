"""What a provider is given: its validated settings and a :class:`ProviderContext`.

A provider is a class named by its entry point (``[project.entry-points.sbt] stripe =
"sbt_stripe_billing:StripeBilling"``). It declares ``settings_class`` (an attrs class, validated from its
``[providers.<interface>]`` table) and is constructed as ``Provider(settings, context)``; its methods
marked with :data:`sbt_core.hookimpl` are the hook implementations.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs

from .hookspecs import Interface
from .models import Event

__all__ = ["NoSettings", "Provider", "ProviderContext", "SettingField", "settings_fields"]

#: Where a provider's events go (the bus's ``publish``); what it returns is not used.
EventSink = Callable[[Event], object]


@attrs.frozen
class NoSettings:
    """Settings of a provider that takes none: any key in its table is an error."""


@attrs.define
class ProviderContext:
    """Everything a provider may reach of the control plane.

    ``state_dir`` is the control plane's state directory (``.sbt/`` by default); a provider keeps its
    files under ``state_dir / <type name>``. ``publish`` puts an event on the bus (at-least-once to every
    binding); before a bus is attached it raises, so an event is never dropped silently.
    """

    type_name: str
    interface: Interface | None
    state_dir: Path
    logger: logging.Logger = attrs.field()
    _sink: EventSink | None = attrs.field(default=None, alias="sink")

    @logger.default
    def _logger(self) -> logging.Logger:
        return logging.getLogger(f"sbt.provider.{self.type_name}")

    @property
    def data_dir(self) -> Path:
        """``state_dir / type_name``, created on first use."""
        path = self.state_dir / self.type_name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def attach(self, sink: EventSink) -> None:
        """Route :meth:`publish` to ``sink`` (the runtime attaches the bus)."""
        self._sink = sink

    def put_event(self, event: Event) -> Event:
        """Publish a ready envelope; returns it."""
        if self._sink is None:
            raise RuntimeError(f"provider {self.type_name!r} published {event.detail_type!r} "
                               "but no event bus is attached")
        self._sink(event)
        return event

    def publish(self, detail_type: str, detail: dict[str, Any], *, source: str | None = None,
                event_id: str | None = None) -> Event:
        """Build and publish an event (source defaults to SBT's for the detail type). Pass ``event_id``
        derived from the cause (e.g. a webhook event id) so a redelivery is deduplicated downstream."""
        event = Event.create(detail_type, detail, source=source)
        if event_id is not None:
            event = attrs.evolve(event, id=event_id)
        return self.put_event(event)


class Provider:
    """Optional base class: stores ``settings`` and ``context``. Subclasses set ``settings_class``."""

    settings_class: ClassVar[type] = NoSettings

    def __init__(self, settings: Any, context: ProviderContext) -> None:
        self.settings = settings
        self.context = context


@attrs.frozen
class SettingField:
    """One setting of a provider's ``settings_class`` as ``sbt plugins info`` shows it: the TOML key, its
    type as written in the class, its default (``"required"`` when it has none) and its meaning."""

    name: str
    type: str
    default: str
    meaning: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "default": self.default, "meaning": self.meaning}


#: A docstring bullet naming settings: ``- ``a``, ``b`` (unit): text`` (continued on indented lines).
_BULLET = re.compile(r"^\s*- (?P<head>(?:``\w+``[ ,+and]*)+)(?P<note>\([^)]*\))?:\s*(?P<text>.*)$")


def _docstring_meanings(cls: type) -> dict[str, str]:
    meanings: dict[str, str] = {}
    names: list[str] = []
    parts: list[str] = []

    def flush() -> None:
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", " ".join(" ".join(parts).split())).replace("``", "")
        for name in names:
            meanings.setdefault(name, text)

    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        match = _BULLET.match(line)
        if match:
            flush()
            names = re.findall(r"``(\w+)``", match["head"])
            parts = [f"{match['note']}: " if match["note"] else "", match["text"]]
        elif names and line.startswith("  ") and line.strip():
            parts.append(line.strip())
        else:
            flush()
            names, parts = [], []
    flush()
    return meanings


def _type_name(annotation: Any) -> str:
    if annotation is None:
        return ""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("sbt_core.models.common.", "")


def settings_fields(settings_class: type) -> list[SettingField]:
    """The fields of an attrs ``settings_class`` in declaration order: name, type, default, and meaning from
    the field's ``metadata["help"]``, else the class docstring's bullet naming it (``- ``name``: ...``).

    :raises TypeError: ``settings_class`` is not an attrs class.
    """
    if not attrs.has(settings_class):
        raise TypeError(f"{settings_class.__qualname__} is not an attrs class")
    meanings = _docstring_meanings(settings_class)
    out = []
    for field in attrs.fields(settings_class):
        if field.default is attrs.NOTHING:
            default = "required"
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            default = repr(field.default.factory()) if not field.default.takes_self else "(computed)"
        else:
            default = repr(field.default)
        meaning = str(field.metadata.get("help") or meanings.get(field.name, ""))
        out.append(SettingField(field.alias or field.name, _type_name(field.type), default, meaning))
    return out
