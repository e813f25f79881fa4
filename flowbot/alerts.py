"""The alert lifecycle, pure: (firing alerts, evaluation, silences, now) → changes.

An alert is identified by (rule, flow). It fires on the first finding, repeats at most
every `repeat_after` while findings keep coming (a new failed run, a flow still missing),
and resolves when evaluation reports the pair clear. Silences mute sending, never
evaluation: a muted alert still fires, counts and resolves, and is marked muted. A
muted alert that was never notified is announced as firing once its silence ends.
Many flows firing one rule with one error code in a cycle become one grouped message.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal, Protocol

from flowbot.models import Evaluation, Finding, Flow, Notice, Run
from flowbot.store import AlertRow, Silence

if TYPE_CHECKING:
    from flowbot.rule_types import RuleBase
    from flowbot.rules_parts import Inhibit


class RuleSetLike(Protocol):
    @property
    def group_at(self) -> int: ...
    @property
    def inhibit(self) -> tuple[Inhibit, ...]: ...

    def rule(self, name: str) -> RuleBase | None: ...


@dataclass(frozen=True, slots=True)
class Change:
    """One alert state change, and the notice to send for it (None: send nothing).

    `alert_id` is None when the change opens a new alert. "recover" records a new
    alert that is already resolved (a match superseded by a good run): no message.
    """

    action: Literal["open", "update", "resolve", "recover"]
    rule: str
    flow: Flow
    alert_id: int | None
    notice: Notice | None
    muted: bool
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.flow.id)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to route to the channels of its notices' rules.

    Either one flow's incident: every rule that fires, repeats or resolves for that
    flow in this cycle, highest severity first (`rule` is the first, the lead); or a
    storm: one rule on many flows ("grouped" when firing, "resolved" when resolving).
    `thread_key` names the alert whose thread the message follows (an alert already
    announced, so that new matches join the incident's thread); None: the first key.
    """

    rule: str
    event: Literal["firing", "repeat", "resolved", "grouped"]
    notices: tuple[Notice, ...]
    keys: tuple[tuple[str, str], ...]
    thread_key: tuple[str, str] | None = None

    @property
    def is_storm(self) -> bool:
        return len({n.flow.id for n in self.notices}) > 1


def is_silenced(silences: Sequence[Silence], rule: str, flow: Flow) -> bool:
    """True when an active silence covers (rule, flow): rule name or glob, flow id or
    flow-name glob; a silence that names only one of them covers every value of the other."""
    for s in silences:
        if s.rule and not fnmatchcase(rule, s.rule):
            continue
        if s.flow and not (s.flow == flow.id or (flow.name and fnmatchcase(flow.name, s.flow))):
            continue
        return True
    return False


def _newest(findings: Sequence[Finding]) -> Finding:
    def started(f: Finding) -> float:
        at = f.run.started_at if f.run and f.run.started_at else None
        return at.timestamp() if at else 0.0

    return max(findings, key=started)


def _newest_finished(runs: Sequence[Run]) -> Run | None:
    return next((r for r in runs if r.is_finished), None)


def _enabled_rule(ruleset: RuleSetLike, name: str) -> RuleBase | None:
    """The rule, or None when a reload removed or disabled it."""
    rule = ruleset.rule(name)
    return rule if rule is not None and rule.enabled else None


def inhibitions(ruleset: RuleSetLike) -> list[tuple[str, tuple[str, ...]]]:
    """`inhibit:` as (source rule, target rules) pairs; none when the rules have none."""
    return [(item.source, tuple(item.target)) for item in ruleset.inhibit]


