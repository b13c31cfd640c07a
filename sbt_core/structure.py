"""Untrusted tables (``sbt.toml`` sections, wire JSON) -> attrs records: strictly, and with every problem at once.

One cattrs converter kind, :class:`StrictConverter`, for the config loader and the wire models alike:

- scalars are strict (no ``"1"`` -> ``1``, no ``1`` -> ``True``, no ``5`` -> ``"5"``), except that a wire
  converter takes numbers written as text, as query strings carry them;
- unknown keys are refused;
- every field is structured and every field validator runs, so one answer lists each refused field (an
  attrs ``__init__`` stops at its first failing validator);
- :meth:`StrictConverter.check` turns cattrs' exception groups into ``(dotted.path, message)`` pairs, read
  from the exception objects and their cattrs notes, never from message text.

A validator refusal is worded without the field's name, since the report puts it under the field's key:
attrs' own ``gt``/``ge``/``lt``/``le`` and ``in_`` are worded here by validator type (``must be >= 1 (got
0)``, ``must be one of 'a', 'b' (got 'c')``); a hand-written validator raises :class:`Refusal` to say the
same; any other exception a validator raises is reported as written, under its field's key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, override

from .errors import BadRequestError

__all__ = ["Invalid", "KeyOf", "Refusal", "StrictConverter", "field_name"]

T = TypeVar("T")
#: The input key of an attrs field: its name in ``sbt.toml``, its camelCase wire key in JSON.
KeyOf = Callable[["attrs.Attribute[Any]"], str]

# attrs' validator classes are private; their instances' types are what ``isinstance`` needs.
_NUMBER_VALIDATOR: type[Any] = type(attrs.validators.ge(0))
_IN_VALIDATOR: type[Any] = type(attrs.validators.in_(()))
_AND_VALIDATOR: type[Any] = type(attrs.validators.and_())
_OPTIONAL_VALIDATOR: type[Any] = type(attrs.validators.optional(attrs.validators.ge(0)))


def field_name(field: attrs.Attribute[Any]) -> str:
    """The default :data:`KeyOf`: a field's Python name (``sbt.toml`` keys are snake_case)."""
    return field.name


class Refusal(ValueError):
    """A validator's refusal of one field's value, worded without the field's name: ``rule`` is what the value
    must be (``must be >= 1``), ``got`` the refused value as shown (``0``; None for a secret); ``str()`` is
    ``must be >= 1 (got 0)``."""

    def __init__(self, rule: str, got: str | None = None) -> None:
        super().__init__(rule, got)
        self.rule = rule
        self.got = got

    def __str__(self) -> str:
        return self.rule if self.got is None else f"{self.rule} (got {self.got})"


