"""Specs: dataclasses that check plain data (what YAML gives) against their
fields, collect every problem with its key path, and describe themselves as JSON Schema.

This is the small schema layer under rules.yaml (`rules_schema.py`) and rule test files
(`rule_tests.py`). It does what those files need and no more, quickly: the whole layer
imports and builds in a few milliseconds, so `flowbot rules check` starts fast. (pydantic
did this job until 0.2: importing it and building its models took most of the 0.7 s
`rules check` then took. msgspec is fast but reports only the first problem and has no
hook that runs before its type checks, which every value of rules.yaml needs.)

    @dataclass(kw_only=True, eq=False)
    class Selector(Spec):
        id: Annotated[list[str], Length(min=1)] = key(factory=list, doc="flow ids")

    value, problems = check(Selector, {"id": ["a"]})

A field's type is one of str, int, bool, float, datetime, timedelta, Any, Literal[...],
list[T], dict[str, T], T | None, another Spec, or `Annotated[T, ...]` with any of:

- `Before(fn)`: `fn(raw)` runs first and its result is checked as T; a ValueError it
  raises is the problem's message (so a value parser written once serves every field);
- `Length(min, max)`: of a text or a list; `Range(ge, le)`: of a number;
- `Schema({...})`: the field's JSON Schema, replacing the generated one, or
  `Accepts(T)`: the field described as T (what a Before takes);
- a `Group` (several of the above under one name).

A problem is a `Problem(loc, kind, message, given)`; `kind` names what went wrong
("missing", "unknown_key", "list_type", "value_error", ...) so callers can word it.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
    NamedTuple,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

T = TypeVar("T", bound="Spec")
Loc = tuple[str | int, ...]


# -- what an Annotated field may carry --------------------------------------------------


class Before(NamedTuple):
    """Runs on the raw value before the type check; its ValueError is the message."""

    fn: Callable[[Any], Any]


class Length(NamedTuple):
    """The length of a text or a list, from `min` to `max` (None: no bound)."""

    min: int | None = None
    max: int | None = None


class Range(NamedTuple):
    """A number from `ge` to `le`."""

    ge: int | float | None = None
    le: int | float | None = None


class Schema:
    """The field's JSON Schema, replacing the generated one (hashed by identity, as
    Annotated metadata must be hashable)."""

    __slots__ = ("schema",)

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema


class Accepts(NamedTuple):
    """The JSON Schema describes the field as this type: what the user may write, when
    a Before turns it into the field's type (one value or a list → a list)."""

    type: Any


class Group:
    """Several pieces of Annotated metadata under one name (e.g. a pattern checked by a
    Before and described by a Schema); subclasses yield them from `parts`."""

    def parts(self) -> Iterator[object]:
        raise NotImplementedError


# -- fields and specs -------------------------------------------------------------------

_DOC = "flowbot.spec.doc"


def key(default: Any = dataclasses.MISSING, *, factory: Any = None, doc: str | None = None) -> Any:
    """A field with a default (or a `factory` for lists and dicts) and a description
    for the JSON Schema; `key(doc=...)` alone is a required field."""
    metadata = {_DOC: doc} if doc else {}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Spec:
    """Base of specs. A subclass may define `before_check` (the raw mapping in, the
    mapping to check out), `cross_check` (checks across fields of the built value) and
    `schema_extra`
    (JSON Schema keywords added to, or a function applied to, the class's schema)."""

    schema_extra: ClassVar[dict[str, Any] | Callable[[dict[str, Any]], None] | None] = None

    @classmethod
    def before_check(cls, data: dict[str, Any]) -> dict[str, Any]:
        return data

    def cross_check(self) -> None:
        """Raise ValueError when the fields do not go together."""


class Problem(NamedTuple):
    """One thing wrong: where (`loc`, keys and list indexes), what kind, the message in
    plain words, and the value given (None when missing)."""

    loc: Loc
    kind: str
    message: str
    given: Any = None


class _Invalid(Exception):
    pass


_hints: dict[type, dict[str, Any]] = {}


def hints(cls: type) -> dict[str, Any]:
    """The field types of a spec class, with their Annotated metadata (cached)."""
    found = _hints.get(cls)
    if found is None:
        found = _hints[cls] = typing.get_type_hints(cls, include_extras=True)
    return found


def fields(cls: type[Spec]) -> dict[str, dataclasses.Field[Any]]:
    """The dataclass fields of a spec class, by name, in order."""
    return {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def field_names(cls: type[Spec], loc: Loc) -> list[str]:
    """The keys allowed at `loc` inside `cls` (following nested specs); [] if none."""
    current: Any = cls
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, Spec)):
            return []
        annotation = hints(current).get(str(part))
        if annotation is None:
            return []
        current = nested_spec(annotation)
    if isinstance(current, type) and issubclass(current, Spec):
        return list(fields(current))
    return []


