"""rules.yaml → a validated, frozen RuleSet.

The file's shape is described once, by the specs in `rules_schema.py` (which
also give the published JSON Schema); this module loads the file with places
(`rules_yaml.py`), validates each part against those models, checks what crosses parts
(rule names, channel references, paths), and builds plain frozen values:

    load_rules(path) → RuleSet(channels, rules: (Rule, ...), ...)

where each Rule is the frozen value of its type (`rule_types.py`: StatusRule,
FailedRecordsRule, ...), built from the spec of that type.

Every problem names the file, line, column and key path, and all problems are reported
together in one ConfigError. Loaded rules never carry runtime state.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flowbot import spec as specs
from flowbot.errors import ConfigError
from flowbot.rule_types import RULE_TYPES, Rule
from flowbot.rules_messages import nearest
from flowbot.rules_parts import (
    AepUi,
    Channel,
    Diagnostics,
    Digest,
    Inhibit,
    Monitoring,
    Selector,
    SlackActions,
)
from flowbot.rules_schema import (
    RULE_MODELS,
    ChannelSpec,
    DefaultsSpec,
    MonitoringSpec,
    RulesFile,
    RuleSpec,
    SelectorSpec,
    format_duration,
    parse_duration,
    parse_ratio,
)
from flowbot.rules_yaml import Located, Path_, format_path, parse_yaml, read_text

__all__ = [
    "AepUi",
    "Channel",
    "Diagnostics",
    "Digest",
    "Inhibit",
    "SlackActions",
    "Monitoring",
    "Rule",
    "RuleSet",
    "Selector",
    "load_rules",
    "parse_duration",
    "parse_ratio",
    "ruleset_json_schema",
]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A loaded rules.yaml. `rules` holds enabled and disabled rules, in file order."""

    source: Path
    sandboxes: tuple[str, ...] = ("prod",)
    poll_every: timedelta = timedelta(minutes=5)
    lookback: timedelta = timedelta(hours=24)
    group_at: int = 10
    timezone: str = "UTC"
    retention: timedelta = timedelta(days=30)
    templates: Path | None = None
    monitoring: Monitoring = Monitoring()
    channels: Mapping[str, Channel] = field(default_factory=lambda: MappingProxyType({}))
    rules: tuple[Rule, ...] = ()
    warnings: tuple[str, ...] = ()
    late_arrival: timedelta = timedelta(hours=1)
    aep_ui: AepUi | None = None
    diagnostics: Diagnostics = Diagnostics()
    inhibit: tuple[Inhibit, ...] = ()
    slack_actions: SlackActions = SlackActions()
    digest: Digest | None = None

    def rule(self, name: str) -> Rule | None:
        """The rule with this name, or None."""
        return next((r for r in self.rules if r.name == name), None)


def ruleset_json_schema() -> dict[str, Any]:
    """The JSON Schema of rules.yaml (draft 2020-12), for editors."""
    from flowbot.rules_jsonschema import rules_file_json_schema

    return rules_file_json_schema()


def load_rules(path: str | Path, environ: Mapping[str, str] | None = None) -> RuleSet:
    """Read, validate and build the rules file at `path`.

    `environ` gives the variables for `${NAME}` (default: os.environ). Raises
    ConfigError listing every problem, each with file:line:col and key path.
    """
    source = Path(path)
    shown = str(path)
    text = read_text(source, shown)
    located, problems = parse_yaml(text, shown, os.environ if environ is None else environ)
    if not isinstance(located.data, dict):
        kind = "a list" if isinstance(located.data, list) else f"'{located.data}'"
        raise ConfigError(
            f"{shown}:1:1: the file must be a mapping of keys (sandboxes, channels, rules, ...), "
            f"not {kind}"
        )
    builder = _Builder(located, source.resolve().parent)
    builder.problems.extend(problems)
    ruleset = builder.build(source)
    if builder.problems:
        count = len(builder.problems)
        if count == 1:
            raise ConfigError(builder.problems[0], problems=builder.problems)
        raise ConfigError(f"{shown}: {count} problems", problems=builder.problems)
    assert ruleset is not None
    return ruleset


