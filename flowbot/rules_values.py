"""The scalar values of rules.yaml: durations, ratios, whole numbers, booleans, names.

Each kind of value is defined once, as a regular expression or a small parser, and the
same definition serves the checker (`spec.Before`) and the published JSON Schema,
so that the two agree. Patterns are written in the subset that both Python's `re` and
the ECMAScript dialect of JSON Schema read the same way; they are anchored with
`anchored()`, whose end (`(?![\\s\\S])`) is the true end of the text in both (`$`
would accept a trailing newline in Python).

Values taken whole from the environment (`${NAME}`) reach the validators as `EnvValue`
strings: a whole number or a boolean may come from the environment as text, while a
quoted "10" or "yes" written in the file is text and refused where a number or a
boolean belongs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from flowbot.rules_yaml import EnvValue
from flowbot.spec import Accepts, Before, Group, Range, Schema

# Durations longer than this are refused: ten years is beyond any sensible poll,
# lookback, repeat or silence, and far inside what timedelta and SQLite can hold.
MAX_DURATION = timedelta(days=3650)


def anchored(core: str) -> str:
    """`core` matched against the whole text, in Python and in JSON Schema alike."""
    return f"^(?:{core})(?![\\s\\S])"


def _matches(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


# -- ${NAME} references ----------------------------------------------------------------

ENV_REF = r"\$\{[A-Za-z_][A-Za-z0-9_]*\}"
ENV_WHOLE = anchored(ENV_REF)  # a number or boolean may come from the environment whole
BAD_ENV_REF = r"\$\{(?![A-Za-z_][A-Za-z0-9_]*\})[^}]*\}"  # ${...} that names no variable

# -- durations ------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d{1,3})?)(ms|s|m|h|d|w)")
DURATION_PATTERN = anchored(r"\s*(?:\d+(?:\.\d{1,3})?(?:ms|s|m|h|d|w)\s*)+")
POSITIVE_DURATION_PATTERN = "^(?=[^1-9]*[1-9])" + DURATION_PATTERN[1:]


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """'30s', '15m', '4h', '2d', '1w', '250ms' (or combined, '1h30m') → timedelta.

    A bare number is refused (without a unit nobody can tell seconds from minutes), so
    is anything over MAX_DURATION. Raises ValueError with a message meant for the user.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"a duration needs a unit, like {value}s or {value}m; got the number {value!r}"
        )
    if not _matches(DURATION_PATTERN, value):
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
            number = value.strip()
            raise ValueError(f"{value!r} needs a unit, like {number}m or {number}h")
        raise ValueError(f"not a duration: {value!r}; write it like 30s, 15m, 4h or 2d")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"{value.strip()} is longer than the longest duration flowbot takes "
            f"({MAX_DURATION.days}d, ten years)"
        )
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """timedelta → '2h', '1h30m', '45s' (the way rules.yaml writes them)."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return f"{delta.total_seconds():g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _duration(value: Any) -> timedelta:
    delta = parse_duration(value)
    if delta <= timedelta():
        raise ValueError("must be longer than zero")
    return delta


# -- ratios ---------------------------------------------------------------------------

RATIO_PERCENT = anchored(r"\s*0*(?:100(?:\.0+)?|\d{1,2}(?:\.\d+)?)\s*%\s*")
RATIO_DECIMAL = anchored(r"\s*0*(?:1(?:\.0+)?|0?\.\d+|0)\s*")
_NUMBER_LIKE = re.compile(r"\s*-?\d*\.?\d+\s*%?\s*")


def parse_ratio(value: str | int | float) -> float:
    """'5%', '0.05' or 0.05 → 0.05. Anything outside 0–100% raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"a ratio must be a percentage like 5% or a number like 0.05, got {value}")
    if isinstance(value, str):
        text = value.strip()
        if _matches(RATIO_PERCENT, value):
            return float(text[:-1]) / 100
        if _matches(RATIO_DECIMAL, value):
            return float(text)
        if _NUMBER_LIKE.fullmatch(value):
            raise ValueError(f"ratio {text} is outside 0–100%")
        raise ValueError(
            f"not a ratio: {value!r}; write a percentage like 5% or a number like 0.05"
        )
    if not isinstance(value, int | float):
        raise ValueError(
            f"a ratio must be a percentage like 5% or a number like 0.05, got {value!r}"
        )
    ratio = float(value)
    if not 0 <= ratio <= 1:
        hint = f" (did you mean {value}%?)" if 1 < ratio <= 100 else ""
        raise ValueError(f"ratio {value} is outside 0–100%{hint}")
    return ratio


