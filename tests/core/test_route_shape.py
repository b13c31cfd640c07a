"""A route hook's request and answer are declared with it (``@contract(..., route=RouteShape(...))``) and
checked against its signature when the hookspec module is imported, so a mistake never reaches a request."""

from __future__ import annotations

import pytest

from sbt_core.hookspecs import CONTRACT, RouteShape
from sbt_core.hookspecs._contract import contract
from sbt_core.models import Meter, MeterUpdate, Page
from sbt_core.triggers import EventTrigger, RouteTrigger

WIDGET = RouteTrigger("PUT", "/widgets/{widgetId}")


def widget_update(widget_id: str, update: MeterUpdate) -> Meter:
    """A hook of no interface, declared only in this test."""
    raise NotImplementedError


def widgets(limit: int, next_token: str | None) -> Page[Meter]:
    """A paginated one."""
    raise NotImplementedError


@pytest.mark.parametrize("hook", sorted(CONTRACT))
def test_a_hook_has_a_route_shape_exactly_when_its_default_trigger_is_a_route(hook: str) -> None:
    row = CONTRACT[hook]
    assert (row.route is not None) == isinstance(row.default_trigger, RouteTrigger)


def test_binding_fills_path_parameters_by_snake_case_name_and_reads_the_models_from_the_signature() -> None:
    shape = RouteShape(body="update").bind(widget_update, WIDGET)
    assert shape.path == {"widgetId": "widget_id"}
    assert shape.body_model is MeterUpdate and shape.returns is Meter and shape.query_model is None
    paged = RouteShape(page=60, answer="page").bind(widgets, RouteTrigger("GET", "/widgets"))
    assert [(q.name, dict(q.bounds)) for q in paged.query_parameters][0] == ("limit", {"minimum": 1, "maximum": 60})


@pytest.mark.parametrize(("shape", "trigger", "error"), [
    (RouteShape(), WIDGET,
     r"its route fills the arguments \['widget_id'\], but the hook takes \['widget_id', 'update'\]"),
    (RouteShape(body="update", query="update"), WIDGET, "its route fills the arguments"),
    (RouteShape(body="update"), RouteTrigger("PUT", "/widgets/{id}"), "its route fills the arguments"),
    (RouteShape(body="update", answer="page"), WIDGET, "answer 'page' is for a hook returning Page"),
    (RouteShape(body="update", answer="message"), WIDGET, "answer 'message' needs its message text"),
    (RouteShape(body="update", message="Widget updated"), WIDGET, "answer 'message' needs its message text"),
    (RouteShape(body="update", answer="message", message="x", fields=("name",)), WIDGET, "fields pick from"),
])
def test_a_shape_that_does_not_fit_the_hook_is_refused_naming_it(shape: RouteShape, trigger: RouteTrigger,
                                                                  error: str) -> None:
    with pytest.raises(TypeError, match=f"widget_update: {error}"):
        shape.bind(widget_update, trigger)


def test_a_page_answer_needs_a_page_result() -> None:
    with pytest.raises(TypeError, match="widgets: answer 'page' is for a hook returning Page"):
        RouteShape(page=10).bind(widgets, RouteTrigger("GET", "/widgets"))


@pytest.mark.parametrize(("trigger", "route"), [(WIDGET, None), (EventTrigger("x", "y"), RouteShape(body="update"))])
def test_the_contract_wants_a_shape_exactly_for_a_route_trigger(trigger: object, route: RouteShape | None) -> None:
    with pytest.raises(TypeError, match="widget_update: a hook declares a RouteShape exactly when"):
        contract("metering", "IMetering.widget", required=False, trigger=trigger, route=route)(  # type: ignore[arg-type]
            widget_update)
    assert "widget_update" not in CONTRACT
