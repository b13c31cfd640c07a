"""The patterns the OpenAPI document states are the rules the validators enforce: compared value by value
on the characters that matter (white space, control characters, separators), with Python's ``re`` as a
stand-in for ECMA 262 (the patterns use only what both read alike: classes of ``\\uXXXX`` escapes)."""

from __future__ import annotations

import re
import sys

import pytest

from sbt_core import input_policy
from sbt_core.errors import BadRequestError
from sbt_core.models import CreateUserRequest, MeterCreate, from_json
from sbt_core.models.auth import EMAIL_PATTERN
from sbt_core.models.metering import GROUP_BY_PATTERN, PROPERTY_PATTERN

SAMPLES = ["a", " a ", "", " ", "\u3000", "a\u2028b", "a\nb", "a\x00", "\x85", "a b", "a,b", " a , b ", "a,,b",
           ",", "0a", "_x.y-z", "a@b.c", "a@b", "a b@c.d", "a@b.c\n", "x" * 129, "\ufeff", "\u200b"]


def _matches(pattern: str, value: str) -> bool:
    # ECMA 262's $ never matches before a final line break, unlike Python's: \Z is its reading.
    return re.search(pattern.replace("$", "\\Z"), value) is not None


def test_whitespace_is_what_str_strip_removes() -> None:
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    stated = {chr(c) for c in range(sys.maxunicode + 1) if re.fullmatch(f"[{input_policy.WHITESPACE}]", chr(c))}
    assert stated == spaces
    printable = {c for c in spaces if input_policy.name_problem(c) is None}
    assert {c for c in spaces if re.fullmatch(f"[{input_policy.WHITESPACE_PRINTABLE}]", c)} == printable


@pytest.mark.parametrize("value", SAMPLES)
def test_a_name_field_accepts_what_its_pattern_does(value: str) -> None:
    body = {"userName": value, "userRole": "admin", "email": "a@b.c"}
    try:
        from_json(CreateUserRequest, body)
        accepted = True
    except BadRequestError:
        accepted = False
    assert accepted == (_matches(input_policy.NONBLANK_NAME_PATTERN, value) and len(value) <= 128)


@pytest.mark.parametrize("value", SAMPLES)
def test_email_and_property_names_accept_what_their_patterns_do(value: str) -> None:
    def accepts(body: dict[str, object]) -> bool:
        try:
            from_json(CreateUserRequest if "email" in body else MeterCreate, body)
        except BadRequestError:
            return False
        return True

    assert accepts({"userName": "u", "userRole": "r", "email": value}) == _matches(EMAIL_PATTERN, value)
    assert accepts({"name": "m", "eventName": "e", "valueProperty": value}) == _matches(PROPERTY_PATTERN, value)
    assert accepts({"name": "m", "eventName": "e", "groupBy": value}) == _matches(GROUP_BY_PATTERN, value)
