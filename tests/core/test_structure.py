"""sbt_core.structure: strict scalars, and every problem as (dotted.path, message) read from the error objects."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sbt_core.structure import Invalid, Refusal, StrictConverter


def _problems(converter: StrictConverter, data: Any, cls: type) -> set[tuple[str, str]]:
    with pytest.raises(Invalid) as info:
        converter.check(data, cls)
    return set(info.value.problems)


@pytest.mark.parametrize(("value", "type_", "message"), [
    ("1", int, "expected an integer, got '1'"),
    (True, int, "expected an integer, got True"),
    (1, bool, "expected true or false, got 1"),
    (5, str, "expected a string, got int"),
    ("1.5", float, "expected a number, got '1.5'"),
    (False, float, "expected a number, got False"),
])
def test_scalars_are_strict(value: object, type_: type, message: str) -> None:
    assert _problems(StrictConverter(), value, type_) == {("", message)}


def test_a_wire_converter_takes_numbers_written_as_text_and_nothing_else() -> None:
    wire = StrictConverter(numbers_from_text=True)
    assert (wire.check("50", int), wire.check("-3", int), wire.check("1.5", float), wire.check(2, float)) == \
        (50, -3, 1.5, 2.0)
    assert _problems(wire, "fifty", int) == {("", "expected an integer, got 'fifty'")}
    assert _problems(wire, "1", bool) == {("", "expected true or false, got '1'")}


def _no_spaces(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if " " in value:
        raise ValueError(f"{attribute.name} {value!r} has a space")


def _even(_: object, __: attrs.Attribute[Any], value: int) -> None:
    if value % 2:
        raise Refusal("must be even", repr(value))


@attrs.frozen
class Item:
    size: int = attrs.field(validator=[attrs.validators.ge(1), _even])
    kind: str = attrs.field(default="a", validator=attrs.validators.in_(("a", "b")))
    label: str = attrs.field(default="x", validator=_no_spaces)


@attrs.frozen
class Order:
    items: tuple[Item, ...]
    by_name: dict[str, Item] = attrs.field(factory=dict)
    count: int = attrs.field(default=1, validator=attrs.validators.and_(attrs.validators.ge(1),
                                                                         attrs.validators.le(9)))
    note: str | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.in_(("n",))))

    def __attrs_post_init__(self) -> None:
        if self.count > len(self.items):
            raise ValueError("count is more than the items given")


def test_every_validator_and_structuring_problem_is_reported_at_once_under_its_path() -> None:
    data = {"items": [{"size": 2}, {"size": 0, "kind": "c", "label": "a b"}, {"size": 3}],
            "by_name": {"x": {"size": "2"}}, "count": 10, "note": "m"}
    assert _problems(StrictConverter(), data, Order) == {
        ("items[1].size", "must be >= 1 (got 0)"),
        ("items[1].kind", "must be one of 'a', 'b' (got 'c')"),
        ("items[1].label", "label 'a b' has a space"),
        ("items[2].size", "must be even (got 3)"),
        ("by_name.x.size", "expected an integer, got '2'"),
        ("count", "must be <= 9 (got 10)"),
        ("note", "must be one of 'n' (got 'm')"),
    }


def test_a_record_s_own_check_is_reported_under_its_path_once_its_fields_pass() -> None:
    assert _problems(StrictConverter(), {"items": [{"size": 2}], "count": 2}, Order) == {
        ("", "count is more than the items given")}
    assert StrictConverter().check({"items": [{"size": 2}], "note": None}, Order).items == (Item(size=2),)


def test_unknown_and_missing_keys_in_the_converter_s_words_and_under_its_keys() -> None:
    config = StrictConverter()
    assert _problems(config, {"items": [{"size": 2, "colour": 1}]}, Order) == {
        ("items[0]", "unknown key(s) colour; valid keys: size, kind, label")}
    wire = StrictConverter(key=lambda f: f.name.upper(), noun="field")
    assert _problems(wire, {"ITEMS": [{"SIZE": 1}, {"KIND": "a"}], "extra": 1}, Order) == {
        ("ITEMS[0].SIZE", "must be even (got 1)"),
        ("ITEMS[1].SIZE", "required field missing"),
        ("", "unknown field(s) extra"),
    }


def test_where_validators_name_their_field_only_a_refusal_is_put_under_the_field_s_key() -> None:
    wire = StrictConverter(validators_name_fields=True)
    data = {"items": [{"size": 0, "label": "a b"}]}
    assert _problems(wire, data, Order) == {("items[0].size", "must be >= 1 (got 0)"),
                                            ("items[0]", "label 'a b' has a space")}


def _words(value: Any) -> tuple[str, ...]:
    """Each item may be comma-separated words, as ``groupBy``'s."""
    return tuple(part.strip() for item in value for part in item.split(","))


def _each_a_word(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not all(name.isalpha() for name in value):
        raise ValueError(f"{attribute.name} must be words")


@attrs.frozen
class _Converted:
    names: tuple[str, ...] = attrs.field(converter=_words, validator=_each_a_word)
    count: int = attrs.field(validator=attrs.validators.gt(0))


def test_the_other_fields_validators_judge_the_converted_value_as_init_does() -> None:
    # ["a, b"] is words once converted: only count is refused, not the raw item "a, b"
    assert _problems(StrictConverter(), {"names": ["a, b"], "count": 0}, _Converted) == {
        ("count", "must be > 0 (got 0)")}
    assert _problems(StrictConverter(), {"names": ["a, 1"], "count": 0}, _Converted) == {
        ("count", "must be > 0 (got 0)"), ("names", "names must be words")}
