"""The Jinja2 sandbox with bounds, for render.py: what a template builds stays small,
and a message's templates render in bounded time.

- Output: a template's output, and any value it builds (a string, a list, the result of
  a filter, a method call or an operator), stays under MAX_OUTPUT characters; integers
  under MAX_INT_BITS bits. Operations whose result is known in advance (`'x' * n`,
  `a + b`, `n ** m`, `"%999999999d" % 1`, `str.replace`, `join`, `indent`, huge width
  arguments) are refused before they are computed, so they never allocate.
- Time: `within_time` interrupts the rendering thread after RENDER_SECONDS (a watchdog
  raises RenderTimeoutError in it, between bytecodes, which stops a template's loops).

Passing a bound raises a TemplateError (SecurityError or RenderTimeoutError), which
render.py turns into the fallback message and one log line.
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from jinja2 import Template, TemplateRuntimeError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT = 262_144  # characters of a template's output, and of any value it builds
MAX_INT_BITS = 4096
RENDER_SECONDS = 2.0  # all templates of one message

_BIG_NUMBER = re.compile(r"\d{" + str(len(str(MAX_OUTPUT))) + ",}")


class RenderTimeoutError(TemplateRuntimeError):
    """A message's templates took longer than RENDER_SECONDS."""

    def __init__(self) -> None:
        super().__init__(f"rendering took longer than {RENDER_SECONDS:g}s")


def _refuse(what: str) -> SecurityError:
    return SecurityError(f"{what} would pass the template bound ({MAX_OUTPUT:,} characters)")


def _bounded(value: Any) -> Any:
    """`value` when it is within the bounds, else SecurityError."""
    if isinstance(value, (str, bytes, list, tuple, dict)) and len(value) > MAX_OUTPUT:
        raise _refuse("a value")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"an integer above {MAX_INT_BITS} bits")
    return value


def _check_format(text: Any) -> None:
    """A %-format or str.format pattern asking for a huge width or precision is refused."""
    for digits in _BIG_NUMBER.findall(str(text)):
        if int(digits) > MAX_OUTPUT:
            raise _refuse("a format width")


def _check_args(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_OUTPUT:
            raise _refuse(f"an argument of {arg}")


def _check_growth(name: str, value: Any, args: Sequence[Any]) -> None:
    """Refuse replace/join/indent whose result would pass MAX_OUTPUT, before computing it."""
    if name == "replace" and isinstance(value, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        hits = value.count(old) if old else len(value) + 1
        if len(value) + hits * len(new) > MAX_OUTPUT:
            raise _refuse("replace")
    elif name == "join" and hasattr(args[0] if args else None, "__len__"):
        separator, items = (value, args[0]) if isinstance(value, str) else (args[0], value)
        if isinstance(separator, str) and len(separator) * len(items) > MAX_OUTPUT:
            raise _refuse("join")
    elif name == "indent" and isinstance(value, str) and args and isinstance(args[0], str):
        if len(args[0]) * (value.count("\n") + 1) > MAX_OUTPUT:
            raise _refuse("indent")
    elif name in ("format", "format_map"):
        _check_format(value)


def bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    passes = getattr(func, "jinja_pass_arg", None)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = args[1:] if passes is not None else args
        _check_args(values[1:], kwargs)
        if values:
            if name in ("join", "replace", "indent"):
                _check_growth(name, values[0], values[1:])
            elif name == "format":
                _check_format(values[0])
        return _bounded(func(*args, **kwargs))

    return wrapper


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox with bounds on what a template may build (see MAX_OUTPUT)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        sized = (str, list, tuple)
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, sized) and isinstance(times, int):
                    if len(seq) * times > MAX_OUTPUT:
                        raise _refuse("a repetition")
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError(f"an integer above {MAX_INT_BITS} bits")
        elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
            if len(left) + len(right) > MAX_OUTPUT:
                raise _refuse("a concatenation")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and max(left.bit_length(), 1) * right > MAX_INT_BITS:
                raise SecurityError(f"an integer above {MAX_INT_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return _bounded(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_args(args, kwargs)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_growth(getattr(__obj, "__name__", ""), owner, args)
        return _bounded(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_format(obj)  # the sandbox wraps these methods: checked here instead
        return _bounded(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _bounded(super().getitem(obj, argument))


def render_template(template: Template, context: dict[str, Any]) -> str:
    """The template's output, refused once it passes MAX_OUTPUT characters."""
    parts, size = [], 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise _refuse("the output")
        parts.append(chunk)
    return "".join(parts)


def within_time(build: Callable[[], Any], seconds: float = RENDER_SECONDS) -> Any:
    """`build()`, interrupted with RenderTimeoutError after `seconds`: a watchdog raises it
    in this thread (between bytecodes, so a template's loops stop; single huge
    operations are refused beforehand by BoundedSandbox)."""
    thread_id = threading.get_ident()
    guard = threading.Lock()
    running = [True]

    def interrupt() -> None:
        with guard:
            if running[0]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread_id), ctypes.py_object(RenderTimeoutError)
                )

    watchdog = threading.Timer(seconds, interrupt)
    watchdog.daemon = True
    watchdog.start()
    try:
        return build()
    finally:
        with guard:
            running[0] = False
        watchdog.cancel()