class _Builder:
    """Validates the parts of one located document and collects every problem."""

    def __init__(self, located: Located, base: Path) -> None:
        self.located = located
        self.base = base
        self.problems: list[str] = []
        self.warnings: list[str] = []
        data = located.data if isinstance(located.data, dict) else {}
        channels = data.get("channels")
        self.declared = set(channels) if isinstance(channels, dict) else set()
        rules = data.get("rules")
        self.declared_rules = (
            {
                r["name"]
                for r in rules or ()
                if isinstance(r, dict) and isinstance(r.get("name"), str)
            }
            if isinstance(rules, list)
            else set()
        )

    def at(self, path: Path_) -> str:
        return self.located.where(path)

    def problem(self, path: Path_, message: str) -> None:
        self.problems.append(f"{format_path(path)}: {message} ({self.at(path)})")

    def validate(self, model: type[specs.Spec], data: Any, path: Path_) -> Any:
        """`model` checked from `data`, or None after recording its problems."""
        value, errors = specs.check(model, data)
        # A misspelt key also leaves its right spelling missing: say it once.
        meant = {
            (*e.loc[:-1], hint)
            for e in errors
            if e.kind == "unknown_key"
            for hint in nearest(str(e.loc[-1]), specs.field_names(model, e.loc[:-1]))
        }
        for error in errors:
            if error.kind == "missing" and error.loc in meant:
                continue
            self.problems.append(self.describe(model, error, path))
        return value

    def describe(self, model: type[specs.Spec], error: specs.Problem, path: Path_) -> str:
        loc = (*path, *error.loc)
        kind = error.kind
        given = error.given
        if kind == "unknown_key":
            key = loc[-1]
            parent = loc[:-1]
            allowed = specs.field_names(model, error.loc[:-1])
            hint = nearest(str(key), allowed)
            where = format_path(parent)
            text = f"unknown key '{key}' in {where} ({self.at(loc)})"
            if hint:
                return f"{text}; did you mean '{hint[0]}'?"
            return f"{text}; expected one of: {', '.join(allowed)}"
        if kind == "missing":
            return f"missing key '{loc[-1]}' in {format_path(loc[:-1])} ({self.at(loc[:-1])})"
        if kind == "list_type" and isinstance(given, str):
            items = ", ".join(p.strip() for p in given.split(",") if p.strip())
            return (
                f"{format_path(loc)}: must be a list, like [{items or 'a, b'}]; "
                f"a single value is written [{items or 'a'}] too ({self.at(loc)})"
            )
        message = error.message
        if self._is_secretive(loc) and isinstance(given, str) and given and given in message:
            message = message.replace(repr(given), "(a value from the environment)")
            message = message.replace(given, "(a value from the environment)")
        if given is not None and not self._is_secretive(loc) and kind != "value_error":
            shown = repr(given)
            if len(shown) <= 60 and not isinstance(given, dict | list):
                message = f"{message}, got {shown}"
        if kind == "string_type" and isinstance(given, bool):
            message += ' (YAML reads yes/no/on/off as true/false: write it in quotes, "off")'
        return f"{format_path(loc)}: {message} ({self.at(loc)})"

    def _is_secretive(self, loc: Path_) -> bool:
        return any(loc[: len(p)] == p for p in self.located.from_env)

    # -- building --------------------------------------------------------------------

    def build(self, source: Path) -> RuleSet | None:
        data = self.located.data
        top = self.validate(RulesFile, data, ())
        channels = self.build_channels(data.get("channels"))
        defaults = self.part(DefaultsSpec, data, "defaults")
        monitoring_spec = self.part(MonitoringSpec, data, "monitoring")
        default_channels = tuple(defaults.channels) if defaults and defaults.channels else ()
        self.check_channel_names(default_channels, ("defaults", "channels"), channels)
        rules = self.build_rules(data.get("rules"), defaults, channels)
        if top is None:
            return None
        monitoring = Monitoring()
        if monitoring_spec is not None:
            monitoring = Monitoring(
                channels=tuple(monitoring_spec.channels),
                after=monitoring_spec.after,
                heartbeat_url=monitoring_spec.heartbeat_url,
            )
        self.check_channel_names(monitoring.channels, ("monitoring", "channels"), channels)
        digest = None
        if top.digest is not None:
            digest = Digest(top.digest.cron, top.digest.timezone, tuple(top.digest.channels))
            self.check_channel_names(digest.channels, ("digest", "channels"), channels)
        inhibit = self.build_inhibit(top.inhibit, rules)
        self.check_top(top)
        used = {c for r in rules for c in r.channels} | set(monitoring.channels)
        used |= set(digest.channels) if digest else set()
        for name in channels:
            if name not in used:
                self.warnings.append(
                    f"channels.{name}: defined but no rule sends to it ({self.at(('channels', name))})"
                )
        return RuleSet(
            source=source,
            sandboxes=tuple(top.sandboxes),
            poll_every=top.poll_every,
            lookback=top.lookback,
            group_at=top.group_at,
            timezone=top.timezone,
            retention=top.retention,
            templates=self.directory(top.templates, ("templates",)),
            monitoring=monitoring,
            channels=MappingProxyType(channels),
            rules=tuple(rules),
            warnings=tuple(self.warnings),
            late_arrival=top.late_arrival,
            aep_ui=AepUi(top.aep_ui.org) if top.aep_ui else None,
            diagnostics=Diagnostics(
                enabled=top.diagnostics.enabled,
                show_values=top.diagnostics.show_values,
                budget=top.diagnostics.budget,
            ),
            inhibit=inhibit,
            slack_actions=SlackActions(
                tuple(top.slack_actions.allow), tuple(top.slack_actions.retry)
            ),
            digest=digest,
        )

    def build_inhibit(self, specs: Any, rules: list[Rule]) -> tuple[Inhibit, ...]:
        """The inhibit rules, each naming existing rules and never its own source."""
        names = [r.name for r in rules]
        declared = set(names) | self.declared_rules
        out = []
        for index, spec in enumerate(specs):
            path: Path_ = ("inhibit", index)
            for key, name in [("source", spec.source)] + [
                (("target", i), n) for i, n in enumerate(spec.target)
            ]:
                where = (*path, *(key if isinstance(key, tuple) else (key,)))
                if name not in declared:
                    hint = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
                    suffix = f"; did you mean '{hint[0]}'?" if hint else ""
                    self.problem(where, f"no rule named '{name}'{suffix}")
            if spec.source in spec.target:
                self.problem(path, f"rule '{spec.source}' cannot inhibit itself")
            out.append(Inhibit(spec.source, tuple(spec.target)))
        return tuple(out)

    def part(self, model: type[specs.Spec], data: dict[str, Any], key: str) -> Any:
        """The optional top-level mapping `key` validated on its own, or None."""
        if data.get(key) is None:
            return None
        return self.validate(model, data[key], (key,))

    def check_top(self, top: RulesFile) -> None:
        if top.poll_every < timedelta(minutes=1):
            self.warnings.append(
                f"poll_every: {_show(top.poll_every)} is below a minute; each cycle costs "
                f"API requests, fine for tests but rarely in production ({self.at(('poll_every',))})"
            )
        if top.lookback < top.poll_every:
            self.warnings.append(
                f"lookback: {_show(top.lookback)} is shorter than poll_every "
                f"({_show(top.poll_every)}); runs may be missed ({self.at(('lookback',))})"
            )
        if not top.rules:
            self.warnings.append(
                f"rules: the list is empty, nothing will alert ({self.at(('rules',))})"
            )

    def build_channels(self, raw: Any) -> dict[str, Channel]:
        channels: dict[str, Channel] = {}
        if not isinstance(raw, dict):
            return channels  # RulesFile reports the wrong type
        for name, spec_data in raw.items():
            path: Path_ = ("channels", name)
            spec = self.validate(ChannelSpec, spec_data, path)
            if spec is None:
                continue
            channels[str(name)] = spec.channel(str(name), self.base)
        return channels

    def check_channel_names(
        self, names: tuple[str, ...], path: Path_, channels: Mapping[str, Channel]
    ) -> None:
        for index, name in enumerate(names):
            if name not in channels and name not in self.declared:
                hint = difflib.get_close_matches(name, list(channels), n=1, cutoff=0.6)
                defined = ", ".join(channels) or "none"
                suffix = f"; did you mean '{hint[0]}'?" if hint else f"; defined: {defined}"
                self.problems.append(
                    f"{format_path((*path, index))}: channel '{name}' is not defined under "
                    f"channels ({self.at((*path, index))}){suffix}"
                )

    def build_rules(self, raw: Any, defaults: Any, channels: Mapping[str, Channel]) -> list[Rule]:
        if not isinstance(raw, list):
            return []
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for index, data in enumerate(raw):
            path: Path_ = ("rules", index)
            rule = self.build_rule(data, path, defaults, channels)
            if rule is None:
                continue
            if rule.name in seen:
                self.problems.append(
                    f"{format_path((*path, 'name'))}: duplicate rule name '{rule.name}', "
                    f"also used by rules[{seen[rule.name]}] ({self.at((*path, 'name'))})"
                )
                continue
            seen[rule.name] = index
            rules.append(rule)
        return rules

    def build_rule(
        self, data: Any, path: Path_, defaults: Any, channels: Mapping[str, Channel]
    ) -> Rule | None:
        if not isinstance(data, dict):
            self.problems.append(
                f"{format_path(path)}: a rule must be a mapping with name and type "
                f"({self.at(path)})"
            )
            return None
        kind = data.get("type")
        if kind is None:
            name = data.get("name")
            label = f" '{name}'" if isinstance(name, str) else ""
            self.problems.append(
                f"missing key 'type' in {format_path(path)}{label} ({self.at(path)}); "
                f"one of: {', '.join(RULE_MODELS)}"
            )
            return None
        if (*path, "type") in self.located.from_env:
            self.problems.append(
                f"{format_path((*path, 'type'))}: a rule's type is written out, not taken from "
                f"the environment ({self.at((*path, 'type'))})"
            )
            return None
        if kind not in RULE_MODELS:
            hint = difflib.get_close_matches(str(kind), list(RULE_MODELS), n=1, cutoff=0.6)
            suffix = (
                f"; did you mean '{hint[0]}'?" if hint else f"; one of: {', '.join(RULE_MODELS)}"
            )
            self.problems.append(
                f"{format_path((*path, 'type'))}: unknown rule type '{kind}' "
                f"({self.at((*path, 'type'))}){suffix}"
            )
            return None
        spec: RuleSpec | None = self.validate(RULE_MODELS[kind], data, path)
        if spec is None:
            return None
        names = tuple(spec.channels) if spec.channels is not None else None
        if names is None and defaults is not None and defaults.channels is not None:
            names = tuple(defaults.channels)
        broken_defaults = defaults is None and self.located.data.get("defaults") is not None
        if not names and not broken_defaults:
            self.problems.append(
                f"{format_path(path)}: rule '{spec.name}' sends to no channel; give it "
                f"channels: [...] or set defaults.channels ({self.at(path)})"
            )
            names = ()
        elif spec.channels is not None:
            self.check_channel_names(names or (), (*path, "channels"), channels)
        names = names or ()
        fields = spec.rule_fields()
        for key in ("severity", "repeat_after", "send_resolved"):
            if fields.get(key) is None:
                fields[key] = getattr(defaults, key, None) if defaults else None
            if fields.get(key) is None:
                fields.pop(key)
        cls = RULE_TYPES[spec.type]
        if spec.actions and not cls.is_run_level:
            self.warnings.append(
                f"{format_path((*path, 'actions'))}: a {spec.type} rule has no run to act on; "
                f"its buttons will not show ({self.at((*path, 'actions'))})"
            )
        fields.pop("type")
        template = self.directory(spec.template, (*path, "template"))
        return cls(
            flows=_selector(spec.flows),
            channels=names,
            template=template,
            **fields,
        )

    def directory(self, value: str | None, path: Path_) -> Path | None:
        if value is None:
            return None
        resolved = (self.base / value).resolve()
        if not resolved.is_dir():
            self.problems.append(
                f"{format_path(path)}: template directory '{value}' does not exist "
                f"(looked for {resolved}) ({self.at(path)})"
            )
        return resolved


def _selector(spec: SelectorSpec | None) -> Selector:
    if spec is None:
        return Selector()
    return Selector(ids=tuple(spec.id), names=tuple(spec.name), sandboxes=tuple(spec.sandbox))


def _show(delta: timedelta) -> str:
    return format_duration(delta)