class Invalid(ValueError):
    """What :meth:`StrictConverter.check` refused: ``problems`` as ``(dotted.path, message)`` pairs, the path
    relative to the structured value (``""`` for the value itself)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" if path else message for path, message in problems))
        self.problems = problems


class StrictConverter(cattrs.Converter):
    """A cattrs converter with strict scalars, unknown keys refused and every field validator run.

    ``key`` names each attrs field's input key (:func:`field_name`, or the wire's camelCase); ``noun`` is
    what the messages call a key (``key`` in ``sbt.toml``, ``field`` in JSON); ``numbers_from_text`` takes
    ``"50"`` as an int and ``"1.5"`` as a float (query strings); ``unwrap`` maps a value before a scalar is
    checked (the config passes a secret given where a plain value is expected through as its value).
    ``validators_name_fields``: the records' own validators name their field in their messages (the wire
    models' ``userName must be ...``), so an error one raises that is not a :class:`Refusal` is reported
    under the record's path, not repeated under the field's key.
    """

    def __init__(self, *, key: KeyOf = field_name, noun: str = "key", numbers_from_text: bool = False,
                 unwrap: Callable[[Any], Any] | None = None, validators_name_fields: bool = False) -> None:
        super().__init__(forbid_extra_keys=True, detailed_validation=True)
        self.key = key
        self.noun = noun
        self.numbers_from_text = numbers_from_text
        self.unwrap = unwrap
        self.validators_name_fields = validators_name_fields
        for scalar in (str, int, float, bool):
            self.register_structure_hook(scalar, self.scalar)
        self.register_structure_hook_factory(attrs.has, self._record_hook)

    # --- structuring ---------------------------------------------------------------------------------------

    def scalar(self, value: Any, type_: type) -> Any:
        """``value`` as the scalar ``type_`` (str, int, float or bool), without coercion but the ones the
        converter was made with; ValueError otherwise."""
        if self.unwrap is not None:
            value = self.unwrap(value)
        if type_ is str:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {type(value).__name__}")
            return value
        if type_ is bool:
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            return value
        if isinstance(value, str) and self.numbers_from_text:
            return self._number_from_text(value, type_)
        if type_ is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected an integer, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)

    @staticmethod
    def _number_from_text(text: str, type_: type) -> int | float:
        if type_ is int:
            if text.strip().lstrip("-").isdecimal():  # isdigit() takes "²", which int() refuses
                return int(text)
            raise ValueError(f"expected an integer, got {text!r}")
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None

    def _record_hook(self, cls: type) -> Callable[[Any, type], Any]:
        renames = {f.name: override(rename=self.key(f)) for f in attrs.fields(cls)
                   if f.init and self.key(f) != f.name}
        # The ignore: mypy checks **renames against every keyword parameter, cattrs' bool flags included,
        # though field names only ever reach its ``**kwargs: AttributeOverride``.
        generated: Callable[[Any, type], Any] = make_dict_structure_fn(
            cls, self, _cattrs_forbid_extra_keys=True, **renames)  # type: ignore[arg-type]

        def structure(data: Any, type_: type) -> Any:
            try:
                return generated(data, type_)
            except ClassValidationError as exc:
                raise self._every_refusal(exc, cls, data) from None

        return structure

    def _every_refusal(self, exc: ClassValidationError, cls: type, data: Any) -> ClassValidationError:
        """``exc`` completed with the refusal of every field validator.

        cattrs structures every field and raises their errors together; only when all succeed does it call
        ``cls(...)``, whose error it raises alone and without a note, and ``__init__`` stops at the first
        failing validator. So each field that did structure has its validators run here on its value
        (structuring it again, which succeeded once), each refusal noted with its field as cattrs notes a
        structuring error."""
        noted, bare = exc.group_exceptions()
        raised = bare[0] if not noted and len(bare) == 1 and not isinstance(bare[0], ForbiddenExtraKeysError) \
            else None
        failed = {note.name for _, note in noted}
        refusals: list[Exception] = []
        seen_raised = False
        for field in attrs.fields(attrs.resolve_types(cls)):
            key = self.key(field)
            if field.validator is None or field.name in failed or not isinstance(data, dict) or key not in data:
                continue
            try:
                value = self.structure(data[key], field.type) if field.type is not None else data[key]
                value = _converted(field, value)  # validators judge what __init__ would hand them
            except Exception:  # noqa: BLE001, S112 - cattrs (or cls(...) alone) reported it already
                continue
            for validator in _leaves(field.validator, value):
                try:
                    validator(None, field, value)
                except (ValueError, TypeError, BadRequestError) as error:
                    seen_raised = seen_raised or (raised is not None and type(error) is type(raised)
                                                  and error.args == raised.args)
                    refusal = _worded(validator, error, value)
                    if isinstance(refusal, Refusal) or not self.validators_name_fields:
                        refusal.__notes__ = [AttributeValidationNote(
                            f"Structuring class {cls.__qualname__} @ attribute {field.name}", field.name,
                            field.type)]
                    refusals.append(refusal)
                    break  # as attrs' and_: a field's first refusal is its answer
                except Exception:  # noqa: BLE001, S112 - a validator needing the instance: cls(...) alone judges it
                    continue
        if raised is None:
            return ClassValidationError(exc.message, [*exc.exceptions, *refusals], cls) if refusals else exc
        if not seen_raised:  # from __attrs_post_init__, or a validator that needs the instance
            refusals.append(raised)
        return ClassValidationError(exc.message, refusals, cls)

    # --- reporting ---------------------------------------------------------------------------------------

    def check(self, data: Any, cls: type[T]) -> T:
        """``data`` structured into ``cls``.

        :raises Invalid: listing every problem as ``(dotted.path, message)`` (``a.b``, ``a[0]``).
        """
        try:
            return self.structure(data, cls)
        except Exception as exc:  # a structuring failure is the input's problem, whichever hook raised it
            raise Invalid(self.problems(exc)) from exc

    def problems(self, exc: BaseException) -> list[tuple[str, str]]:
        """Every leaf error below ``exc`` (cattrs' exception groups) as ``(dotted.path, message)``."""
        return [(_dotted(path), self.describe(error)) for path, error in self._walk(exc, ())]

    def _walk(self, exc: BaseException, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...],
                                                                                   BaseException]]:
        if isinstance(exc, ClassValidationError):
            noted, bare = exc.group_exceptions()
            keys = {f.name: self.key(f) for f in attrs.fields(exc.cl)} if attrs.has(exc.cl) else {}
            for error, note in noted:
                yield from self._walk(error, (*path, keys.get(note.name, note.name)))
            for error in bare:
                yield from self._walk(error, path)
        elif isinstance(exc, IterableValidationError):
            indexed, bare = exc.group_exceptions()
            for error, item in indexed:
                yield from self._walk(error, (*path, item.index))
            for error in bare:
                yield from self._walk(error, path)
        else:
            yield path, exc

    def describe(self, error: BaseException) -> str:
        """One leaf error's message: an unknown or missing key in this converter's words, a BadRequestError's
        message, else the exception's own text."""
        if isinstance(error, ForbiddenExtraKeysError):
            names = ", ".join(sorted(error.extra_fields))
            if self.noun != "key":
                return f"unknown {self.noun}(s) {names}"
            valid = [f.name for f in attrs.fields(error.cl)] if attrs.has(error.cl) else []
            return f"unknown key(s) {names}" + (f"; valid keys: {', '.join(valid)}" if valid
                                                else "; this table takes no keys")
        if isinstance(error, KeyError):
            return f"required {self.noun} missing"
        if isinstance(error, BadRequestError):
            return error.message
        return str(error) or f"invalid value ({type(error).__name__})"


