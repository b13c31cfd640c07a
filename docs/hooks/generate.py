"""Write the hook reference, one page per interface (``docs/hooks/<interface>.md``) plus the lifecycle
hooks, from the contract (:data:`sbt_core.hookspecs.CONTRACT`) and the hookspecs' signatures and
docstrings; the JSON shapes come from the schema registry that renders the OpenAPI document, and a route
hook's request and answer from its :class:`~sbt_core.hookspecs.RouteShape`, which the HTTP adapter serves.

    python docs/hooks/generate.py          # rewrite the pages
    python docs/hooks/generate.py --check  # exit 1 naming each page that is out of date

``tests/core/test_hook_reference.py`` runs the check.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import typer

from sbt_core.hookspecs import BATCH_FORMS, CONTRACT, INTERFACES, SBT_INTERFACES, SPEC_MODULES, RouteShape, hooks_of
from sbt_core.models import Page
from sbt_core.models._convert import wire_key
from sbt_core.routes import Routes
from sbt_core.runtime.http.schema import SchemaRegistry
from sbt_core.triggers import RouteTrigger

HERE = Path(__file__).resolve().parent
_RAISES = re.compile(r"^\s*:raises (\w+):\s*(.*?)(?=^\s*:|\Z)", re.M | re.S)
_PARAM = re.compile(r"^\s*:(param|return|returns)[^:]*:.*?(?=^\s*:|\Z)", re.M | re.S)
_PARAM_TEXT = re.compile(r"^\s*:param (\w+):\s*(.*?)(?=^\s*:|\Z)", re.M | re.S)
_RETURN_TEXT = re.compile(r"^\s*:returns?:\s*(.*?)(?=^\s*:|\Z)", re.M | re.S)


def _type_name(tp: Any) -> str:
    text = getattr(tp, "__name__", None) if typing.get_origin(tp) is None else None
    return text or str(tp).replace("typing.", "").replace("sbt_core.models.", "").replace("common.", "") \
        .replace("metering.", "").replace("billing.", "").replace("auth.", "").replace("events.", "")


def _schema(reg: SchemaRegistry, tp: Any) -> dict[str, Any]:
    if typing.get_origin(tp) is Page:
        (item,) = typing.get_args(tp)
        return {"type": "object", "description": "one page, oldest first",
                "properties": {"items": {"type": "array", "items": reg.describe(item)},
                               "next_token": {"type": ["string", "null"],
                                              "description": "opaque; null on the last page"}}}
    return reg.describe(tp)


def _shape(schema: dict[str, Any]) -> str:
    """A schema in one line: a link to a record's section, else its compact JSON."""
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return f"[`{name}`](#{name.lower()})"
    if schema.get("type") == "array" and "$ref" in schema.get("items", {}):
        return "array of " + _shape(schema["items"])
    return f"`{json.dumps(schema, separators=(', ', ': '))}`" if schema else "any"


def _trigger(row: Any) -> str:
    trigger = row.default_trigger
    if isinstance(trigger, RouteTrigger):
        scope = f", scope `{trigger.scope}`" if trigger.scope else ""
        return f"`{trigger.method} {trigger.path}`{scope}" + (" (no JWT)" if trigger.authorizer.value == "none" else "")
    return f"`{trigger.describe()}`"


def _http(shape: RouteShape) -> str:
    """What the route's request fills and what it answers, from the contract's :class:`RouteShape` (the
    declaration the HTTP adapter interprets)."""
    fills = [f"`{{{param}}}` → `{arg}`" for param, arg in shape.path.items()]
    if shape.page is not None:
        fills.append(f"`?limit=` (1-{shape.page}, default 10), `?next_token=` → `limit`, `next_token`")
    if shape.query:
        fills.append(f"the query → `{shape.query}`")
    if shape.body:
        fills.append(f"the JSON body → `{shape.body}`")
    if shape.raw:
        fills.append(f"the request unparsed (body bytes, lower-cased headers, query, `{{path}}`) → `{shape.raw}`")
    if shape.answer == "webhook":
        answer = "the `WebhookResponse`'s status and body (None: 200 `{\"received\": true}`)"
    else:
        if shape.answer == "page":
            envelope = '{"data": [...], "next_token": "..."}` (the token only when there is a next page)'
        elif shape.answer == "message":
            envelope = json.dumps({"message": shape.message}) + "`"
        elif shape.fields:
            keys = ", ".join(f'"{wire_key(attrs.fields_dict(shape.returns)[f])}": ...' for f in shape.fields)
            envelope = f'{{"data": {{{keys}}}}}`'
        else:
            envelope = '{"data": ...}`'
        answer = f"{shape.status} `{envelope}"
    return (", ".join(fills) or "nothing from the request") + "; answers " + answer