def nested_spec(annotation: Any) -> type[Spec] | None:
    """The spec class inside a field's type (list[X], X | None, Annotated[X, ...])."""
    if isinstance(annotation, type) and issubclass(annotation, Spec):
        return annotation
    for arg in get_args(annotation):
        found = nested_spec(arg)
        if found is not None:
            return found
    return None


# -- checking ---------------------------------------------------------------------------


def check(cls: type[T], data: Any, loc: Loc = ()) -> tuple[T | None, list[Problem]]:
    """`data` checked against `cls`: the built value and no problems, or None and every
    problem found (each field is checked even after another one failed)."""
    problems: list[Problem] = []
    try:
        value = _spec(cls, data, loc, problems)
    except _Invalid:
        return None, problems
    return (value, problems) if not problems else (None, problems)


def _fail(problems: list[Problem], loc: Loc, kind: str, message: str, given: Any) -> _Invalid:
    problems.append(Problem(loc, kind, message, given))
    return _Invalid()


def _spec(cls: type[T], data: Any, loc: Loc, problems: list[Problem]) -> T:
    if not isinstance(data, dict):
        raise _fail(problems, loc, "mapping_type", "must be a mapping (key: value)", data)
    try:
        data = cls.before_check(data)
    except ValueError as exc:
        raise _fail(problems, loc, "value_error", str(exc), None) from None
    known = fields(cls)
    annotations = hints(cls)
    count = len(problems)
    for name in data:
        if name not in known:
            problems.append(Problem((*loc, name), "unknown_key", "unknown key", data[name]))
    values: dict[str, Any] = {}
    for name, field in known.items():
        if name in data:
            try:
                values[name] = _value(annotations[name], data[name], (*loc, name), problems)
            except _Invalid:
                pass
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.append(Problem((*loc, name), "missing", "missing", None))
    if len(problems) > count:
        raise _Invalid()
    built = cls(**values)
    try:
        built.cross_check()
    except ValueError as exc:
        raise _fail(problems, loc, "value_error", str(exc), None) from None
    return built


_PLAIN = {
    str: ("string_type", "must be text"),
    int: ("int_type", "must be a whole number"),
    bool: ("bool_type", "must be true or false"),
    float: ("float_type", "must be a number"),
    timedelta: ("duration_type", "must be a duration"),
    datetime: ("datetime_type", "must be a date and time"),
}


def _value(annotation: Any, raw: Any, loc: Loc, problems: list[Problem]) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *meta = get_args(annotation)
        value = raw
        for item in _flat(meta):
            if isinstance(item, Before):
                try:
                    value = item.fn(value)
                except ValueError as exc:
                    raise _fail(problems, loc, "value_error", str(exc), raw) from None
        value = _value(base, value, loc, problems)
        for item in _flat(meta):
            _bound(item, value, loc, problems)
        return value
    if origin in (Union, types.UnionType):
        arms = [a for a in get_args(annotation) if a is not type(None)]
        if raw is None and len(arms) < len(get_args(annotation)):
            return None
        if len(arms) != 1:
            raise TypeError(f"only X | None unions are checked, not {annotation}")
        return _value(arms[0], raw, loc, problems)
    if origin is Literal:
        choices = get_args(annotation)
        for choice in choices:  # True is not 1, but an environment value is text
            if raw == choice and isinstance(raw, bool) == isinstance(choice, bool):
                return choice
        words = ", ".join(repr(c) for c in choices)
        raise _fail(problems, loc, "literal_error", f"must be one of {words}", raw)
    if origin is list:
        if not isinstance(raw, list):
            raise _fail(problems, loc, "list_type", "must be a list, like [a, b]", raw)
        (item,) = get_args(annotation)
        out, failed = [], False
        for index, element in enumerate(raw):
            try:
                out.append(_value(item, element, (*loc, index), problems))
            except _Invalid:
                failed = True
        if failed:
            raise _Invalid()
        return out
    if origin is dict:
        if not isinstance(raw, dict):
            raise _fail(problems, loc, "mapping_type", "must be a mapping (key: value)", raw)
        _, item = get_args(annotation)
        result, failed = {}, False
        for name, element in raw.items():
            if not isinstance(name, str):
                problems.append(Problem((*loc, name), "string_type", "a key must be text", name))
                failed = True
                continue
            try:
                result[name] = _value(item, element, (*loc, name), problems)
            except _Invalid:
                failed = True
        if failed:
            raise _Invalid()
        return result
    if annotation is Any:
        return raw
    if isinstance(annotation, type) and issubclass(annotation, Spec):
        return _spec(annotation, raw, loc, problems)
    return _scalar(annotation, raw, loc, problems)


def _scalar(annotation: Any, raw: Any, loc: Loc, problems: list[Problem]) -> Any:
    kind, message = _PLAIN[annotation]
    if annotation is int:
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)  # YAML's 10.0 is the whole number 10
        ok = isinstance(raw, int) and not isinstance(raw, bool)
    elif annotation is float:
        ok = isinstance(raw, int | float) and not isinstance(raw, bool)
    else:
        ok = isinstance(raw, annotation)
    if not ok:
        raise _fail(problems, loc, kind, message, raw)
    return raw


