"""The HTTP adapter serves a route hook from its contract declaration alone: a hook the adapter has never
heard of is decoded and answered from its :class:`RouteShape`, and OpenAPI is told the same."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from sbt_core.hookspecs import HookDef, RouteShape
from sbt_core.models import Meter, MeterUpdate, Page, User, to_json
from sbt_core.runtime.http.hooks import hook_route
from sbt_core.runtime.http.schema import SchemaRegistry
from sbt_core.triggers import RouteTrigger


def widget_update(widget_id: str, update: MeterUpdate) -> Meter:
    """Declared only here: no HTTP code names it."""
    raise NotImplementedError


def widget_owners(widget_id: str, limit: int, next_token: str | None) -> Page[User]:
    """Declared only here."""
    raise NotImplementedError


def _route(func: Any, trigger: RouteTrigger, shape: RouteShape) -> Any:
    row = HookDef(func.__name__, "metering", "IMetering.widget", False, trigger, route=shape.bind(func, trigger))
    return hook_route(row)


def _request(path: str, path_params: dict[str, str], query: bytes = b"") -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "path_params": path_params,
                    "query_string": query, "headers": []})


def test_a_new_hook_is_decoded_and_answered_from_its_declaration() -> None:
    trigger = RouteTrigger("PUT", "/widgets/{widgetId}")
    route = _route(widget_update, trigger, RouteShape(body="update", answer="message", message="Widget updated"))
    kwargs = route.decode(_request("/widgets/w1", {"widgetId": "w1"}), b'{"name": "Widget"}')
    assert kwargs == {"widget_id": "w1", "update": MeterUpdate(name="Widget")}
    answer = route.encode(None)
    assert (answer.status_code, json.loads(answer.body)) == (200, {"message": "Widget updated"})
    reg = SchemaRegistry()
    assert route.body_model is MeterUpdate and route.query == () and not route.raw_body
    assert route.response(reg)["properties"] == {"message": {"type": "string"}}


def test_a_paginated_hook_reads_limit_and_next_token_and_answers_the_page_envelope() -> None:
    trigger = RouteTrigger("GET", "/widgets/{widgetId}/owners")
    route = _route(widget_owners, trigger, RouteShape(page=5, answer="page"))
    kwargs = route.decode(_request("/widgets/w1/owners", {"widgetId": "w1"}, b"limit=5&next_token=t"), b"")
    assert kwargs == {"widget_id": "w1", "limit": 5, "next_token": "t"}
    answer = route.encode(Page([User("ann")], next_token="n2"))
    assert json.loads(answer.body) == {"data": [to_json(User("ann"))], "next_token": "n2"}
    assert [q.name for q in route.query] == ["limit", "next_token"] and route.query[0].bounds["maximum"] == 5
    data = route.response(SchemaRegistry())["properties"]["data"]
    assert data == {"type": "array", "items": {"$ref": "#/components/schemas/User"}}


def test_a_data_answer_of_chosen_fields_is_documented_as_those_fields() -> None:
    def widget_create(update: MeterUpdate) -> User:
        raise NotImplementedError

    route = _route(widget_create, RouteTrigger("POST", "/widgets"),
                   RouteShape(body="update", status=201, fields=("user_name",)))
    answer = route.encode(User("ann", email="a@example.com"))
    assert (answer.status_code, json.loads(answer.body)) == (201, {"data": {"userName": "ann"}})
    data = route.response(SchemaRegistry())["properties"]["data"]
    assert data == {"type": "object", "properties": {"userName": {"type": "string"}}, "required": ["userName"]}