# -- whole numbers and booleans ----------------------------------------------------------

_INT_TEXT = re.compile(r"\s*[+-]?\d{1,18}\s*")
BOOL_WORDS = {
    word: meaning
    for words, meaning in (("true yes on", True), ("false no off", False))
    for base in words.split()
    for word in (base, base.capitalize(), base.upper())
}


def _int(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, got {value}")
    if isinstance(value, EnvValue) and _INT_TEXT.fullmatch(value):
        return int(value)
    if isinstance(value, str):
        raise ValueError(f"must be a whole number, got {value!r}")
    return value  # the int check takes ints (and 10.0) and refuses the rest


def to_bool(value: Any) -> bool:
    """A YAML boolean, or true/false/yes/no/on/off taken whole from the environment."""
    if isinstance(value, bool):
        return value
    if isinstance(value, EnvValue) and value.strip() in BOOL_WORDS:
        return BOOL_WORDS[value.strip()]
    hint = " (without quotes)" if isinstance(value, str) and value.strip() in BOOL_WORDS else ""
    raise ValueError(f"must be true or false{hint}, got {value!r}")


def _str_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _text(pattern: str, explain: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, str) and not _matches(pattern, value):
            if "{value}" in explain:
                raise ValueError(explain.replace("{value}", repr(value)))
            raise ValueError(f"{explain}: {value!r}")
        return value

    return check


def _string(pattern: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, **extra}


Duration = Annotated[
    timedelta,
    Before(_duration),
    Schema(_string(POSITIVE_DURATION_PATTERN, examples=["30s", "15m", "4h"])),
]
DurationOrZero = Annotated[
    timedelta,
    Before(parse_duration),
    Schema(_string(DURATION_PATTERN, examples=["0s", "15m", "1h"])),
]
Ratio = Annotated[
    float,
    Before(parse_ratio),
    Schema(
        {
            "anyOf": [
                _string(RATIO_PERCENT, examples=["5%"]),
                _string(RATIO_DECIMAL),
                {"type": "number", "minimum": 0, "maximum": 1},
            ]
        }
    ),
]


class IntIn(Group):
    """`Annotated[int, IntIn(low, high)]`: a whole number from `low` to `high` (or one
    taken whole from the environment)."""

    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.high = high

    def parts(self) -> Iterator[object]:
        yield Before(_int)
        yield Range(self.low, self.high)
        yield Schema({"type": "integer", "minimum": self.low, "maximum": self.high})


Bool = Annotated[bool, Before(to_bool), Schema({"type": "boolean"})]


class Text(Group):
    """`Annotated[str, Text(core, explain)]`: a string that must match `core` (whole), e.g.
    Text(r"\\S+", "no spaces"); `schema` adds JSON Schema keywords (which the caller also
    enforces, e.g. with Length)."""

    def __init__(self, core: str, explain: str, **schema: Any) -> None:
        self.pattern = anchored(core)
        self.explain = explain
        self.schema = schema

    def parts(self) -> Iterator[object]:
        yield Before(_text(self.pattern, self.explain))
        yield Schema(_string(self.pattern, **self.schema))


if TYPE_CHECKING:
    OneOrList = list
else:

    class OneOrList:
        """`OneOrList[T]`: one value or a list of values (selectors and email addresses);
        a list of T to the type checker, which sees only the value after validation."""

        def __class_getitem__(cls, item: Any) -> Any:
            return Annotated[list[item], Before(_str_list), Accepts(item | list[item])]
