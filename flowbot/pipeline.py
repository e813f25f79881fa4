"""One cycle, per sandbox, as ordered stages:

    fetch → store → evaluate → alerts (silence, fire/repeat/resolve, group)
          → route + render (routing.py) → outbox (same transaction as the watermark)
          → send

`run_cycle` does everything up to the outbox; `outbox.deliver` sends. `check --once`
and the daemon call the same `run_once`. A cycle that cannot read the API changes
nothing but the record of the failure (and, after `monitoring.after`, a meta-alert).

Isolation: a run or flow that cannot be stored or parsed, a rule that raises on one
flow, an alert that cannot be written and a message that cannot be rendered are each
left out (or, for a message, sent as plain text), logged once with their id and reason
and counted in `CycleReport.skipped` by stage; the rest of the cycle goes on. Anything
else that raises inside a stage fails that cycle like an unreadable API: the watermark
stays, the error feeds the meta-alert, whose text is built without templates.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowbot import alerts, diagnose, slack_hooks
from flowbot.aep.paging import window_filters
from flowbot.errors import FlowAPIError, StoreError, reason_of
from flowbot.models import FINISHED_STATES, Run
from flowbot.outbox import Delivery, Monitoring, deliver
from flowbot.routing import meta_messages, route
from flowbot.settings import Settings, redact
from flowbot.store import Store, Watermark
from flowbot.times import utc_minute
from flowbot.validate import templates_dir
from flowbot.windows import plan

if TYPE_CHECKING:
    from flowbot.aep.client import FlowClient
    from flowbot.notifiers import Notifier
    from flowbot.rules import RuleSet

log = logging.getLogger("flowbot.cycle")

OVERLAP = timedelta(minutes=10)  # re-read this much before the watermark every cycle
FLOW_REFRESH = timedelta(hours=1)  # full flow metadata refresh, otherwise only flows that ran
UNFINISHED_HORIZON = timedelta(days=7)  # stop re-reading runs unfinished for longer
MAX_NOTES = 100  # skipped items logged per cycle (all are counted)
FETCH_BUDGET = 300.0  # seconds for all the reads of one sandbox in one cycle
CLOCK_SKEW = timedelta(minutes=5)  # the watermark stays this far behind the API's clock


@dataclass
class Deps:
    """What a cycle needs; built by `build_deps` or by tests pointing at local servers."""

    ruleset: RuleSet
    store: Store
    client_for: Callable[[str], FlowClient]  # by sandbox
    notifiers: Mapping[str, Notifier]  # by channel name
    clock: Callable[[], datetime]
    settings: Settings = field(default_factory=Settings)
    step: Callable[[str], None] = lambda name: None  # test hook between stages
    send_budget: float = 60.0
    # (stage, item) pairs already logged as skipped: a poisoned run re-read every cycle
    # of the overlap is logged at warning once, then at debug.
    skips_logged: set[tuple[str, str]] = field(default_factory=set)
    diagnose_seconds: float = diagnose.DIAGNOSE_SECONDS  # row-error reads per cycle, at most


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
    judged: int = 0  # flows whose rules were judged (what changed, fires or came due)
    api_requests: int = 0
    diagnostic_requests: int = 0  # to the Data Access API (diagnostics.budget bounds them)
    seconds: float = 0.0
    # Items left out by stage (parse, store, evaluate, alert, render), counted each
    # cycle they are met; `notes` says which and why, for the log.
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[str, str, str]] = field(default_factory=list, repr=False)

    def skip(self, stage: str, item: str, reason: str) -> None:
        """Count one item a stage left out, with its id and the reason."""
        self.skipped[stage] = self.skipped.get(stage, 0) + 1
        if len(self.notes) < MAX_NOTES:
            item, reason = " ".join(item.split())[:300], " ".join(reason.split())[:500]
            self.notes.append((stage, item, reason))


@dataclass
class Fetched:
    """What a fetch stored: only ids are kept, so that memory does not grow with the read."""

    changed: dict[str, str] = field(default_factory=dict)  # run id → flow id, new or changed
    flows_changed: set[str] = field(default_factory=set)  # flows new or changed
    runs_read: int = 0
    newest_start: datetime | None = None  # the newest start among the runs read
    api_time: datetime | None = None  # the API's clock (its Date header), when it said

    def note(self, page: Sequence[Run], changed: Sequence[Run]) -> None:
        self.runs_read += len(page)
        for run in changed:
            self.changed[run.id] = run.flow_id
        starts = [r.started_at for r in page if r.started_at is not None]
        if starts:
            newest = max(starts)
            self.newest_start = max(newest, self.newest_start or newest)


# ------------------------------------------------------------------ stages


def fetch(
    client: FlowClient,
    store: Store,
    mark: Watermark,
    ruleset: RuleSet,
    now: datetime,
    on_skip: Callable[[str, str, str], None] | None = None,
) -> Fetched:
    """Read what changed and store it page by page (inside the caller's transaction):
    every flow hourly (otherwise only flows first met through a run), the runs of the read windows (`flowbot.windows`:
    started since the watermark less an overlap, plus one small slice per age up to
    `late_arrival` for runs that show up late), and the runs still unfinished last time;
    all of it within FETCH_BUDGET seconds (past it, a FlowAPIError fails the cycle).
    Only one page is held at a time; what changed is returned as ids."""
    skip = on_skip or (lambda stage, item, reason: None)
    windows = plan(
        mark.runs_since,
        now - CLOCK_SKEW,
        overlap=OVERLAP,
        late_arrival=ruleset.late_arrival,
        lookback=ruleset.lookback,
    )
    out = Fetched()
    budget = getattr(client, "budget", None)
    with budget(FETCH_BUDGET) if budget is not None else nullcontext():
        if _full_refresh_due(mark, now):
            for flows in client.flow_pages():
                out.flows_changed |= store.upsert_flows(flows, now, on_skip=skip)
        read_unfinished: set[str] = set()
        for start, end in windows:
            for runs in client.run_pages(window_filters(start, end)):
                out.note(runs, store.upsert_runs(runs, now, on_skip=skip))
                read_unfinished.update(r.id for r in runs if r.state not in FINISHED_STATES)
        horizon = now - UNFINISHED_HORIZON
        ids = store.unfinished_run_ids(mark.sandbox, horizon)
        unfinished = [i for i in ids if i not in read_unfinished]
        if unfinished:
            runs = client.runs_by_ids(unfinished)
            out.note(runs, store.upsert_runs(runs, now, on_skip=skip))
        # Between full refreshes, only flows first met through their runs are read.
        unknown = store.unknown_flow_ids(sorted(set(out.changed.values())))
        if unknown:
            out.flows_changed |= store.upsert_flows(client.flows_by_ids(unknown), now, on_skip=skip)
    out.api_time = getattr(client, "server_time", None)
    return out


def next_watermark(
    previous: datetime | None, now: datetime, api_time: datetime | None, newest: datetime | None
) -> datetime | None:
    """Where the next cycle reads runs from: what the API itself has shown (its Date
    header, else `newest`, the newest start among the runs read), never past the local
    clock, less CLOCK_SKEW, and never before `previous`. A local clock that jumps ahead
    cannot move it past runs the API has not shown yet; a hostile Date cannot rewind it."""
    shown = api_time or newest
    if shown is None:
        return previous
    mark = min(shown, now) - CLOCK_SKEW
    return mark if previous is None else max(mark, previous)


# ------------------------------------------------------------------ the cycle


def run_cycle(deps: Deps, sandbox: str) -> CycleReport:
    """Read, remember, decide and queue for one sandbox. Never sends, and never raises
    for what a stage meets: a failure is in the report (and recorded for the meta-alert)."""
    started = time.monotonic()
    store = deps.store
    now = deps.clock()
    report = CycleReport(sandbox)
    mark = Watermark(sandbox)
    client = deps.client_for(sandbox)
    requests_before = _request_count(client)
    stage = ["fetch"]  # the stage under way, for the failure's text

    def at(name: str) -> None:
        stage[0] = name

    try:
        mark = store.watermark(sandbox)
        with store.transaction():
            fetched = fetch(client, store, mark, deps.ruleset, now, on_skip=report.skip)
            report.api_requests = _request_count(client) - requests_before
            report.runs_read = fetched.runs_read
            report.runs_new = len(fetched.changed)
            deps.step("fetched")
            deps.step("stored")
            report.diagnostic_requests = diagnose.read_batches(
                deps, client, sandbox, _failed_runs(store, fetched, report), now,
                seconds=deps.diagnose_seconds,
            )  # fmt: skip
            _decide(deps, sandbox, mark, fetched, now, report, at)
    except FlowAPIError as exc:
        _fail(deps, mark, now, report, str(exc))
    except StoreError as exc:
        _fail(deps, mark, now, report, f"{stage[0]} stage: {exc}")
    except Exception as exc:  # any other surprise fails this cycle, not the daemon
        log.debug("cycle %s: the %s stage raised", sandbox, stage[0], exc_info=True)
        _fail(deps, mark, now, report, f"{stage[0]} stage: {reason_of(exc)}")
    finally:
        _log_skips(deps, report)
    report.api_requests = _request_count(client) - requests_before
    report.seconds = time.monotonic() - started
    return report


def _failed_runs(store: Store, fetched: Fetched, report: CycleReport) -> Iterator[Run]:
    """The runs this fetch stored as new or changed that a diagnosis may want (finished,
    failed or lost records), loaded back from the store a chunk at a time: the fetch
    kept only their ids."""
    from flowbot.aep.parse import parse_run

    return store.failed_runs(fetched.changed, parse_run, on_skip=report.skip)


JUDGE_BATCH = 1000  # flows judged together: memory follows the batch, not the flows watched


def _decide(
    deps: Deps,
    sandbox: str,
    mark: Watermark,
    fetched: Fetched,
    now: datetime,
    report: CycleReport,
    at: Callable[[str], None],
) -> None:
    """Evaluate → alerts → route → outbox and watermark, in the caller's transaction
    (with what fetch stored); `at(stage)` is told each stage as it starts.

    Judged are the flows whose runs changed, that have unfinished runs, that the
    refresh changed, whose flow-level rules came due (`flows.due`, set here after each
    judgement; all of them when the rules change), and whose firing alerts may repeat
    or are muted: the cost follows what changed and what comes due, not how many flows
    are watched. A firing alert's condition can only clear through one of these (a
    run, the flow, the rules), so the others are left alone. They
    are judged in batches, so that only one batch's flows and runs are held at once."""
    ruleset, store = deps.ruleset, deps.store
    at("evaluate")
    store.due_rules(_rules_fingerprint(ruleset))
    firing = store.firing_alerts(sandbox)
    watched = (
        set(fetched.changed.values())
        | set(store.unfinished_run_flow_ids(sandbox))
        | {a.flow_id for a in firing if _firing_due(ruleset, a, now)}
    )
    judged = sorted(watched | fetched.flows_changed | set(store.flows_due(sandbox, now)))
    changed_ids = set(fetched.changed)
    silences = store.silences(now)
    changes: list[alerts.Change] = []
    alert_ids: dict[tuple[str, str], int] = {}
    for start in range(0, len(judged), JUDGE_BATCH):
        batch = judged[start : start + JUDGE_BATCH]
        changes_, ids = _judge(deps, sandbox, batch, changed_ids, firing, silences, now, report)
        changes += changes_
        alert_ids.update(ids)
    deps.step("evaluated")

    at("alerts")
    outgoing = alerts.plan([c for c in changes if c.key in alert_ids], ruleset.group_at)
    outgoing = diagnose.attach(outgoing, store, ruleset)
    templates = templates_dir(ruleset, deps.settings.templates)
    origins = (deps.settings.api_url, deps.settings.export_url)
    at("route")
    messages = route(
        outgoing, ruleset, alert_ids, templates, store, [o for o in origins if o],
        on_skip=report.skip,
    )  # fmt: skip
    messages += diagnose.followups(store, ruleset, sandbox, templates, outgoing, alert_ids)
    messages = slack_hooks.offer_buttons(messages, ruleset, store, deps.settings)
    if mark.degraded_announced:
        messages += meta_messages(
            ruleset, f"monitoring recovered for sandbox {sandbox} at {utc_minute(now)}"
        )
    at("outbox")
    report.queued = store.enqueue(messages, now)
    store.set_watermark(
        replace(
            mark, runs_since=next_watermark(mark.runs_since, now, fetched.api_time, fetched.newest_start), last_cycle=now, last_ok=now, failing_since=None,
            degraded_announced=False, last_error=None,
            flows_refreshed=now if _full_refresh_due(mark, now) else mark.flows_refreshed,
        )
    )  # fmt: skip
    store.prune(now - ruleset.retention)
    deps.step("committed")