def _converted(field: attrs.Attribute[Any], value: Any) -> Any:
    """``value`` through ``field``'s attrs converter, as ``__init__`` runs it before the validators.

    :raises TypeError: a converter that needs the instance or the field (only ``cls(...)`` can run it).
    """
    converter = field.converter
    if converter is None:
        return value
    if isinstance(converter, attrs.Converter):
        if converter.takes_self or converter.takes_field:  # type: ignore[attr-defined]
            raise TypeError("a converter needing the instance")
        return converter.converter(value)  # type: ignore[attr-defined]
    return converter(value)


def _leaves(validator: Any, value: Any) -> Iterator[Any]:
    """The single validators ``validator`` runs on ``value`` (``and_`` and ``optional`` opened)."""
    if isinstance(validator, _AND_VALIDATOR):
        for inner in validator._validators:
            yield from _leaves(inner, value)
    elif isinstance(validator, _OPTIONAL_VALIDATOR):
        if value is not None:
            yield from _leaves(validator.validator, value)
    else:
        yield validator


def _worded(validator: Any, error: Exception, value: Any) -> Exception:
    """attrs' own bound and choice validators' refusals as :class:`Refusal` (attrs words them with the field's
    name); any other validator's error as it was raised."""
    if isinstance(validator, _NUMBER_VALIDATOR):
        return Refusal(f"must be {validator.compare_op} {validator.bound}", repr(value))
    if isinstance(validator, _IN_VALIDATOR):
        options = validator.options
        if isinstance(options, (set, frozenset)):
            options = sorted(options, key=repr)
        return Refusal(f"must be one of {', '.join(map(repr, options))}", repr(value))
    return error


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for segment in path:
        out += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if out else str(segment))
    return out
