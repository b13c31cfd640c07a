"""How a route hook reads its HTTP request and writes its answer, declared as data beside the hookspec.

``@contract(..., trigger=RouteTrigger(...), route=RouteShape(...))`` says which hook argument each part of
the request fills and which of sbt-aws's envelopes the result goes in (sbt-aws
``resources/functions/user-management/index.py``, ``src/control-plane/metering/metering-provider.ts``). The
HTTP adapter (:mod:`sbt_core.runtime.http.hooks`) interprets it for every route hook alike, and the OpenAPI
document and the hook reference (``docs/hooks/``) are written from it, so behaviour and documentation are
one declaration. Nothing here knows HTTP libraries: the arrow points from the runtime to the contract.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from .. import input_policy
from ..models import MAX_PAGE_LIMIT, Page
from ..triggers import RouteTrigger

__all__ = ["Answer", "QueryParam", "RouteShape", "page_query"]


@attrs.frozen
class QueryParam:
    """A query parameter, for the OpenAPI document: name, JSON type, description."""

    name: str
    type: str = "string"
    description: str = ""
    array: bool = False
    #: More JSON Schema keywords of the value (``minimum``, ``maximum``, ``format``, ``enum``, ``minLength``):
    #: the bounds the endpoint enforces, so a client reading the document is not refused by surprise. A value
    #: may be a function of no argument, called when the document is built (a list read from the system).
    bounds: Mapping[str, Any] = attrs.field(factory=dict)
    required: bool = False


def page_query(max_limit: int = MAX_PAGE_LIMIT, default: int = 10) -> tuple[QueryParam, ...]:
    """``limit`` (1 to ``max_limit``) and ``next_token``, as a paginated route enforces them."""
    return (QueryParam("limit", "integer", f"page size, 1-{max_limit} (default {default})",
                       bounds={"minimum": 1, "maximum": max_limit}),
            # An empty next_token reads the first page, as none does.
            QueryParam("next_token", "string", "next_token of the previous page",
                       bounds={"pattern": input_policy.NAME_PATTERN}))


#: The envelope of a route hook's answer (see :class:`RouteShape`).
Answer = Literal["data", "page", "message", "webhook"]

_PATH_PARAM = re.compile(r"\{([^}]+)\}")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@attrs.frozen
class RouteShape:
    """A route hook's request decoding and response encoding.

    The request fills the hook's arguments: each ``{param}`` of the default route's path the argument of
    that name in snake case (``{userId}`` -> ``user_id``); ``body`` names the argument given the JSON body,
    structured as the record it is annotated with (a record's ``from_body`` classmethod, when it has one,
    parses it instead); ``query`` the argument given the query string, structured likewise, whose parameters
    ``query_params`` lists for OpenAPI; ``page = N`` fills ``limit`` (1 to N, default 10) and ``next_token``
    from the query; ``raw`` names the argument given the request unparsed (a
    :class:`~sbt_core.models.WebhookRequest`: body bytes, lower-cased headers, query, the ``{path}`` segment),
    for a provider that checks a signature over the bytes. Every argument is filled exactly once.

    The result becomes the answer, with ``status``: ``data`` is ``{"data": result}`` (``fields``: only those
    fields of the result record); ``page`` ``{"data": [items], "next_token": ...}`` of a
    :class:`~sbt_core.models.Page`, the token only when there is a next page; ``message``
    ``{"message": message}``; ``webhook`` the :class:`~sbt_core.models.WebhookResponse`'s status and body
    (None: 200 ``{"received": true}``). Errors are ``{"message": ...}`` with the error's status, for every route.
    """

    answer: Answer = "data"
    status: int = 200
    message: str | None = None
    fields: tuple[str, ...] = ()
    body: str | None = None
    query: str | None = None
    query_params: tuple[QueryParam, ...] = ()
    page: int | None = None
    raw: str | None = None
    #: Filled by :meth:`bind` (``@contract``): ``{path parameter: argument}`` and the hookspec's annotations
    #: by argument name (the return's as ``"return"``).
    path: Mapping[str, str] = attrs.field(factory=dict)
    types: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def body_model(self) -> Any:
        """The record the JSON body is structured as, or None when the route reads no JSON body."""
        return self.types[self.body] if self.body else None

    @property
    def query_model(self) -> Any:
        """The record the query string is structured as, or None."""
        return self.types[self.query] if self.query else None

    @property
    def returns(self) -> Any:
        """The hook's return annotation (``Page[User]``, ``Meter | None``, ...)."""
        return self.types.get("return")

    @property
    def query_parameters(self) -> tuple[QueryParam, ...]:
        """What OpenAPI lists of the query: ``query_params``, else the page's ``limit`` and ``next_token``."""
        if self.query_params or self.page is None:
            return self.query_params
        return page_query(self.page)

    def bind(self, hook: Callable[..., Any], trigger: RouteTrigger) -> RouteShape:
        """This shape completed from ``hook``'s signature and its default ``trigger``'s path parameters.

        :raises TypeError: the request does not fill each of the hook's arguments exactly once, or the answer
            does not fit the hook's return annotation (an author's mistake, reported at import).
        """
        name = getattr(hook, "__name__", repr(hook))
        types = typing.get_type_hints(hook)
        path = {} if self.raw else {p: _snake(p) for p in _PATH_PARAM.findall(trigger.path)}
        filled = [*path.values(), *(("limit", "next_token") if self.page is not None else ()),
                  *(a for a in (self.body, self.query, self.raw) if a)]
        wanted = list(inspect.signature(hook).parameters)
        if sorted(filled) != sorted(wanted):
            raise TypeError(f"{name}: its route fills the arguments {filled}, but the hook takes {wanted}")
        returns: Any = types.get("return")
        if (self.answer == "page") != (typing.get_origin(returns) is Page):
            raise TypeError(f"{name}: answer 'page' is for a hook returning Page[...], and only for it")
        if (self.answer == "message") != (self.message is not None):
            raise TypeError(f"{name}: answer 'message' needs its message text, and only it has one")
        if self.fields and (self.answer != "data" or not attrs.has(returns)):
            raise TypeError(f"{name}: fields pick from a record answered as 'data'")
        return attrs.evolve(self, path=path, types=types)
