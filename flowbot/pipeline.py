"""One cycle, per sandbox, as ordered stages:

    fetch → store → evaluate → alerts (silence, fire/repeat/resolve, group)
          → route + render → outbox (same transaction as the watermark) → send

`run_cycle` does everything up to the outbox; `outbox.deliver` sends. `check --once`
and the daemon call the same `run_once`. A cycle that cannot read the API changes
nothing but the record of the failure (and, after `monitoring.after`, a meta-alert).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowbot import alerts
from flowbot.errors import FlowAPIError
from flowbot.models import Flow, Message, Run
from flowbot.outbox import Delivery, deliver
from flowbot.settings import Settings, redact
from flowbot.store import Store, Watermark

log = logging.getLogger("flowbot.cycle")

OVERLAP = timedelta(minutes=10)  # re-read this much before the watermark: late arrivals
FLOW_REFRESH = timedelta(hours=1)  # full flow metadata refresh, otherwise only flows that ran
UNFINISHED_HORIZON = timedelta(days=7)  # stop re-reading runs unfinished for longer
FETCH_BUDGET = 300.0  # seconds for all the reads of one sandbox in one cycle
CLOCK_SKEW = timedelta(minutes=5)  # the watermark stays this far behind the API's clock


@dataclass
class Deps:
    """What a cycle needs; built by `build_deps` or by tests pointing at local servers."""

    ruleset: Any  # flowbot.rules.RuleSet
    store: Store
    client_for: Callable[[str], Any]  # sandbox → flowbot.aep.client.FlowClient
    notifiers: Mapping[str, Any]  # channel name → Notifier
    clock: Callable[[], datetime]
    settings: Settings = field(default_factory=Settings)
    step: Callable[[str], None] = lambda name: None  # test hook between stages
    send_budget: float = 60.0


@dataclass
class CycleReport:
    sandbox: str
    ok: bool = True
    error: str | None = None
    runs_read: int = 0
    runs_new: int = 0
    findings: int = 0
    fired: int = 0
    repeated: int = 0
    resolved: int = 0
    muted: int = 0
    queued: int = 0
    api_requests: int = 0
    seconds: float = 0.0


@dataclass
class Fetched:
    flows: list[Flow]
    runs: list[Run]
    api_time: datetime | None = None  # the API's clock (its Date header), when it said


# ------------------------------------------------------------------ stages


def fetch(client: Any, store: Store, mark: Watermark, ruleset: Any, now: datetime) -> Fetched:
    """Read what changed: flows that ran (or all, hourly), runs started since the
    watermark less an overlap, and the runs still unfinished last time; all of it
    within FETCH_BUDGET seconds (past it, a FlowAPIError fails the cycle)."""
    since = (mark.runs_since - OVERLAP) if mark.runs_since else now - ruleset.lookback
    since_ms = int(since.timestamp() * 1000)
    budget = getattr(client, "budget", None)
    with budget(FETCH_BUDGET) if budget is not None else nullcontext():
        if _full_refresh_due(mark, now):
            flows = client.list_flows()
        else:
            flows = client.list_flows(properties=[f"lastRunDetails.startedAtUTC>={since_ms}"])
        runs = client.list_runs(properties=[f"metrics.durationSummary.startedAtUTC>={since_ms}"])
        seen = {r.id for r in runs}
        horizon = now - UNFINISHED_HORIZON
        unfinished = [i for i in store.unfinished_run_ids(mark.sandbox, horizon) if i not in seen]
        if unfinished:
            runs.extend(client.runs_by_ids(unfinished))
    return Fetched(flows, runs, getattr(client, "server_time", None))


def next_watermark(
    previous: datetime | None, now: datetime, api_time: datetime | None, runs: Sequence[Run]
) -> datetime | None:
    """Where the next cycle reads runs from: what the API itself has shown (its Date
    header, else the newest start among `runs`), never past the local clock, less
    CLOCK_SKEW, and never before `previous`. A local clock that jumps ahead cannot
    move it past runs the API has not shown yet; a hostile Date cannot rewind it."""
    shown = api_time or max((r.started_at for r in runs if r.started_at), default=None)
    if shown is None:
        return previous
    mark = min(shown, now) - CLOCK_SKEW
    return mark if previous is None else max(mark, previous)


def route(
    outgoing: Sequence[alerts.Outgoing],
    ruleset: Any,
    alert_ids: Mapping[tuple[str, str], int],
    templates_dir: Path | None,
) -> list[Message]:
    """Each outgoing notice × its rule's channels → a rendered Message."""
    from flowbot.render import render

    messages = []
    for item in outgoing:
        rule = ruleset.rule(item.rule)
        alert_id = alert_ids.get(item.keys[0]) if len(item.keys) == 1 else None
        group = () if alert_id else tuple(alert_ids[k] for k in item.keys if k in alert_ids)
        for name in rule.channels:
            channel = ruleset.channels[name]
            body = render(
                item.notices,
                item.event,
                channel.kind,
                templates_dir=templates_dir,
                rule_template=rule.template,
                timezone=ruleset.timezone,
            )
            messages.append(Message(name, channel.kind, item.event, body, alert_id, group))
    return messages


