"""How a route hook reads its request and writes its answer: the contract's
:class:`~sbt_core.hookspecs.RouteShape` of each route hook, interpreted here for every hook alike.

:func:`hook_route` turns a hook's shape into a :class:`HookRoute`: ``decode`` fills the hook's keyword
arguments from the request (path parameters, query, the body already read under the size limit),
``encode`` puts its result in sbt-aws's envelope, and the rest describes the same for the OpenAPI
document, so docs and behaviour cannot drift. Adding a route hook is its ``@contract`` declaration alone.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import Response

from ... import input_policy
from ...errors import BadRequestError
from ...hookspecs import HookDef, QueryParam, RouteShape
from ...models import PageRequest, WebhookRequest, WebhookResponse, from_json, to_json
from ...models._convert import wire_key
from ..contracts import Schema
from ._json import JSONAnswer

__all__ = ["HookRoute", "hook_route", "json_body", "json_response", "page_body", "page_request"]

@attrs.frozen
class HookRoute:
    """Request decoding and response encoding of one route hook, as :func:`hook_route` builds them.

    ``decode(request, body)`` -> the hook's keyword arguments; ``encode(result)`` -> the Response.
    ``status``, ``body_model``, ``raw_body`` and ``query`` describe the same for OpenAPI, and ``response``
    is the JSON schema of the success body, built with the registry passed in.
    """

    decode: Callable[[Request, bytes], dict[str, Any]]
    encode: Callable[[Any], Response]
    status: int = 200
    body_model: type | None = None
    raw_body: bool = False
    query: tuple[QueryParam, ...] = ()
    response: Schema = lambda reg: {"type": "object"}


def json_response(data: Any, status: int = 200) -> JSONAnswer:
    """A JSON response of already JSON-ready ``data`` (stored values JSON cannot carry answered replaced)."""
    return JSONAnswer(data, status)


def json_body(body: bytes, model: type | None = None) -> Any:
    """Parse a JSON request body, then (``model`` given) structure it with :func:`from_json`.

    :raises BadRequestError: an empty or malformed body (the message says where), a value the input policy
        refuses (:mod:`sbt_core.input_policy`), or invalid fields.
    """
    if not body.strip():
        what = f" ({model.__name__})" if model else ""
        raise BadRequestError(f"the request body must be a JSON object{what}")
    data = input_policy.loads(body)
    return data if model is None else from_json(model, data)


def path_param(request: Request, name: str) -> str:
    """The path parameter ``name``; when a config override renamed it, the route's only parameter."""
    params = request.path_params
    if name in params:
        return str(params[name])
    if len(params) == 1:
        return str(next(iter(params.values())))
    raise BadRequestError(f"the route has no {{{name}}} path parameter")


def page_request(request: Request, max_limit: int | None = None) -> PageRequest:
    """``limit`` (default 10) and ``next_token`` from the query, validated.

    :raises BadRequestError: a limit that is not an integer in range.
    """
    raw = {k: request.query_params[k] for k in ("limit", "next_token") if k in request.query_params}
    page = from_json(PageRequest, raw)
    if max_limit is not None and page.limit > max_limit:
        raise BadRequestError(f"limit: must be between 1 and {max_limit}, got {page.limit}")
    return page


def page_body(items: list[Any], next_token: str | None) -> dict[str, Any]:
    """sbt-aws's paginated envelope: ``{"data": [...items], "next_token": ...}``, the token only when
    there is a next page. ``items`` are JSON-ready already."""
    body: dict[str, Any] = {"data": items}
    if next_token is not None:
        body["next_token"] = next_token
    return body


def _query_dict(request: Request) -> dict[str, Any]:
    """The query as a dict; a repeated key (``groupBy=a&groupBy=b``) becomes a list."""
    out: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


