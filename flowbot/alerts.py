"""The alert lifecycle, pure: (firing alerts, evaluation, silences, now) → changes.

An alert is identified by (rule, flow). It fires on the first finding, repeats at most
every `repeat_after` while findings keep coming (a new failed run, a flow still missing),
and resolves when evaluation reports the pair clear. Silences mute sending, never
evaluation: a muted alert still fires, counts and resolves, and is marked muted. A
muted alert that was never notified is announced as firing once its silence ends.
Many flows firing one rule with one error code in a cycle become one grouped message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Literal, Protocol

from flowbot.models import Evaluation, Finding, Flow, Notice, Run
from flowbot.store import AlertRow, Silence


class RuleSetLike(Protocol):
    group_at: int

    def rule(self, name: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Change:
    """One alert state change, and the notice to send for it (None: send nothing).

    `alert_id` is None when the change opens a new alert.
    """

    action: Literal["open", "update", "resolve"]
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
    """A message to route to the rule's channels: one notice, or a group of them."""

    rule: str
    event: Literal["firing", "repeat", "resolved", "grouped"]
    notices: tuple[Notice, ...]
    keys: tuple[tuple[str, str], ...]


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


def decide(
    ruleset: RuleSetLike,
    firing: Sequence[AlertRow],
    evaluation: Evaluation,
    silences: Sequence[Silence],
    flows: Mapping[str, Flow],
    history: Mapping[str, Sequence[Run]],
    now: datetime,
) -> list[Change]:
    """Turn one cycle's evaluation into alert changes. Pure: nothing is written here."""
    current = {(a.rule, a.flow_id): a for a in firing}
    grouped: dict[tuple[str, str], list[Finding]] = {}
    for finding in evaluation.findings:
        grouped.setdefault(finding.key, []).append(finding)

    changes: list[Change] = []
    for key, findings in grouped.items():
        rule = ruleset.rule(key[0])
        if rule is None or not rule.enabled:
            continue
        latest = _newest(findings)
        flow = latest.flow
        muted = is_silenced(silences, rule.name, flow)
        alert = current.get(key)
        common = {
            "last_seen": now,
            "last_run_id": latest.run.id if latest.run else None,
            "reason": latest.reason,
            "flow_name": flow.name,
            "muted": muted,
        }
        if alert is None:
            notice = None if muted else _notice("firing", rule, flow, latest, now, len(findings))
            fields = {**common, "count": len(findings)}
            if notice:
                fields["last_notified"] = now
            changes.append(Change("open", rule.name, flow, None, notice, muted, fields))
            continue
        count = alert.count + len(findings)
        fields = {**common, "count": count}
        event: Literal["firing", "repeat"] | None = None
        if not muted:
            if alert.last_notified is None:
                event = "firing"
            elif now - alert.last_notified >= rule.repeat_after:
                event = "repeat"
        notice = _notice(event, rule, flow, latest, alert.first_seen, count) if event else None
        if notice:
            fields["last_notified"] = now
        changes.append(Change("update", rule.name, flow, alert.id, notice, muted, fields))

    for key, alert in current.items():
        if key in grouped:
            continue
        rule = ruleset.rule(alert.rule)
        flow = flows.get(alert.flow_id) or Flow(
            id=alert.flow_id, name=alert.flow_name, sandbox=alert.sandbox
        )
        fields = {"state": "resolved", "resolved": now}
        if rule is None or not rule.enabled:
            # A rule removed or disabled by a reload resolves its alerts quietly.
            changes.append(Change("resolve", alert.rule, flow, alert.id, None, True, fields))
            continue
        if key not in evaluation.clear:
            continue
        muted = is_silenced(silences, rule.name, flow)
        notice = None
        if rule.send_resolved and alert.last_notified is not None and not muted:
            resolved_by = _newest_finished(history.get(alert.flow_id, ()))
            notice = _notice("resolved", rule, flow, None, alert.first_seen, alert.count)
            notice = replace(
                notice, resolved_by=resolved_by, sandbox=notice.sandbox or alert.sandbox
            )
        changes.append(Change("resolve", rule.name, flow, alert.id, notice, muted, fields))
    return changes


def _notice(
    event: Literal["firing", "repeat", "resolved"],
    rule: Any,
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
    )


def _leading_code(notice: Notice) -> str:
    errors = notice.finding.errors if notice.finding else ()
    return errors[0].code if errors else ""


def plan(changes: Sequence[Change], group_at: int) -> list[Outgoing]:
    """Group the notices to send: `group_at` or more firing (or resolved) notices of one
    rule with the same leading error code in one cycle become one grouped message (a
    storm); the rest go one by one, so a different failure is never buried in a storm."""
    groups: dict[tuple[str, str, str], list[Change]] = {}
    out: list[Outgoing] = []
    for change in changes:
        if change.notice is None:
            continue
        if change.notice.event in ("firing", "resolved"):
            key = (change.rule, change.notice.event, _leading_code(change.notice))
            groups.setdefault(key, []).append(change)
        else:
            out.append(Outgoing(change.rule, "repeat", (change.notice,), (change.key,)))
    for (rule, _event, _code), items in groups.items():
        if len(items) >= max(group_at, 2):
            notices = tuple(c.notice for c in items if c.notice)
            out.append(Outgoing(rule, "grouped", notices, tuple(c.key for c in items)))
        else:
            for c in items:
                assert c.notice is not None
                out.append(Outgoing(rule, c.notice.event, (c.notice,), (c.key,)))  # type: ignore[arg-type]
    return out
