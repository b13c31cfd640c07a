"""How each route-triggered hook reads its request and writes its answer (sbt-aws envelopes).

One :class:`HookRoute` per hook in the contract whose default trigger is a route: ``decode`` turns the
request (path parameters, query, the body already read under the size limit) into the hook's keyword
arguments, ``encode`` turns its return value into the response sbt-aws gives (sbt-aws
``resources/functions/user-management/index.py``, ``src/control-plane/metering/metering-provider.ts``):
``{"data": ...}`` (+ ``next_token``), 201 for creations, ``{"message": ...}`` for user updates and
deletions. The OpenAPI document is built from the same rows, so docs and behaviour
cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import Response

from ... import input_policy
from ...errors import BadRequestError
from ...metering import MAX_WINDOWS
from ...models import (
    MAX_PAGE_LIMIT,
    CancelResult,
    CancelUsageRequest,
    CreateUserRequest,
    Meter,
    MeterCreate,
    MeterUpdate,
    Page,
    PageRequest,
    UpdateUserRequest,
    UsageQuery,
    UsageRow,
    User,
    WebhookRequest,
    WebhookResponse,
    WindowSize,
    from_json,
    to_json,
)
from ...models.metering import GROUP_BY_QUERY_PATTERN, time_zones
from ..contracts import QueryParam
from ._json import JSONAnswer

__all__ = ["HOOK_ROUTES", "HookRoute", "json_body", "json_response", "page_request"]


@attrs.frozen
class HookRoute:
    """Request decoding and response encoding of one route hook.

    ``decode(request, body)`` -> the hook's keyword arguments; ``encode(result)`` -> the Response.
    ``body_model`` / ``query`` / ``response`` describe the same for OpenAPI (``response`` is the JSON
    schema of the success body, built with the registry passed in). ``path_params`` maps the contract's
    path parameter to the hook argument.
    """

    decode: Callable[[Request, bytes], dict[str, Any]]
    encode: Callable[[Any], Response]
    status: int = 200
    body_model: type | None = None
    raw_body: bool = False
    query: tuple[QueryParam, ...] = ()
    response: Callable[[Any], dict[str, Any]] = lambda reg: {"type": "object"}


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


def _query_dict(request: Request) -> dict[str, Any]:
    """The query as a dict; a repeated key (``groupBy=a&groupBy=b``) becomes a list."""
    out: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


# --- envelopes --------------------------------------------------------------------------------------------

def _data(status: int = 200) -> Callable[[Any], Response]:
    return lambda result: json_response({"data": to_json(result)}, status)


def page_body(items: list[Any], next_token: str | None) -> dict[str, Any]:
    """sbt-aws's paginated envelope: ``{"data": [...items], "next_token": ...}``, the token only when
    there is a next page. ``items`` are JSON-ready already."""
    body: dict[str, Any] = {"data": items}
    if next_token is not None:
        body["next_token"] = next_token
    return body


def _page(result: Page[Any]) -> Response:
    return json_response(page_body(to_json(list(result.items)), result.next_token))


def _message(text: str) -> Callable[[Any], Response]:
    return lambda _result: json_response({"message": text})


def _webhook(result: WebhookResponse | None) -> Response:
    result = result or WebhookResponse()
    return json_response(result.body, result.status)


def _data_schema(model: type, *, array: bool = False, nullable: bool = False) -> Callable[[Any], dict[str, Any]]:
    def build(reg: Any) -> dict[str, Any]:
        item = reg.ref(model)
        data: dict[str, Any] = {"type": "array", "items": item} if array else item
        if nullable:
            data = {"anyOf": [data, {"type": "null"}]}
        props: dict[str, Any] = {"data": data}
        if array:
            props["next_token"] = {"type": "string", "description": "token of the next page; absent on the last"}
        return {"type": "object", "properties": props, "required": ["data"]}
    return build


def _message_schema(reg: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}


def _user_name_schema(reg: Any) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {
        "data": {"type": "object", "properties": {"userName": {"type": "string"}}, "required": ["userName"]}}}


def page_query(max_limit: int = MAX_PAGE_LIMIT, default: int = 10) -> tuple[QueryParam, ...]:
    """``limit`` (1 to ``max_limit``) and ``next_token``, as :func:`page_request` enforces them."""
    return (QueryParam("limit", "integer", f"page size, 1-{max_limit} (default {default})",
                       bounds={"minimum": 1, "maximum": max_limit}),
            # An empty next_token reads the first page, as none does.
            QueryParam("next_token", "string", "next_token of the previous page",
                       bounds={"pattern": input_policy.NAME_PATTERN}))


_PAGE_QUERY = page_query()

#: Cognito's ListUsers takes at most 60 per page; the auth hookspec promises providers no more.
MAX_USERS_PAGE = 60


def _usage_query(request: Request) -> UsageQuery:
    return from_json(UsageQuery, _query_dict(request))


HOOK_ROUTES: dict[str, HookRoute] = {
    # IAuth (sbt-aws user-management Lambda, section 4.3)
    "auth_create_user": HookRoute(
        decode=lambda r, b: {"user": json_body(b, CreateUserRequest)},
        encode=lambda user: json_response({"data": {"userName": user.user_name}}, 201),
        status=201, body_model=CreateUserRequest, response=_user_name_schema),
    "auth_fetch_all_users": HookRoute(
        decode=lambda r, b: attrs.asdict(page_request(r, MAX_USERS_PAGE)),
        encode=_page, query=page_query(MAX_USERS_PAGE), response=_data_schema(User, array=True)),
    "auth_fetch_user": HookRoute(
        decode=lambda r, b: {"user_id": path_param(r, "userId")}, encode=_data(), response=_data_schema(User)),
    "auth_update_user": HookRoute(
        decode=lambda r, b: {"user_id": path_param(r, "userId"), "update": json_body(b, UpdateUserRequest)},
        encode=_message("User updated"), body_model=UpdateUserRequest, response=_message_schema),
    "auth_delete_user": HookRoute(
        decode=lambda r, b: {"user_id": path_param(r, "userId")}, encode=_message("User deleted"),
        response=_message_schema),
    "auth_disable_user": HookRoute(
        decode=lambda r, b: {"user_id": path_param(r, "userId")}, encode=_message("User disabled"),
        response=_message_schema),
    "auth_enable_user": HookRoute(
        decode=lambda r, b: {"user_id": path_param(r, "userId")}, encode=_message("User enabled"),
        response=_message_schema),
    # IMetering (shapes from docs/design.md section 4)
    "metering_create_meter": HookRoute(
        decode=lambda r, b: {"meter": json_body(b, MeterCreate)}, encode=_data(201), status=201,
        body_model=MeterCreate, response=_data_schema(Meter)),
    "metering_fetch_meter": HookRoute(
        decode=lambda r, b: {"meter_id": path_param(r, "meterId")}, encode=_data(), response=_data_schema(Meter)),
    "metering_fetch_all_meters": HookRoute(
        decode=lambda r, b: attrs.asdict(page_request(r)), encode=_page, query=_PAGE_QUERY,
        response=_data_schema(Meter, array=True)),
    "metering_update_meter": HookRoute(
        decode=lambda r, b: {"meter_id": path_param(r, "meterId"), "update": MeterUpdate.from_body(json_body(b))},
        encode=_data(), body_model=MeterUpdate, response=_data_schema(Meter)),
    "metering_delete_meter": HookRoute(
        decode=lambda r, b: {"meter_id": path_param(r, "meterId")}, encode=_data(),
        response=_data_schema(Meter, nullable=True)),
    "metering_fetch_usage": HookRoute(
        decode=lambda r, b: {"meter_id": path_param(r, "meterId"), "query": _usage_query(r)},
        encode=_page, response=_data_schema(UsageRow, array=True),
        query=(QueryParam("from", "string", "start of the range, inclusive (RFC 3339), before to",
                          bounds={"format": "date-time"}, required=True),
               QueryParam("to", "string", "end of the range, exclusive (RFC 3339)", bounds={"format": "date-time"},
                          required=True),
               QueryParam("windowSize", "string", f"absent: one row per group; at most {MAX_WINDOWS} windows in "
                                                    "the range", bounds={"enum": [w.value for w in WindowSize]}),
               QueryParam("windowTimeZone", "string", "IANA time zone of the windows (default UTC)",
                          bounds={"enum": time_zones}),
               QueryParam("tenantId", "string", "only this tenant's usage",
                          bounds={"minLength": 1, "pattern": input_policy.NAME_PATTERN}),
               QueryParam("groupBy", "string", "meter dimensions to group by (repeat or comma-separate)", True,
                          bounds={"pattern": GROUP_BY_QUERY_PATTERN}),
               *page_query(default=100))),
    "metering_cancel_usage_events": HookRoute(
        decode=lambda r, b: {"request": json_body(b, CancelUsageRequest)}, encode=_data(),
        body_model=CancelUsageRequest, response=_data_schema(CancelResult)),
    # IBilling webhook: raw bytes for the provider's signature check, no JWT (section 5)
    "billing_webhook": HookRoute(
        decode=lambda r, b: {"request": WebhookRequest(
            path=path_param(r, "path") if r.path_params else r.url.path.rsplit("/", 1)[-1],
            body=b, headers={k.lower(): v for k, v in r.headers.items()}, query=dict(r.query_params))},
        encode=_webhook, raw_body=True,
        response=lambda reg: {"type": "object", "description": "the provider's answer (default {\"received\": true})"}),
}