def _judge(
    deps: Deps,
    sandbox: str,
    batch: list[str],
    changed_ids: set[str],
    firing: Sequence[Any],
    silences: Sequence[Any],
    now: datetime,
    report: CycleReport,
) -> tuple[list[alerts.Change], dict[tuple[str, str], int]]:
    """Judge one batch of flows, write its alert changes and the flows' next due times."""
    from flowbot.aep.parse import parse_run
    from flowbot.evaluate import evaluate, next_due

    ruleset, store = deps.ruleset, deps.store
    flows = store.flows_by_ids(batch)
    by_id = {f.id: f for f in flows}
    history = store.recent_runs(
        batch, _history_depth(ruleset), parse_run,
        full=changed_ids, on_skip=report.skip,
    )  # fmt: skip
    evaluation = evaluate(ruleset, flows, history, changed_ids, now)
    report.findings += len(evaluation.findings)
    if evaluation.skipped:  # evaluate logged each one already
        report.skipped["evaluate"] = report.skipped.get("evaluate", 0) + len(evaluation.skipped)
    report.judged += len(batch)
    store.set_due({f.id: next_due(ruleset, f, history.get(f.id, ()), now) for f in flows})
    in_batch = set(batch)
    changes = alerts.decide(
        ruleset, [a for a in firing if a.flow_id in in_batch], evaluation, silences, by_id,
        history, now,
    )  # fmt: skip
    changes = slack_hooks.quiet_acknowledged(store, changes)
    return changes, _apply(store, sandbox, changes, now, report)