def _prose(doc: str) -> str:
    """The docstring without its ``:param``/``:return``/``:raises`` fields (rendered as lists instead)."""
    text = _RAISES.sub("", _PARAM.sub("", doc))
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _hook_section(func: Callable[..., Any], reg: SchemaRegistry) -> list[str]:
    name = func.__name__
    # The lifecycle specs import typer and Routes for type checking only.
    hints = typing.get_type_hints(func, localns={"typer": typer, "Routes": Routes})
    signature = inspect.signature(func)
    doc = inspect.getdoc(func) or ""
    ret = hints.get("return", type(None))
    lines = [f"## {name}", "", "```python",
             f"def {name}({', '.join(f'{p}: {_type_name(hints[p])}' for p in signature.parameters)})"
             f" -> {_type_name(ret)}", "```", ""]
    row = CONTRACT.get(name)
    batch = BATCH_FORMS.get(name)
    facts = []
    if row is not None:
        facts += [f"- **SBT property**: `{row.sbt_property}`",
                  f"- **Required** of a selected provider: {'yes' if row.required else 'no'}",
                  f"- **Default trigger**: {_trigger(row)}"
                  + ("" if row.overridable else " (not overridable)")]
        if row.route is not None:
            facts.append(f"- **Over HTTP**: {_http(row.route)}")
        if row.batch_hook:
            facts.append(f"- **Batch form**: [`{row.batch_hook}`](#{row.batch_hook})")
    if batch is not None:
        facts.append(f"- **Batch form of** [`{batch.single}`](#{batch.single}): `{batch.argument}` holds what each "
                     "call's argument would have been; the bus prefers it for a burst of events")
    spec = getattr(func, "sbt_spec", {}) or {}
    facts.append("- **Result**: " + ("the first provider's answer (`firstresult`)" if spec.get("firstresult")
                                     else "every implementation is called; a list of answers"))
    lines += facts + ["", _prose(doc), ""]
    meanings = {m.group(1): " ".join(m.group(2).split()).replace("|", "\\|") for m in _PARAM_TEXT.finditer(doc)}
    if signature.parameters:
        lines += ["| argument | type | JSON | meaning |", "|---|---|---|---|"]
        lines += [f"| `{p}` | `{_type_name(hints[p])}` | {_shape(_schema(reg, hints[p]))} | {meanings.get(p, '')} |"
                  for p in signature.parameters]
        lines.append("")
    if ret is not type(None):
        returned = _RETURN_TEXT.search(doc)
        lines += [f"**Returns** `{_type_name(ret)}`: {_shape(_schema(reg, ret))}"
                  + (f" — {' '.join(returned.group(1).split())}" if returned else ""), ""]
    errors = [(m.group(1), " ".join(m.group(2).split())) for m in _RAISES.finditer(doc)]
    if errors:
        lines += ["**Errors**", ""] + [f"- `{e}`: {why}" for e, why in errors] + [""]
    return lines


def _records(reg: SchemaRegistry) -> list[str]:
    lines = ["## Records", "", "The JSON shapes (JSON Schema 2020-12, as `GET /openapi.json` embeds them) of the "
             "records above.", ""]
    for name in sorted(reg.components):
        lines += [f"### {name}", "", "```json", json.dumps(reg.components[name], indent=2), "```", ""]
    return lines


_HEADER = ("Generated from the contract (`sbt_core.hookspecs.CONTRACT`) and the hookspecs' signatures and "
           "docstrings by `python docs/hooks/generate.py`; do not edit by hand "
           "(`tests/core/test_hook_reference.py` fails when this page is out of date).")


def _summary_row(name: str) -> str:
    row = CONTRACT.get(name)
    if row is not None:
        return f"| [`{name}`](#{name}) | {row.sbt_property} | {'yes' if row.required else 'no'} | {_trigger(row)} |"
    batch = BATCH_FORMS.get(name)
    what = f"batch form of `{batch.single}`" if batch else "lifecycle"
    return f"| [`{name}`](#{name}) | ({what}) | no | |"


def _page(title: str, intro: str, funcs: list[Callable[..., Any]]) -> str:
    reg = SchemaRegistry()
    lines = [f"# {title}", "", _HEADER, "", intro, ""]
    lines += ["| hook | SBT property | required | default trigger |", "|---|---|---|---|"]
    lines += [_summary_row(f.__name__) for f in funcs] + [""]
    for func in funcs:
        lines += _hook_section(func, reg)
    if reg.components:
        lines += _records(reg)
    return "\n".join(lines).rstrip() + "\n"


def _module_hooks(module: ModuleType) -> list[Callable[..., Any]]:
    return [f for f in vars(module).values() if callable(f) and getattr(f, "sbt_spec", None) is not None
            and getattr(f, "__module__", None) == module.__name__]


def pages() -> dict[str, str]:
    """``{file name: Markdown}`` of every page."""
    out: dict[str, str] = {}
    for interface in INTERFACES:
        module = next(m for m in SPEC_MODULES if m.__name__.endswith(f".{interface}"))
        contract = [getattr(module, row.name) for row in hooks_of(interface)]
        batches = [f for f in _module_hooks(module) if f.__name__ in BATCH_FORMS]
        intro = (f"The hooks of `{interface}`, sbt's {SBT_INTERFACES[interface]}: a provider selected with "
                 f"`[providers.{interface}] type = \"...\"` implements the required ones (`sbt plugins new "
                 f"{interface} NAME` writes a skeleton). " + (inspect.getdoc(module) or "").split("\n\n")[0])
        out[f"{interface}.md"] = _page(f"{SBT_INTERFACES[interface]} hooks (`{interface}`)", intro,
                                       contract + batches)
    lifecycle = next(m for m in SPEC_MODULES if m.__name__.endswith(".lifecycle"))
    out["lifecycle.md"] = _page("Lifecycle hooks", "Hooks any plugin may implement, provider or extension: "
                                + (inspect.getdoc(lifecycle) or "").split("\n\n")[0], _module_hooks(lifecycle))
    return out


def main(argv: list[str]) -> int:
    stale = []
    for name, text in pages().items():
        path = HERE / name
        if "--check" in argv:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)} (run: python docs/hooks/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