def inhibited(
    ruleset: RuleSetLike, found: Collection[tuple[str, str]], firing: Collection[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The (rule, flow) pairs muted by `inhibit:`: a target rule on a flow where a source
    rule is found this cycle or still firing (as Alertmanager's inhibit rules).
    A pair never inhibits itself."""
    active = set(found) | set(firing)
    flows_by_rule: dict[str, set[str]] = {}
    for rule, flow_id in active:
        flows_by_rule.setdefault(rule, set()).add(flow_id)
    muted: set[tuple[str, str]] = set()
    for source, targets in inhibitions(ruleset):
        for flow_id in flows_by_rule.get(source, ()):
            muted.update((t, flow_id) for t in targets if t != source)
    return muted


def decide(
    ruleset: RuleSetLike,
    firing: Sequence[AlertRow],
    evaluation: Evaluation,
    silences: Sequence[Silence],
    flows: Mapping[str, Flow],
    history: Mapping[str, Sequence[Run]],
    now: datetime,
) -> list[Change]:
    """Turn one cycle's evaluation into alert changes. Pure: nothing is written here.

    Found pairs open or update their alert; firing pairs that evaluation says are
    clear (or whose rule is gone) resolve; matches already superseded by a good run
    are recorded as recovered; everything else is left alone.
    """
    current = {(a.rule, a.flow_id): a for a in firing}
    found: dict[tuple[str, str], list[Finding]] = {}
    for finding in evaluation.findings:
        found.setdefault(finding.key, []).append(finding)
    leaving = {k for k in current if k in evaluation.clear and k not in found}
    mute = inhibited(ruleset, found, set(current) - leaving)
    changes: list[Change] = []
    for key, findings in found.items():
        rule = _enabled_rule(ruleset, key[0])
        if rule is None:
            continue
        latest = _newest(findings)
        muted = key in mute or is_silenced(silences, rule.name, latest.flow)
        alert = current.get(key)
        if alert is None:
            changes.append(open_change(rule, latest, len(findings), muted, now))
        else:
            changes.append(update_change(rule, alert, latest, len(findings), muted, now))
    for key, alert in current.items():
        if key not in found:
            change = resolve_change(ruleset, alert, evaluation, silences, flows, history, now)
            if change is not None:
                changes.append(change)
    changes.extend(recover_changes(ruleset, evaluation, current, found, now))
    return changes


def _fields(latest: Finding, muted: bool, now: datetime, count: int) -> dict[str, Any]:
    return {
        "last_seen": now,
        "last_run_id": latest.run.id if latest.run else None,
        "reason": latest.reason,
        "flow_name": latest.flow.name,
        "muted": muted,
        "count": count,
    }


def open_change(rule: RuleBase, latest: Finding, found: int, muted: bool, now: datetime) -> Change:
    """A new alert fires: announced unless muted (by a silence or an inhibiting rule)."""
    notice = None if muted else _notice("firing", rule, latest.flow, latest, now, found)
    fields = _fields(latest, muted, now, found)
    if notice:
        fields["last_notified"] = now
    return Change("open", rule.name, latest.flow, None, notice, muted, fields)


def repeat_event(
    rule: RuleBase, alert: AlertRow, muted: bool, now: datetime
) -> Literal["firing", "repeat"] | None:
    """What a new finding of a firing alert sends: nothing while muted; "firing" when it
    was never announced (muted until now); "repeat" once `repeat_after` has passed."""
    if muted:
        return None
    if alert.last_notified is None:
        return "firing"
    if now - alert.last_notified >= rule.repeat_after:
        return "repeat"
    return None


def update_change(
    rule: RuleBase, alert: AlertRow, latest: Finding, found: int, muted: bool, now: datetime
) -> Change:
    """A firing alert found again: counted, and repeated when due."""
    count = alert.count + found
    event = repeat_event(rule, alert, muted, now)
    notice = _notice(event, rule, latest.flow, latest, alert.first_seen, count) if event else None
    fields = _fields(latest, muted, now, count)
    if notice:
        fields["last_notified"] = now
    return Change("update", rule.name, latest.flow, alert.id, notice, muted, fields)


def resolve_change(
    ruleset: RuleSetLike,
    alert: AlertRow,
    evaluation: Evaluation,
    silences: Sequence[Silence],
    flows: Mapping[str, Flow],
    history: Mapping[str, Sequence[Run]],
    now: datetime,
) -> Change | None:
    """A firing alert not found this cycle: resolved when its flow is clear (announced
    when it was announced, `send_resolved` holds and no silence covers it), quietly
    when its rule is gone; left alone when evaluation could not tell."""
    key = (alert.rule, alert.flow_id)
    rule = _enabled_rule(ruleset, alert.rule)
    flow = flows.get(alert.flow_id) or Flow(
        id=alert.flow_id, name=alert.flow_name, sandbox=alert.sandbox
    )
    fields = {"state": "resolved", "resolved": now}
    if rule is None:
        return Change("resolve", alert.rule, flow, alert.id, None, True, fields)
    if key not in evaluation.clear:
        return None
    muted = is_silenced(silences, rule.name, flow)
    notice = None
    if rule.send_resolved and alert.last_notified is not None and not muted:
        notice = replace(
            _notice("resolved", rule, flow, None, alert.first_seen, alert.count),
            resolved_by=_newest_finished(history.get(alert.flow_id, ())),
            sandbox=flow.sandbox or alert.sandbox,
        )
    return Change("resolve", rule.name, flow, alert.id, notice, muted, fields)


def recover_changes(
    ruleset: RuleSetLike,
    evaluation: Evaluation,
    current: Mapping[tuple[str, str], AlertRow],
    found: Mapping[tuple[str, str], Sequence[Finding]],
    now: datetime,
) -> list[Change]:
    """Matches a later good run already superseded become one alert row per pair,
    recorded as resolved without a message (so `history` shows them), unless the pair
    is firing or found, whose own alert tells the story."""
    by_key: dict[tuple[str, str], list[Finding]] = {}
    for finding in evaluation.recovered:
        if finding.key not in current and finding.key not in found:
            by_key.setdefault(finding.key, []).append(finding)
    changes = []
    for key, findings in by_key.items():
        rule = _enabled_rule(ruleset, key[0])
        if rule is None:
            continue
        latest = _newest(findings)
        good = latest.superseded_by
        reason = f"{latest.reason}; already recovered by run {good.id if good else '?'}"
        fields = {**_fields(latest, False, now, len(findings)), "reason": reason}
        fields.update(state="resolved", resolved=now)
        changes.append(Change("recover", rule.name, latest.flow, None, None, False, fields))
    return changes


def _notice(
    event: Literal["firing", "repeat", "resolved"],
    rule: RuleBase,
    flow: Flow,
    finding: Finding | None,
    first_seen: datetime,
    count: int,
) -> Notice:
    run_sandbox = finding.run.sandbox if finding and finding.run else ""
    return Notice(
        event=event,
        rule=rule.name,
        rule_type=rule.type,
        severity=rule.severity,
        flow=flow,
        finding=finding,
        first_seen_at=first_seen,
        owner=rule.owner,
        count=count,
        sandbox=flow.sandbox or run_sandbox,
        runbook=getattr(rule, "runbook", None),
    )


SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def _leading_code(notice: Notice) -> str:
    errors = notice.finding.errors if notice.finding else ()
    return errors[0].code if errors else ""


def plan(changes: Sequence[Change], group_at: int) -> list[Outgoing]:
    """The messages to send for this cycle's changes, in order:

    - storms: `group_at` (at least 2) or more flows firing one rule with the same
      leading error code become one "grouped" message (a different failure is never
      buried in a storm);
    - every other firing or repeat joins its flow's incident: one message per flow,
      highest severity first;
    - resolutions form one item that routing splits by announcement (a storm's, an
      incident's, their own) and, where nothing was announced, by storm or flow.
    """
    noticed = [c for c in changes if c.notice is not None]
    resolving = [c for c in noticed if c.notice and c.notice.event == "resolved"]
    storms, rest = _storms([c for c in noticed if c not in resolving], max(group_at, 2))
    return storms + _incidents(rest) + _resolutions(resolving)


def _resolutions(changes: list[Change]) -> list[Outgoing]:
    """Every resolution of the cycle as one item, highest severity first: routing splits
    it per channel by the message each alert was announced in (see routing.route)."""
    if not changes:
        return []
    items = sorted(
        changes, key=lambda c: SEVERITY_RANK.get(c.notice.severity, 3) if c.notice else 3
    )
    notices = tuple(c.notice for c in items if c.notice)
    return [Outgoing(items[0].rule, "resolved", notices, tuple(c.key for c in items))]


def _storms(changes: list[Change], size: int) -> tuple[list[Outgoing], list[Change]]:
    """Split out the storms; return them and the changes left over."""
    buckets: dict[tuple[str, Literal["grouped"], str], list[Change]] = {}
    for change in changes:
        notice = change.notice
        assert notice is not None
        if notice.event == "firing":
            buckets.setdefault((change.rule, "grouped", _leading_code(notice)), []).append(change)
    storms: list[Outgoing] = []
    taken: set[int] = set()
    for (rule, event, _code), items in buckets.items():
        if len(items) < size:
            continue
        notices = tuple(c.notice for c in items if c.notice)
        storms.append(Outgoing(rule, event, notices, tuple(c.key for c in items)))
        taken.update(id(c) for c in items)
    return storms, [c for c in changes if id(c) not in taken]


def _incidents(changes: list[Change]) -> list[Outgoing]:
    """One message per flow for what fires or repeats on it."""
    buckets: dict[str, list[Change]] = {}
    for change in changes:
        buckets.setdefault(change.flow.id, []).append(change)
    out = []
    for items in buckets.values():
        items.sort(key=lambda c: SEVERITY_RANK.get(c.notice.severity, 3) if c.notice else 3)
        notices = tuple(c.notice for c in items if c.notice)
        event: Literal["firing", "repeat"] = (
            "firing" if any(n.event == "firing" for n in notices) else "repeat"
        )
        known = next((c.key for c in items if c.action != "open"), None)
        keys = tuple(c.key for c in items)
        out.append(Outgoing(items[0].rule, event, notices, keys, known))
    return out