def _firing_due(ruleset: Any, alert: Any, now: datetime) -> bool:
    """Whether a firing alert's flow must be judged although nothing changed: its
    repeat is due, it is muted (a silence may have ended) or was never announced."""
    rule = ruleset.rule(alert.rule)
    if rule is None or not rule.enabled or alert.muted or alert.last_notified is None:
        return True
    return bool(now - alert.last_notified >= rule.repeat_after)


def _rules_fingerprint(ruleset: Any) -> str:
    """What every flow's judgement depends on besides its runs: the rules as configured."""
    parts = (ruleset.rules, ruleset.lookback, ruleset.timezone)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _log_skips(deps: Deps, report: CycleReport) -> None:
    """One warning per skipped item the first time it is met, debug after that."""
    for stage, item, reason in report.notes:
        first = (stage, item) not in deps.skips_logged
        if first:
            if len(deps.skips_logged) >= 10_000:
                deps.skips_logged.clear()
            deps.skips_logged.add((stage, item))
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "cycle %s: %s skipped at %s: %s", report.sandbox, item, stage, reason,
        )  # fmt: skip


def _fail(deps: Deps, mark: Watermark, now: datetime, report: CycleReport, error: str) -> None:
    """Report the cycle failed and record it (watermark kept, meta-alert in time)."""
    report.ok, report.error = False, redact(error, deps.settings.secrets())
    try:
        _record_failure(deps, mark, now, report.error)
    except Exception as exc:  # a broken store must not hide the failure it could not keep
        reason = str(exc) if isinstance(exc, StoreError) else reason_of(exc)
        log.error(
            "cycle for sandbox %s failed (%s), and the failure could not be recorded "
            "(no meta-alert queued): %s", mark.sandbox, report.error, reason,
        )  # fmt: skip


