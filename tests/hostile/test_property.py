"""A property test: hostile JSON generated from each write route's request schema (the OpenAPI document),
mostly well-typed with hostile leaves — NaN, infinities, 1e999, unpaired surrogates, NUL and other control
characters, huge integers, long strings, deep nesting, wrong types. After each write every read route is
called: no 5xx anywhere, a refused write changes nothing, every read answers 200."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sbt_core.input_policy import MAX_DEPTH

from ._api import Api, broken_reads, raw_json, volatile

#: Examples per backend: enough to reach every route several times, few enough to stay a few seconds.
EXAMPLES = 60

_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
HOSTILE: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), "__BIG__", "__NBIG__", 1e308, -1e308, 2**70, -2**64,
                     "\ud800", "a\udfffb", "\x00", "nul\x00byte", "line\nbreak", "\x7f\x85", "", "   ", "x" * 3000,
                     True, None, [], {}, "0848-09-01T00:00:00Z", "-1e999"]),
    _TEXT,
    st.integers(0, 3).map(lambda extra: json.loads("[" * (MAX_DEPTH + extra) + "]" * (MAX_DEPTH + extra))),
)
ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT, HOSTILE),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)), max_leaves=8)


def from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of ``schema``, below the top level one time in five a hostile one instead."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    if depth > 4:
        return HOSTILE
    if "anyOf" in schema:
        typed = st.one_of([from_schema(s, components, depth + 1) for s in schema["anyOf"]])
    elif "enum" in schema:
        typed = st.sampled_from(schema["enum"])
    else:
        kind = schema.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        typed = st.one_of([_typed(k, schema, components, depth) for k in kinds])
    return typed if depth == 0 else st.one_of(typed, typed, typed, typed, HOSTILE)


def _typed(kind: str | None, schema: dict[str, Any], components: dict[str, Any],
           depth: int) -> st.SearchStrategy[Any]:
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = {k: from_schema(v, components, depth + 1) for k, v in props.items() if k in required}
        optional = {k: from_schema(v, components, depth + 1) for k, v in props.items() if k not in required}
        if not props:
            return st.dictionaries(_TEXT, ANY_JSON, max_size=4)
        return st.fixed_dictionaries(fixed, optional=optional)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components, depth + 1), max_size=3)
    if kind == "string":
        return st.one_of(_TEXT, st.sampled_from(["2026-01-01T00:00:00Z", "calls", "t1", "value"]))
    if kind == "integer":
        return st.integers(-(2**70), 2**70)
    if kind == "number":
        return st.floats()
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return ANY_JSON


def _fill(path: str, ids: dict[str, list[str]], pick: int, hostile_id: str | None) -> str:
    for name in re.findall(r"{(\w+)}", path):
        known = ids.get(name) or ["no-such-id"]
        value = hostile_id if hostile_id is not None else known[pick % len(known)]
        path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
    return path


def _seed(api: Api) -> None:
    api.client.post("/meters", json={"name": "calls", "eventName": "calls", "aggregation": "SUM",
                                     "groupBy": ["region"]})
    api.client.post("/tenant-registrations", json={"tenantData": {"tenantName": "acme"}})
    api.client.post("/users", json={"userName": "alice", "userRole": "admin", "email": "alice@example.com"})
    api.client.post("/events", json=[{"source": "sbt.application.plane", "detail-type": "ingestUsage",
                                      "detail": {"tenantId": "t1", "eventName": "calls",
                                                 "properties": {"value": 2, "region": "eu"}}}])


def test_generated_hostile_writes_get_no_5xx_change_nothing_when_refused_and_break_no_read(api: Api) -> None:
    _seed(api)
    routes = api.writes()
    state = {"reads": api.read_all()}

    def request(route: tuple[str, str, Any]) -> st.SearchStrategy[Any]:
        method, path, schema = route
        body = st.none() if schema is None else from_schema(schema, api.components)
        return st.tuples(st.just(method), st.just(path), body, st.integers(0, 3),
                         st.one_of(st.none(), st.sampled_from(["no-such-id", "a\x00b", "x" * 300, "\u2028"])))

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(routes).flatmap(request))
    def write_then_read(case: tuple[str, str, Any, int, str | None]) -> None:
        method, template, body, pick, hostile_id = case
        path = _fill(template, api.ids(), pick, hostile_id)
        answer = api.send(method, path, None if body is None else raw_json(body))
        what = f"{method} {path} {raw_json(body)[:200]!r}"
        assert answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:300]}"
        assert isinstance(answer.json(), (dict, list)), what
        after = api.read_all()
        assert broken_reads(after) == {}, what
        if 400 <= answer.status_code < 500:
            changed = sorted(p for p in after if after.get(p) != state["reads"].get(p))
            assert volatile(after) == volatile(state["reads"]), f"{what} refused but changed {changed[:5]}"
        state["reads"] = after

    write_then_read()