def _webhook_request(request: Request, body: bytes) -> WebhookRequest:
    # The raw bytes, for the provider's signature check; {path} names the provider (/billing/stripe).
    return WebhookRequest(path=path_param(request, "path") if request.path_params
                          else request.url.path.rsplit("/", 1)[-1],
                          body=body, headers={k.lower(): v for k, v in request.headers.items()},
                          query=dict(request.query_params))


def _body_parser(model: Any) -> Callable[[bytes], Any]:
    # A record with its own from_body (MeterUpdate names the fields that may not change) parses the JSON itself.
    from_body = getattr(model, "from_body", None)
    if from_body is not None:
        return lambda body: from_body(json_body(body))
    return lambda body: json_body(body, model)


def _decoder(shape: RouteShape) -> Callable[[Request, bytes], dict[str, Any]]:
    path = tuple(shape.path.items())
    page, query, query_model, raw = shape.page, shape.query, shape.query_model, shape.raw
    body_arg = shape.body
    parse = _body_parser(shape.body_model) if body_arg else None

    def decode(request: Request, body: bytes) -> dict[str, Any]:
        kwargs: dict[str, Any] = {arg: path_param(request, param) for param, arg in path}
        if page is not None:
            kwargs.update(attrs.asdict(page_request(request, page)))
        if query is not None:
            kwargs[query] = from_json(query_model, _query_dict(request))
        if body_arg is not None and parse is not None:
            kwargs[body_arg] = parse(body)
        if raw is not None:
            kwargs[raw] = _webhook_request(request, body)
        return kwargs

    return decode


def _webhook(result: WebhookResponse | None) -> Response:
    result = result or WebhookResponse()
    return json_response(result.body, result.status)


def _encoder(shape: RouteShape) -> Callable[[Any], Response]:
    status = shape.status
    if shape.answer == "page":
        return lambda page: json_response(page_body(to_json(list(page.items)), page.next_token), status)
    if shape.answer == "message":
        text = shape.message
        return lambda _result: json_response({"message": text}, status)
    if shape.answer == "webhook":
        return _webhook
    if shape.fields:
        keys = _wire_keys(shape.returns, shape.fields)
        return lambda result: json_response(
            {"data": {key: to_json(getattr(result, name)) for name, key in keys}}, status)
    return lambda result: json_response({"data": to_json(result)}, status)


def _wire_keys(record: type, names: tuple[str, ...]) -> list[tuple[str, str]]:
    fields = attrs.fields_dict(record)
    return [(name, wire_key(fields[name])) for name in names]


def _message_schema(reg: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}


def _webhook_schema(reg: Any) -> dict[str, Any]:
    return {"type": "object", "description": "the provider's answer (default {\"received\": true})"}


def _response_schema(shape: RouteShape) -> Schema:
    if shape.answer == "message":
        return _message_schema
    if shape.answer == "webhook":
        return _webhook_schema
    returns = shape.returns
    if shape.answer == "page":
        (item,) = typing.get_args(returns)

        def page(reg: Any) -> dict[str, Any]:
            return {"type": "object", "properties": {
                "data": {"type": "array", "items": reg.describe(item)},
                "next_token": {"type": "string", "description": "token of the next page; absent on the last"}},
                "required": ["data"]}
        return page

    def data(reg: Any) -> dict[str, Any]:
        described = reg.describe_fields(returns, shape.fields) if shape.fields else reg.describe(returns)
        return {"type": "object", "properties": {"data": described}, "required": ["data"]}
    return data


def hook_route(row: HookDef) -> HookRoute:
    """The decoding, encoding and OpenAPI description of the route hook ``row``, from its contract's
    :class:`~sbt_core.hookspecs.RouteShape`.

    :raises ValueError: ``row`` is not a route hook (it declares no shape).
    """
    shape = row.route
    if shape is None:
        raise ValueError(f"hook {row.name} declares no route shape")
    return HookRoute(decode=_decoder(shape), encode=_encoder(shape), status=shape.status,
                     body_model=shape.body_model, raw_body=shape.raw is not None, query=shape.query_parameters,
                     response=_response_schema(shape))
