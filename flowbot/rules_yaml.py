"""YAML text → plain Python values, with the file, line and column of every key.

`rules.yaml` is edited by hand, so every problem must point at a place. PyYAML's
composer gives us a node tree with marks; we walk it ourselves instead of letting
PyYAML construct objects, which lets us:

- refuse duplicate keys (PyYAML silently keeps the last one),
- bound the work an alias bomb ("billion laughs") can cause,
- expand `${NAME}` from the environment in string values, remembering which values
  came from the environment so that no message ever echoes them,
- record where each key path (`("rules", 2, "above")`) sits in the file.

Everything here is pure apart from `read_text`, which reads the file with a size cap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowbot.errors import ConfigError

MAX_BYTES = 1_000_000  # a rules file is a few kilobytes; a megabyte is surely a mistake
MAX_ALIASES = 100  # anchors are handy for sharing a selector; a bomb needs many more
MAX_NODES = 100_000  # values after alias expansion

Path_ = tuple[str | int, ...]

ENV_REFERENCE = re.compile(r"\$\{([^}]*)\}")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvValue(str):
    """The text of a scalar written as one whole `${NAME}`: the only text that may
    stand for a number or a boolean (`group_at: ${GROUP_AT}`)."""

    __slots__ = ()


@dataclass
class Located:
    """A YAML document as plain values, plus where each key path starts.

    `places` maps a key path to (line, column), 1-based, of its value;
    `key_places` maps it to the key itself (for mapping entries). `from_env` holds
    the paths whose text came (at least partly) from `${NAME}` expansion.
    """

    data: Any
    file: str
    places: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_places: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    from_env: set[Path_] = field(default_factory=set)

    def where(self, path: Path_) -> str:
        """`file:line:col` of the key at `path` (or of the nearest enclosing one)."""
        probe = tuple(path)
        while True:
            place = self.key_places.get(probe) or self.places.get(probe)
            if place or not probe:
                break
            probe = probe[:-1]
        line, col = place or (1, 1)
        return f"{self.file}:{line}:{col}"


def format_path(path: Path_) -> str:
    """('rules', 2, 'above') → 'rules[2].above'; () → 'the top level'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "the top level"


def read_text(path: Path, shown: str) -> str:
    """The file's text, refusing files that are missing, huge or not UTF-8."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(
                f"{shown}: the file is {size:,} bytes; a rules file over {MAX_BYTES:,} bytes "
                "is refused (is this the right file?)"
            )
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a rules file") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{shown}: a rules file over {MAX_BYTES:,} bytes is refused")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{shown}: not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})"
        ) from None


def find_tabs(text: str, shown: str) -> list[str]:
    """Problems for tabs in indentation, which YAML forbids (one per line, at most 5)."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            col = indent.index("\t") + 1
            problems.append(
                f"{shown}:{number}:{col}: a tab in the indentation; YAML indents with spaces only"
            )
    if len(problems) > 5:
        problems = [*problems[:5], f"... and {len(problems) - 5} more lines indented with tabs"]
    return problems


def parse_yaml(text: str, shown: str, environ: Mapping[str, str]) -> tuple[Located, list[str]]:
    """Compose and walk one YAML document. Raises ConfigError for unreadable YAML;
    returns the located values and the problems found while walking (duplicate keys,
    undefined environment variables)."""
    tabs = find_tabs(text, shown)
    if tabs:
        raise ConfigError(tabs[0], problems=tabs)
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise ConfigError(f"{shown}: the file is empty; see the example rules.yaml")
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character: Python's reader refuses
        raise ConfigError(_reader_message(exc, text, shown)) from None
    try:
        node = loader.get_single_node()
        if node is not None and _count_aliases(node) > MAX_ALIASES:
            raise _TooManyAliases()
    except yaml.reader.ReaderError as exc:  # the same, found by libyaml while parsing
        raise ConfigError(_reader_message(exc, text, shown, in_bytes=True)) from None
    except _TooManyAliases:
        raise ConfigError(
            f"{shown}: more than {MAX_ALIASES} YAML aliases (*name); refused, "
            "as a guard against alias bombs"
        ) from None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_message(exc, shown)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: not valid YAML ({exc})") from None
    finally:
        loader.dispose()
    if node is None:
        raise ConfigError(f"{shown}: the file is empty; see the example rules.yaml")
    walker = _Walker(loader, shown, environ)
    located = Located(data=None, file=shown)
    walker.located = located
    located.data = walker.walk(node, ())
    return located, walker.problems