def _bound(item: object, value: Any, loc: Loc, problems: list[Problem]) -> None:
    if isinstance(item, Length) and value is not None:
        unit = "item" if isinstance(value, list) else "character"
        if item.min is not None and len(value) < item.min:
            what = "must not be empty" if item.min == 1 else f"needs at least {item.min} {unit}s"
            raise _fail(problems, loc, "too_short", what, value)
        if item.max is not None and len(value) > item.max:
            raise _fail(problems, loc, "too_long", f"takes at most {item.max} {unit}s", value)
    if isinstance(item, Range) and value is not None:
        if item.ge is not None and value < item.ge:
            raise _fail(problems, loc, "too_small", f"must be at least {item.ge}", value)
        if item.le is not None and value > item.le:
            raise _fail(problems, loc, "too_large", f"must be at most {item.le}", value)


def _flat(meta: list[Any]) -> Iterator[object]:
    for item in meta:
        if isinstance(item, Group):
            yield from _flat(list(item.parts()))
        else:
            yield item


# -- JSON Schema -------------------------------------------------------------------------


class JsonSchema:
    """Builds the JSON Schema of specs, each spec class once under `$defs`.
    `encode_default` turns a field's default into JSON (None: leave it out)."""

    def __init__(self, encode_default: Callable[[Any], Any] | None = None) -> None:
        self.defs: dict[str, Any] = {}
        self.encode_default = encode_default or (lambda value: value)

    def ref(self, cls: type[Spec]) -> dict[str, Any]:
        """A reference to `cls`, its schema added to `defs` on first use."""
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # reserved: a spec may refer to itself
            self.defs[name] = self.object(cls)
        return {"$ref": f"#/$defs/{name}"}

    def object(self, cls: type[Spec]) -> dict[str, Any]:
        """The schema of `cls` itself (not a reference)."""
        schema: dict[str, Any] = {"type": "object", "title": cls.__name__}
        if cls.__doc__:
            schema["description"] = inspect.cleandoc(cls.__doc__)
        properties: dict[str, Any] = {}
        required = []
        annotations = hints(cls)
        for name, field in fields(cls).items():
            prop = self.type(annotations[name])
            doc = field.metadata.get(_DOC)
            if doc:
                prop = {**prop, "description": doc}
            if field.default is not dataclasses.MISSING:
                prop = {**prop, "default": self._default(field.default)}
            elif field.default_factory is dataclasses.MISSING:
                required.append(name)
            properties[name] = prop
        schema["properties"] = properties
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        extra = cls.schema_extra
        if callable(extra):
            extra(schema)
        elif extra:
            schema.update(extra)
        return schema

    def _default(self, value: Any) -> Any:
        if isinstance(value, Spec):
            return {name: self._default(getattr(value, name)) for name in fields(type(value))}
        if isinstance(value, list):
            return [self._default(item) for item in value]
        return self.encode_default(value)

    def type(self, annotation: Any) -> dict[str, Any]:
        """The schema of a field type."""
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *meta = get_args(annotation)
            items = list(_flat(meta))
            given = next((m.schema for m in items if isinstance(m, Schema)), None)
            if given is not None:
                return dict(given)
            accepts = next((m.type for m in items if isinstance(m, Accepts)), base)
            schema = self.type(accepts)
            array = get_origin(base) is list
            for item in items:
                schema = _described_bound(item, schema, array)
            return schema
        if origin in (Union, types.UnionType):
            arms: list[dict[str, Any]] = []
            for arm in get_args(annotation):
                schema = self.type(arm)
                nested = schema.get("anyOf") if list(schema) == ["anyOf"] else None
                arms.extend(nested or [schema])  # (a | b) | None is a | b | None
            return {"anyOf": arms}
        if origin is Literal:
            choices = list(get_args(annotation))
            kind = _JSON_TYPES.get(type(choices[0]))
            if len(choices) == 1:
                return {"const": choices[0], "type": kind} if kind else {"const": choices[0]}
            return {"enum": choices, "type": kind} if kind else {"enum": choices}
        if origin is list:
            return {"type": "array", "items": self.type(get_args(annotation)[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.type(get_args(annotation)[1])}
        if annotation is type(None):
            return {"type": "null"}
        if annotation is Any:
            return {}
        if isinstance(annotation, type) and issubclass(annotation, Spec):
            return self.ref(annotation)
        return {"type": _JSON_TYPES[annotation]}


_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    bool: "boolean",
    float: "number",
    type(None): "null",
}


def _described_bound(item: object, schema: dict[str, Any], array: bool) -> dict[str, Any]:
    if isinstance(item, Length):
        low, high = ("minItems", "maxItems") if array else ("minLength", "maxLength")
        if item.min is not None:
            schema = {**schema, low: item.min}
        if item.max is not None:
            schema = {**schema, high: item.max}
    if isinstance(item, Range):
        if item.ge is not None:
            schema = {**schema, "minimum": item.ge}
        if item.le is not None:
            schema = {**schema, "maximum": item.le}
    return schema