def run_once(deps: Deps, *, retry: bool = False) -> tuple[list[CycleReport], Delivery]:
    """One cycle for every sandbox, then drain the outbox (`retry`: see `send`)."""
    reports = [run_cycle(deps, sandbox) for sandbox in deps.ruleset.sandboxes]
    return reports, send(deps, retry=retry)


def send(deps: Deps, *, retry: bool = False) -> Delivery:
    """Drain the outbox with the deps' notifiers (the send stage of every cycle).
    `retry`: an operator asked for this drain (`check --once`), so messages waiting
    only for flowbot's own backoff go now; a channel's Retry-After still holds."""
    ruleset = deps.ruleset
    monitoring = Monitoring(
        channels=tuple(ruleset.monitoring.channels),
        every=tuple(ruleset.channels),
        messages=lambda text, names: meta_messages(ruleset, text, names),
    )
    return deliver(
        deps.store,
        deps.notifiers,
        deps.clock,
        secrets=deps.settings.secrets(),
        budget=deps.send_budget,
        retry=retry,
        monitoring=monitoring,
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
        try:
            _apply_one(store, sandbox, change, now, report, ids)
        except (StoreError, ValueError, TypeError, OverflowError) as exc:
            report.skip("alert", f"alert {change.rule} on flow {change.flow.id}", reason_of(exc))
    return ids


def _apply_one(
    store: Store,
    sandbox: str,
    change: alerts.Change,
    now: datetime,
    report: CycleReport,
    ids: dict[tuple[str, str], int],
) -> None:
    """Write one alert change; its id goes into `ids` once it is stored."""
    if change.muted and change.action != "resolve":
        report.muted += 1
    if change.action in ("open", "recover"):
        fields = change.fields
        alert_id = store.insert_alert(
            rule=change.rule, flow_id=change.flow.id, sandbox=sandbox,
            flow_name=change.flow.name, now=now, count=int(fields.get("count", 1)),
            last_run_id=fields.get("last_run_id"), reason=str(fields.get("reason", "")),
            muted=change.muted,
        )  # fmt: skip
        later = {k: fields[k] for k in ("last_notified", "state", "resolved") if k in fields}
        if later:
            store.update_alert(alert_id, **later)
        if change.action == "open":  # "recover": history only, already resolved
            ids[change.key] = alert_id
            report.fired += 1
    else:
        assert change.alert_id is not None
        store.update_alert(change.alert_id, **change.fields)
        ids[change.key] = change.alert_id
        if change.action == "resolve":
            report.resolved += 1
        elif change.notice is not None and change.notice.event == "repeat":
            report.repeated += 1


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
                f"monitoring degraded for sandbox {mark.sandbox} since {utc_minute(failing_since)}: "
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


def _history_depth(ruleset: RuleSet) -> int:
    needed: list[int] = [r.runs_needed for r in ruleset.rules]
    return max([10, *needed]) + 1


def _request_count(client: FlowClient) -> int:
    """HTTP requests the client has made so far (FlowClient.stats.requests)."""
    return int(getattr(getattr(client, "stats", None), "requests", 0))


def build_deps(
    settings: Settings,
    ruleset: RuleSet,
    *,
    clock: Callable[[], datetime] | None = None,
    store: Store | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> Deps:
    """Wire the real parts from the environment and the rules (the composition root for
    `check --once`; the daemon uses it too). `client_options` are keyword arguments of
    `client_from_settings` (tests pass `retry=RetryPolicy(...)`, `clocks=Clocks(...)`,
    `limits=Limits(...)`)."""
    from flowbot.aep.auth import client_from_settings
    from flowbot.notifiers import build_notifiers

    if store is None:
        store = Store(settings.db)
        store.migrate()
    clock = clock or _utc_now
    clients: dict[str, FlowClient] = {}

    def client_for(sandbox: str) -> FlowClient:
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
