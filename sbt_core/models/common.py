"""Records shared by every interface: pages, secrets, the provider-side clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import attrs

from ._convert import WIRE_KEY

T = TypeVar("T")

MAX_PAGE_LIMIT = 1000


def utcnow() -> datetime:
    """Aware UTC now; the one clock the core reads (tests patch it here)."""
    return datetime.now(UTC)


def _check_limit(_: object, __: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= MAX_PAGE_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_LIMIT}, got {value}")


@attrs.frozen
class PageRequest:
    """``limit`` + ``next_token`` of a paginated route (sbt-aws: ``?limit=10&next_token=...``)."""

    limit: int = attrs.field(default=10, validator=_check_limit)
    next_token: str | None = attrs.field(default=None, metadata={WIRE_KEY: "next_token"})


@attrs.frozen
class Page(Generic[T]):
    """One page of results: ``items`` and the opaque ``next_token`` of the next page (None on the last).

    Over HTTP it becomes ``{"data": [...items], "next_token": "..."}`` as sbt-aws answers.
    """

    items: list[T] = attrs.field(factory=list)
    next_token: str | None = attrs.field(default=None, metadata={WIRE_KEY: "next_token"})


@attrs.frozen(repr=False)
class Secret:
    """A secret value: resolved from ``{ env = "NAME" }`` / ``{ file = "path" }`` and never printed.

    ``str()``/``repr()`` show ``**********``; call :meth:`get_secret_value` where the value is needed.
    ``reference`` says where it came from (``env:NAME``), which is safe to show.
    """

    _value: str = attrs.field(alias="value")
    reference: str | None = None

    def get_secret_value(self) -> str:
        """The plain secret."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__
