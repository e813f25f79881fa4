"""What the status page shows, decided from facts the store holds (pure: no I/O, no
Jinja2): the values its templates read, each flow's strip of runs as inline SVG, the
filters of a query string, and `build_view` for `/`. flowbot.statuspage reads the
store, calls these and renders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qs, quote

from markupsafe import Markup, escape

from flowbot.context import aep_run_url, aep_url
from flowbot.models import RUNNING_STATES, WAITING_STATES, Flow
from flowbot.report import span
from flowbot.store import AlertRow, Silence, Watermark
from flowbot.store.actions import Ack
from flowbot.store.views import SHOWN_STATES, FlowFact, RunFact
from flowbot.times import utc_minute
from flowbot.untrusted import cut, one_line

PAGE_SIZE = 100  # flows shown per page (the rest: next pages; the counts are whole)
STRIP_RUNS = 20  # runs in a flow's strip
QUERY_MAX = 200  # characters of a filter value kept
NAME_MAX = 200  # characters of a flow name shown
STATES = SHOWN_STATES  # most urgent first: the flows table is sorted by it


# ------------------------------------------------------------------ values


@dataclass(frozen=True, slots=True)
class Cell:
    """One run of a strip: its colour and its glyph say the same thing."""

    status: str
    colour: str
    glyph: str
    label: str  # status, start, records in/failed, duration: the cell's title


@dataclass(frozen=True, slots=True)
class FlowLine:
    id: str
    name: str
    sandbox: str
    state: str
    owners: tuple[str, ...]
    strip: Markup  # the strip as inline SVG (strip_svg)
    summary: str  # the strip in words
    last_records: str
    last_duration: str


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    rule: str
    flow_id: str
    flow: str
    sandbox: str
    severity: str
    owner: str
    age: str
    since: str
    silenced: bool
    acknowledged: str  # "by <user> at <time>", or "" when nobody acknowledged it
    count: int
    reason: str
    runbook: str | None
    flow_url: str  # the dataflow in the AEP UI
    run_url: str | None  # the run that fired it, in the AEP UI


@dataclass(frozen=True, slots=True)
class SandboxLine:
    name: str
    last_good: str
    ago: str
    healthy: bool
    error: str


@dataclass(frozen=True, slots=True)
class Filters:
    q: str = ""
    state: str = ""
    owner: str = ""
    page: int = 1

    def query(self, **changes: Any) -> str:
        values = {"q": self.q, "state": self.state, "owner": self.owner, "page": self.page}
        values.update(changes)
        parts = [
            f"{k}={quote(str(v), safe='')}"
            for k, v in values.items()
            if v and not (k == "page" and v == 1)
        ]
        return "?" + "&".join(parts)


@dataclass(frozen=True, slots=True)
class View:
    now: str
    sandboxes: tuple[SandboxLine, ...]
    incidents: tuple[Incident, ...]
    flows: tuple[FlowLine, ...]
    matched: int
    total: int
    filters: Filters
    pages: int
    owners: tuple[str, ...]
    silences: tuple[Silence, ...]
    states: tuple[str, ...] = STATES
    counts: Mapping[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------ deciding


COLOURS = {
    "success": ("#1b7f3b", "✓"),
    "failed": ("#c62828", "✗"),
    "running": ("#b26a00", "…"),
}


def cell(run: RunFact) -> Cell:
    kind = run.status if run.status in ("success", "failed") else "other"
    if run.status in RUNNING_STATES or run.status in WAITING_STATES:
        kind = "running"
    colour, glyph = COLOURS.get(kind, ("#6b6b6b", "?"))
    label = f"{run.status or 'unknown'} · {shown_at(run.started)} · {records_of(run)} · {duration_of(run)}"
    return Cell(run.status or "unknown", colour, glyph, label)


def shown_at(at: datetime | None) -> str:
    return utc_minute(at) if at else "not started"


def records_of(run: RunFact | None) -> str:
    if run is None:
        return "-"
    return f"{_n(run.input_records)} in, {_n(run.failed_records)} failed"


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def duration_of(run: RunFact | None) -> str:
    if run is None or run.started is None or run.completed is None:
        return "-"
    return span(run.completed - run.started)


def silenced(alert: AlertRow, silences: Iterable[Silence]) -> bool:
    if alert.muted:
        return True
    for s in silences:
        rule_ok = s.rule is None or fnmatchcase(alert.rule, s.rule)
        flow_ok = s.flow is None or s.flow == alert.flow_id or fnmatchcase(alert.flow_name, s.flow)
        if rule_ok and flow_ok:
            return True
    return False


def owners_of(flow: FlowFact, rules: Sequence[Any]) -> tuple[str, ...]:
    """The owners of the rules that watch `flow` (rules carry `owner` and `flows`)."""
    from flowbot.models import Flow

    value = Flow(id=flow.id, name=flow.name, sandbox=flow.sandbox)
    found = {r.owner for r in rules if r.owner and r.flows.matches(value)}
    return tuple(sorted(found))


def owned_by(owner: str, rules: Sequence[Any]) -> Callable[[str, str, str], bool]:
    """Whether a flow (id, name, sandbox) is watched by a rule whose owner contains
    `owner` (case-insensitive): the owner filter, which the store calls per flow."""
    wanted = [r for r in rules if r.owner and owner.lower() in r.owner.lower()]

    def owned(flow_id: str, name: str, sandbox: str) -> bool:
        value = Flow(id=flow_id, name=name, sandbox=sandbox)
        return any(r.flows.matches(value) for r in wanted)

    return owned


def ui_flow(flow: FlowFact | None, flow_id: str, sandbox: str) -> Flow:
    """The flow as context.aep_url wants it (the org from the flow when it is stored)."""
    raw = {"imsOrgId": flow.org_id} if flow and flow.org_id else {}
    return Flow(id=flow_id, sandbox=(flow.sandbox if flow else sandbox), raw=raw)


def acknowledged(ack: Ack | None) -> str:
    if ack is None:
        return ""
    return f"by {cut(one_line(ack.user), 40) or 'someone'} at {shown_at(ack.at)}"


def strip_svg(cells: Sequence[Cell], summary: str) -> Markup:
    """A strip of runs as one inline SVG: per run a coloured rect (its status, and its
    details as a title) and a glyph; the summary once, as the image's text alternative.
    Built here rather than in a template: a page of 100 flows has 2,000 runs."""
    width = max(len(cells), 1) * 16
    said = escape(summary)
    parts = [
        f'<svg class="strip" role="img" width="{width}" height="20" viewBox="0 0 {width} 20" '
        f'aria-label="{said}" xmlns="http://www.w3.org/2000/svg"><title>{said}</title>'
        '<g fill="#ffffff" font-size="12" font-family="sans-serif" text-anchor="middle">'
    ]
    for n, c in enumerate(cells):
        x = n * 16
        parts.append(
            f'<rect data-status="{escape(c.status)}" fill="{c.colour}" x="{x}" y="1" '
            f'width="14" height="18" rx="2"><title>{escape(c.label)}</title></rect>'
            f'<text x="{x + 7}" y="15">{c.glyph}</text>'
        )
    parts.append("</g></svg>")
    return Markup("".join(parts))


def name_of(flow: FlowFact | None, fallback: str) -> str:
    return cut(one_line((flow.name if flow else "") or fallback), NAME_MAX)


def parse_filters(query: str) -> Filters:
    """The filters of a query string, each bounded; a bad value is ignored."""
    try:
        values = parse_qs(query[: 4 * QUERY_MAX], max_num_fields=8)
    except ValueError:
        return Filters()
    first = {k: one_line(v[0])[:QUERY_MAX].strip() for k, v in values.items() if v}
    state = first.get("state", "")
    page = first.get("page", "1")
    return Filters(
        q=first.get("q", ""),
        state=state if state in STATES else "",
        owner=first.get("owner", ""),
        page=int(page) if page.isdigit() and 0 < int(page) < 1_000_000 else 1,
    )


def build_view(
    *,
    now: datetime,
    sandboxes: Sequence[str],
    marks: Mapping[str, Watermark],
    shown: Sequence[FlowFact],
    counts: Mapping[str, int],
    kept: Mapping[str, int],
    runs: Mapping[str, list[RunFact]],
    firing: Sequence[AlertRow],
    acks: Mapping[int, Ack],
    incident_flows: Mapping[str, FlowFact],
    silences: Sequence[Silence],
    rules: Sequence[Any],
    filters: Filters,
    org: str = "",
) -> View:
    """What `/` shows: `shown` is the page of flows (read with their state), `counts`
    the flows per state and `kept` those the filter keeps per state (both whole),
    `runs` the strips of the page's flows."""
    rule_of = {r.name: r for r in rules}
    incidents = []
    for a in sorted(firing, key=lambda a: a.first_seen):
        rule = rule_of.get(a.rule)
        flow = incident_flows.get(a.flow_id)
        ui = ui_flow(flow, a.flow_id, a.sandbox or "")
        incidents.append(
            Incident(
                id=a.id, rule=a.rule, flow_id=a.flow_id,
                flow=name_of(flow, a.flow_name or a.flow_id),
                sandbox=a.sandbox, severity=getattr(rule, "severity", "warning"),
                owner=getattr(rule, "owner", None) or "-", age=span(now - a.first_seen),
                since=shown_at(a.first_seen), silenced=silenced(a, silences),
                acknowledged=acknowledged(acks.get(a.id)), count=a.count,
                reason=cut(one_line(a.reason), 300), runbook=getattr(rule, "runbook", None),
                flow_url=aep_url(ui, org=org),
                run_url=aep_run_url(ui, a.last_run_id, org=org) if a.last_run_id else None,
            )
        )  # fmt: skip
    matched = kept.get(filters.state, 0) if filters.state else sum(kept.values())
    lines = []
    for f in shown:
        recent = runs.get(f.id, [])
        oldest_first = list(reversed(recent[:STRIP_RUNS]))
        failed = sum(r.status == "failed" for r in oldest_first)
        ok = sum(r.status == "success" for r in oldest_first)
        other = len(oldest_first) - failed - ok
        summary = f"last {len(oldest_first)} runs: {ok} succeeded, {failed} failed"
        summary += f", {other} other" if other else ""
        summary = summary if recent else "no runs stored"
        last = recent[0] if recent else None
        lines.append(
            FlowLine(
                id=f.id, name=name_of(f, f.id), sandbox=f.sandbox, state=f.status or "unknown",
                owners=owners_of(f, rules), strip=strip_svg([cell(r) for r in oldest_first], summary),
                summary=summary, last_records=records_of(last), last_duration=duration_of(last),
            )
        )  # fmt: skip
    all_owners = sorted({o for r in rules for o in ([r.owner] if r.owner else [])})
    return View(
        now=shown_at(now),
        sandboxes=tuple(_sandbox_line(s, marks.get(s), now) for s in sandboxes),
        incidents=tuple(incidents),
        flows=tuple(lines),
        matched=matched,
        total=sum(counts.values()),
        filters=filters,
        pages=pages_of(matched),
        owners=tuple(all_owners),
        silences=tuple(silences),
        counts=counts,
    )


def pages_of(matched: int) -> int:
    return max(1, -(-matched // PAGE_SIZE))


def _sandbox_line(name: str, mark: Watermark | None, now: datetime) -> SandboxLine:
    last = mark.last_ok if mark else None
    healthy = bool(mark and last and not mark.failing_since)
    return SandboxLine(
        name=name,
        last_good=shown_at(last) if last else "never",
        ago=span(now - last) + " ago" if last else "",
        healthy=healthy,
        error=cut(one_line(mark.last_error or ""), 300) if mark and not healthy else "",
    )