def _reader_message(
    exc: yaml.reader.ReaderError, text: str, shown: str, in_bytes: bool = False
) -> str:
    """The place of a refused character: Python's reader counts characters, libyaml
    counts the bytes of the UTF-8 text (`in_bytes`)."""
    if in_bytes:
        before = text.encode("utf-8")[: exc.position].decode("utf-8", errors="ignore")
    else:
        before = text[: exc.position]
    where = f"{shown}:{before.count(chr(10)) + 1}:{len(before.rsplit(chr(10), 1)[-1]) + 1}"
    return f"{where}: invalid YAML: {exc.reason}"


def _yaml_message(exc: yaml.MarkedYAMLError, shown: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
    problem = exc.problem or exc.context or "invalid YAML"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    return f"{where}: invalid YAML: {problem}{context}"


class _TooManyAliases(Exception):
    pass


# libyaml's parser when PyYAML has it (it composes a rules file in a millisecond, the
# Python one in tens), else PyYAML's own; both share one node for an anchor and its
# aliases, so composing is linear and only walking expands aliases (MAX_NODES).
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _count_aliases(root: yaml.Node) -> int:
    """How many aliases the composed document holds: every edge to a node beyond its
    first is one (a tree has one edge per node but the root)."""
    seen = {id(root)}
    stack = [root]
    edges = 0
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            continue
        for child in children:
            edges += 1
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return edges - (len(seen) - 1)


class _Walker:
    """Turns composed nodes into plain values, recording places and problems."""

    def __init__(self, loader: yaml.SafeLoader, shown: str, environ: Mapping[str, str]) -> None:
        self.loader = loader
        self.shown = shown
        self.environ = environ
        self.problems: list[str] = []
        self.nodes = 0
        self.located: Located

    def walk(self, node: yaml.Node, path: Path_) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ConfigError(
                f"{self.shown}: the document expands to more than {MAX_NODES:,} values "
                "(an alias bomb?); refused"
            )
        self.located.places.setdefault(path, _place(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            self.problems.append(_yaml_message(exc, self.shown))
            return {}
        merged = len(node.value) - own  # flatten_mapping puts merged entries first
        out: dict[Any, Any] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _place(key_node)
                self.problems.append(
                    f"a key must be a plain word, not a list or mapping, in "
                    f"{format_path(path)} ({self.shown}:{line}:{col})"
                )
                continue
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key_node.value)
            child = (*path, key)
            if key in out and index >= merged and child in self.located.key_places:
                line, col = _place(key_node)
                first_line, _ = self.located.key_places[child]
                self.problems.append(
                    f"duplicate key '{key}' in {format_path(path)} ({self.shown}:{line}:{col}); "
                    f"it is already set on line {first_line}"
                )
                continue
            if index >= merged:
                self.located.key_places[child] = _place(key_node)
            self.located.places.pop(child, None)
            out[key] = self.walk(value_node, child)
        return out

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, str) and "${" in value:
            value = self._expand(value, node, path)
        return value

    def _expand(self, text: str, node: yaml.Node, path: Path_) -> str:
        line, col = _place(node)

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if not ENV_NAME.match(name):
                self.problems.append(
                    f"'${{{name}}}' in {format_path(path)} ({self.shown}:{line}:{col}) is not a "
                    "valid environment variable name"
                )
                return ""
            if name not in self.environ:
                self.problems.append(
                    f"environment variable {name} is not set; {format_path(path)} uses it "
                    f"({self.shown}:{line}:{col})"
                )
                return ""
            return self.environ[name]

        self.located.from_env.add(path)
        expanded = ENV_REFERENCE.sub(substitute, text)
        whole = ENV_REFERENCE.fullmatch(text)
        return EnvValue(expanded) if whole and ENV_NAME.match(whole.group(1)) else expanded


def _place(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)