def meta_messages(ruleset: Any, text: str) -> list[Message]:
    from flowbot.render import render_meta

    out = []
    for name in ruleset.monitoring.channels:
        channel = ruleset.channels[name]
        out.append(Message(name, channel.kind, "meta", render_meta(text, channel.kind)))
    return out


# ------------------------------------------------------------------ the cycle


def run_cycle(deps: Deps, sandbox: str) -> CycleReport:
    """Read, remember, decide and queue for one sandbox. Never sends."""
    started = time.monotonic()
    ruleset, store = deps.ruleset, deps.store
    now = deps.clock()
    report = CycleReport(sandbox)
    mark = store.watermark(sandbox)
    client = deps.client_for(sandbox)
    requests_before = _request_count(client)
    try:
        fetched = fetch(client, store, mark, ruleset, now)
    except FlowAPIError as exc:
        report.ok, report.error = False, redact(str(exc), deps.settings.secrets())
        report.api_requests = _request_count(client) - requests_before
        _record_failure(deps, mark, now, report.error)
        report.seconds = time.monotonic() - started
        return report
    report.api_requests = _request_count(client) - requests_before
    report.runs_read = len(fetched.runs)
    deps.step("fetched")

    from flowbot.aep.parse import parse_run
    from flowbot.evaluate import evaluate

    with store.transaction():
        store.upsert_flows(fetched.flows, now)
        changed = store.upsert_runs(fetched.runs, now)
        report.runs_new = len(changed)
        deps.step("stored")

        flows = store.flows(sandbox)
        by_id = {f.id: f for f in flows}
        unfinished = set(store.unfinished_run_flow_ids(sandbox))
        # Runs are judged as they arrive or change (and unfinished ones as time passes):
        # the cost follows what changed, not how many flows are watched or firing.
        watched = {r.flow_id for r in changed} | unfinished
        firing = store.firing_alerts(sandbox)
        changed_ids = {r.id for r in changed}
        history = store.recent_runs(
            sorted(watched), _history_depth(ruleset), parse_run, full=changed_ids
        )
        evaluation = evaluate(ruleset, flows, history, changed_ids, now)
        report.findings = len(evaluation.findings)
        deps.step("evaluated")

        changes = alerts.decide(
            ruleset, firing, evaluation, store.silences(now), by_id, history, now
        )
        alert_ids = _apply(store, sandbox, changes, now, report)
        outgoing = alerts.plan(changes, ruleset.group_at)
        templates = ruleset.templates or (
            Path(deps.settings.templates) if deps.settings.templates else None
        )
        messages = route(outgoing, ruleset, alert_ids, templates)
        if mark.degraded_announced:
            messages += meta_messages(
                ruleset, f"monitoring recovered for sandbox {sandbox} at {_iso(now)}"
            )
        report.queued = store.enqueue(messages, now)
        store.set_watermark(
            replace(
                mark, runs_since=next_watermark(mark.runs_since, now, fetched.api_time, fetched.runs), last_cycle=now, last_ok=now, failing_since=None,
                degraded_announced=False, last_error=None,
                flows_refreshed=now if _full_refresh_due(mark, now) else mark.flows_refreshed,
            )
        )  # fmt: skip
        store.prune(now - ruleset.retention)
        deps.step("committed")
    report.seconds = time.monotonic() - started
    return report


def run_once(deps: Deps) -> tuple[list[CycleReport], Delivery]:
    """One cycle for every sandbox, then drain the outbox."""
    reports = [run_cycle(deps, sandbox) for sandbox in deps.ruleset.sandboxes]
    return reports, send(deps)


