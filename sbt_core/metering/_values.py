"""What a usage event's properties mean to a meter: the value, and the group-by dimensions.

OpenMeter's rules (``openmeter/meter/parse.go``): SUM, AVG, MIN, MAX and LATEST take a JSON number
or a numeric string, and refuse NaN, +-Inf, null and a missing value; UNIQUE_COUNT compares values
as text. Booleans are refused everywhere (``true`` is not a quantity). A missing group-by dimension
groups as ``""``.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["as_number", "as_text", "dimension_text"]


def as_number(value: Any) -> float:
    """``value`` as a finite float.

    :raises ValueError: saying why (missing, boolean, not numeric, NaN or infinite).
    """
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # finite (NaN and +-Inf give NaN)
            finite: float = value
            return finite
        raise ValueError(f"must be finite, got {value!r}")
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise ValueError("is too large for a float") from None
    if value is None:
        raise ValueError("is missing")
    if kind is bool:
        raise ValueError(f"must be a number, got {json.dumps(value)}")
    if isinstance(value, str):
        text = value.strip()
        # float() also takes "1_000", "nan" and "infinity": none of them is a JSON number.
        if not text or "_" in text:
            raise ValueError(f"must be a number or a numeric string, got {value!r}")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"must be a number or a numeric string, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"must be finite, got {value!r}")
        return number
    if isinstance(value, (int, float)):  # int/float subclasses other than bool
        return as_number(float(value))
    raise ValueError(f"must be a number or a numeric string, got {type(value).__name__}")


def _number_text(value: int | float) -> str:
    # JSON 3 and 3.0 are the same number, as OpenMeter's Go float64 sees them.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def as_text(value: Any) -> str:
    """``value`` as the text UNIQUE_COUNT compares: a string as is, a finite number in its shortest form.

    :raises ValueError: missing, boolean, NaN, infinite, or not a string or number.
    """
    if isinstance(value, str):
        return value
    if value is None:
        raise ValueError("is missing")
    if isinstance(value, bool):
        raise ValueError(f"must be a string or a number, got {json.dumps(value)}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
        return _number_text(value)
    raise ValueError(f"must be a string or a number, got {type(value).__name__}")


def dimension_text(value: Any) -> str:
    """A group-by dimension as text: ``""`` when missing or null, JSON text for booleans and objects."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number_text(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
