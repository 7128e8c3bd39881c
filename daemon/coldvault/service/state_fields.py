"""Typed readers for the fields of the state file: every value is checked before it is used.

The state file is written by coldvault, but it lives on the host for years,
is edited by hand now and then, and may be cut short by a full disk. Each
reader takes one key of a JSON object and returns a value of the promised
type and form, or raises :class:`FieldError` naming the field and what was
wrong. Unknown keys are ignored (a newer version may have added them).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime
from typing import Any

MIN_YEAR, MAX_YEAR = 1970, 9000  # times coldvault could have written, with room for intervals
MAX_COUNT = 2**63 - 1  # bytes and item counts: what a 64-bit file offset can hold
MAX_SECONDS = 100 * 366 * 86400.0  # a duration longer than a century is not a duration
MAX_TEXT = 64 * 1024  # one message; longer means the file is not what we wrote


class FieldError(ValueError):
    """A field of the state file has the wrong type or form."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Fields:
    """The fields of one JSON object at ``where`` (a dotted path for messages)."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise FieldError(where, f"expected an object, found {_kind(data)}")
        self.data: dict[str, Any] = data
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str) -> Any:
        return self.data.get(key)

    def time(self, key: str) -> datetime | None:
        """An ISO 8601 timestamp WITH a UTC offset, or null."""
        value = self._get(key)
        if value is None:
            return None
        text = self._str(key, value)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise FieldError(self._name(key), f"{_short(text)!r} is not an ISO 8601 time") from None
        if parsed.utcoffset() is None:
            raise FieldError(
                self._name(key), f"{_short(text)!r} has no UTC offset (like +01:00 or Z)"
            )
        if not MIN_YEAR <= parsed.year <= MAX_YEAR:
            # Far ends overflow when shifted to another zone or when an interval is added.
            raise FieldError(
                self._name(key), f"{_short(text)!r} is not between {MIN_YEAR} and {MAX_YEAR}"
            )
        return parsed

    def count(self, key: str, default: int = 0) -> int:
        """A whole number from 0 up to :data:`MAX_COUNT`."""
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(self._name(key), f"expected a whole number, found {_kind(value)}")
        if not 0 <= value <= MAX_COUNT:
            raise FieldError(self._name(key), f"{value} is out of range 0..{MAX_COUNT}")
        return value

    def seconds(self, key: str) -> float | None:
        """A finite, non-negative number of seconds (at most a century), or null."""
        value = self._get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(self._name(key), f"expected a number, found {_kind(value)}")
        number = value if isinstance(value, float) else min(value, 2 * int(MAX_SECONDS))
        if not math.isfinite(number) or not 0 <= number <= MAX_SECONDS:
            raise FieldError(self._name(key), f"{value!r} is out of range 0..{MAX_SECONDS:.0f}")
        return float(number)

    def text(self, key: str) -> str | None:
        """A string (at most :data:`MAX_TEXT` characters) or null."""
        value = self._get(key)
        return None if value is None else self._str(key, value)

    def choice(self, key: str, allowed: Collection[str]) -> str | None:
        """One of ``allowed``, or null."""
        value = self.text(key)
        if value is not None and value not in allowed:
            raise FieldError(
                self._name(key), f"{_short(value)!r} is not one of {', '.join(sorted(allowed))}"
            )
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        """A list of strings (absent or null: empty)."""
        value = self._get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise FieldError(self._name(key), f"expected a list, found {_kind(value)}")
        return tuple(self._str(f"{key}[{i}]", item) for i, item in enumerate(value))

    def nested(self, key: str) -> Fields | None:
        """The object under ``key``, or None when it is absent or null."""
        value = self._get(key)
        return None if value is None else Fields(value, self._name(key))

    def _str(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            raise FieldError(self._name(key), f"expected a string, found {_kind(value)}")
        if len(value) > MAX_TEXT:
            raise FieldError(self._name(key), f"longer than {MAX_TEXT} characters")
        if "\0" in value:
            raise FieldError(self._name(key), "contains a NUL character")
        return value


def _kind(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