def send(deps: Deps) -> Delivery:
    """Drain the outbox with the deps' notifiers (the send stage of every cycle)."""
    return deliver(
        deps.store,
        deps.notifiers,
        deps.clock,
        secrets=deps.settings.secrets(),
        budget=deps.send_budget,
        step=deps.step,
    )


def record_failure(deps: Deps, sandbox: str, error: str) -> None:
    """Count a cycle that failed for another reason than the API (a StoreError, a
    crash) like an API failure: keep the watermark, and after `monitoring.after`
    queue the meta-alert; the next good cycle queues the recovery."""
    error = redact(error, deps.settings.secrets())
    _record_failure(deps, deps.store.watermark(sandbox), deps.clock(), error)


# ------------------------------------------------------------------ helpers


def _apply(
    store: Store, sandbox: str, changes: Sequence[alerts.Change], now: datetime, report: CycleReport
) -> dict[tuple[str, str], int]:
    ids: dict[tuple[str, str], int] = {}
    for change in changes:
        if change.muted and change.action != "resolve":
            report.muted += 1
        if change.action == "open":
            fields = change.fields
            ids[change.key] = store.insert_alert(
                rule=change.rule, flow_id=change.flow.id, sandbox=sandbox,
                flow_name=change.flow.name, now=now, count=int(fields.get("count", 1)),
                last_run_id=fields.get("last_run_id"), reason=str(fields.get("reason", "")),
                muted=change.muted,
            )  # fmt: skip
            if "last_notified" in fields:
                store.update_alert(ids[change.key], last_notified=now)
            report.fired += 1
        else:
            assert change.alert_id is not None
            ids[change.key] = change.alert_id
            store.update_alert(change.alert_id, **change.fields)
            if change.action == "resolve":
                report.resolved += 1
            elif change.notice is not None and change.notice.event == "repeat":
                report.repeated += 1
    return ids


def _record_failure(deps: Deps, mark: Watermark, now: datetime, error: str) -> None:
    """Keep the watermark; remember since when cycles fail; announce it once it lasts."""
    ruleset, store = deps.ruleset, deps.store
    failing_since = mark.failing_since or now
    announce = (
        not mark.degraded_announced
        and bool(ruleset.monitoring.channels)
        and now - failing_since >= ruleset.monitoring.after
    )
    with store.transaction():
        if announce:
            text = (
                f"monitoring degraded for sandbox {mark.sandbox} since {_iso(failing_since)}: "
                f"{error}"
            )
            store.enqueue(meta_messages(ruleset, text), now)
        store.set_watermark(
            replace(
                mark, last_cycle=now, failing_since=failing_since, last_error=error,
                degraded_announced=mark.degraded_announced or announce,
            )
        )  # fmt: skip
    log.warning("cycle for sandbox %s failed: %s", mark.sandbox, error)


def _full_refresh_due(mark: Watermark, now: datetime) -> bool:
    """Whether this cycle reads every flow's metadata (hourly), not only flows that ran."""
    return mark.flows_refreshed is None or now - mark.flows_refreshed >= FLOW_REFRESH


def _history_depth(ruleset: Any) -> int:
    windows = [getattr(r, "window", None) or 0 for r in ruleset.rules]
    streaks = [getattr(r, "in_a_row", None) or 0 for r in ruleset.rules]
    return max([10, *windows, *streaks]) + 1


def _request_count(client: Any) -> int:
    """HTTP requests the client has made so far (FlowClient.stats.requests)."""
    return int(getattr(getattr(client, "stats", None), "requests", 0))


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def build_deps(
    settings: Settings,
    ruleset: Any,
    *,
    clock: Callable[[], datetime] | None = None,
    store: Store | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> Deps:
    """Wire the real parts from the environment and the rules (the composition root for
    `check --once`; the daemon uses it too). `client_options` go to each FlowClient
    (tests pass `sleep`, `max_attempts`)."""
    from flowbot.aep.auth import client_from_settings
    from flowbot.notifiers import build_notifiers

    if store is None:
        store = Store(settings.db)
        store.migrate()
    clock = clock or _utc_now
    clients: dict[str, Any] = {}

    def client_for(sandbox: str) -> Any:
        if sandbox not in clients:
            clients[sandbox] = client_from_settings(settings, sandbox, **(client_options or {}))
        return clients[sandbox]

    return Deps(
        ruleset=ruleset,
        store=store,
        client_for=client_for,
        notifiers=build_notifiers(ruleset.channels, settings, now=clock),
        clock=clock,
        settings=settings,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)
