"""The read-only status page on the daemon's HTTP port: `GET /` (sandboxes, firing
incidents, every flow with a strip of its last runs, the silences; filters by name,
state and owner), `GET /flow/<id>` (its runs and alert history), `GET /status.css`.

`build_view` and `flow_view` decide what a page shows (pure, from facts the store
holds); `StatusPages` is the handler `health.HealthServer` calls for every path it does
not answer itself: it checks the token, opens its own short-lived connection to the
database (never the daemon's), and renders with Jinja2 (sandboxed, autoescaped, the
templates in flowbot/web/). No JavaScript: the Content-Security-Policy allows none.

Safe by default: bound to 127.0.0.1, ::1 or localhost the page is open; bound to any
other address it asks for FLOWBOT_UI_TOKEN (HTTP Basic, any user name, the token as the
password; or `Authorization: Bearer <token>`) and refuses to serve at all while the
token is unset. /healthz, /readyz and /metrics are answered by the server before this.
"""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from flowbot.context import aep_run_url, aep_url
from flowbot.health import Answer, Request
from flowbot.models import RUNNING_STATES, WAITING_STATES, Flow
from flowbot.report import span
from flowbot.store import AlertRow, Silence, Store, Watermark
from flowbot.store import actions as store_actions
from flowbot.store import views as store_views
from flowbot.store.actions import Ack
from flowbot.store.views import SHOWN_STATES, FlowFact, FlowFilter, RunFact
from flowbot.untrusted import cut, one_line

log = logging.getLogger("flowbot.statuspage")

WEB = Path(__file__).parent / "web"
PAGE_SIZE = 100  # flows shown per page (the rest: next pages; the counts are whole)
STRIP_RUNS = 20  # runs in a flow's strip
FLOW_RUNS = 100  # runs on a flow's page
FLOW_ALERTS = 100  # alerts on a flow's page
QUERY_MAX = 200  # characters of a filter value kept
NAME_MAX = 200  # characters of a flow name shown
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
STATES = SHOWN_STATES  # most urgent first: the flows table is sorted by it

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)
HTML = "text/html; charset=utf-8"


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
    label = f"{run.status or 'unknown'} · {_at(run.started)} · {_records(run)} · {_duration(run)}"
    return Cell(run.status or "unknown", colour, glyph, label)


def _at(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "not started"


def _records(run: RunFact | None) -> str:
    if run is None:
        return "-"
    return f"{_n(run.input_records)} in, {_n(run.failed_records)} failed"


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _duration(run: RunFact | None) -> str:
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
    return f"by {cut(one_line(ack.user), 40) or 'someone'} at {_at(ack.at)}"


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
                since=_at(a.first_seen), silenced=silenced(a, silences),
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
                summary=summary, last_records=_records(last), last_duration=_duration(last),
            )
        )  # fmt: skip
    all_owners = sorted({o for r in rules for o in ([r.owner] if r.owner else [])})
    return View(
        now=_at(now),
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
        last_good=_at(last) if last else "never",
        ago=span(now - last) + " ago" if last else "",
        healthy=healthy,
        error=cut(one_line(mark.last_error or ""), 300) if mark and not healthy else "",
    )


# ------------------------------------------------------------------ the token


def is_loopback(host: str) -> bool:
    return host.strip("[]").lower() in LOOPBACK


def authorize(headers: Mapping[str, str], token: str, bound_to: str) -> Answer | None:
    """None when the page may be served; else the answer that refuses it."""
    if is_loopback(bound_to):
        return None
    if not token:
        return Answer(
            403,
            "text/plain; charset=utf-8",
            "The status page is off: flowbot listens beyond loopback and FLOWBOT_UI_TOKEN "
            "is not set.\n",
            SECURITY_HEADERS,
        )
    given = _credential(headers.get("authorization", ""))
    if given is not None and hmac.compare_digest(given.encode(), token.encode()):
        return None
    return Answer(
        401,
        "text/plain; charset=utf-8",
        "The status page needs FLOWBOT_UI_TOKEN: as the password (any user name) or as a "
        "Bearer token.\n",
        (("WWW-Authenticate", 'Basic realm="flowbot", charset="UTF-8"'), *SECURITY_HEADERS),
    )


def _credential(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


# ------------------------------------------------------------------ rendering


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(WEB)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


def render(template: str, **values: Any) -> str:
    return environment().get_template(template).render(**values)


class StatusPages:
    """The handler of every path the health server does not answer itself."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        ruleset: Callable[[], Any],
        clock: Callable[[], datetime],
        *,
        token: str,
        bound_to: str,
    ) -> None:
        self.open_store = open_store
        self.ruleset = ruleset
        self.clock = clock
        self.token = token
        self.bound_to = bound_to

    def __call__(self, request: Request) -> Answer:
        refused = authorize(request.headers, self.token, self.bound_to)
        if refused is not None:
            return refused
        if request.path == "/status.css":
            css = (WEB / "status.css").read_text(encoding="utf-8")
            return Answer(200, "text/css; charset=utf-8", css, SECURITY_HEADERS)
        if request.path == "/":
            return self._page(lambda store: self.index(store, parse_filters(request.query)))
        if request.path.startswith("/flow/"):
            flow_id = unquote(request.path[len("/flow/") :])[:500]
            return self._page(lambda store: self.flow(store, flow_id))
        return Answer(
            404,
            HTML,
            render("missing.html.j2", what="page", now=_at(self.clock())),
            SECURITY_HEADERS,
        )

    def _page(self, build: Callable[[Store], tuple[int, str]]) -> Answer:
        store = self.open_store()
        try:
            status, text = build(store)
        finally:
            store.close()
        return Answer(status, HTML, text, SECURITY_HEADERS)

    def index(self, store: Store, filters: Filters) -> tuple[int, str]:
        ruleset = self.ruleset()
        now = self.clock()
        names = list(ruleset.sandboxes)
        owned = owned_by(filters.owner, ruleset.rules) if filters.owner else None
        chosen = FlowFilter(names, filters.q, filters.state, owned)
        counts, kept = store_views.flow_counts(store, chosen)
        matched = kept.get(filters.state, 0) if filters.state else sum(kept.values())
        page = min(filters.page, pages_of(matched))
        shown = store_views.flow_page(store, chosen, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        firing = [a for a in store.firing_alerts() if a.sandbox in names]
        view = build_view(
            now=now,
            sandboxes=names,
            marks=store_views.watermarks(store, names),
            shown=shown,
            counts=counts,
            kept=kept,
            runs=store_views.latest_runs_at_once(store, [f.id for f in shown], STRIP_RUNS),
            firing=firing,
            acks=acks_of(store, [a.id for a in firing]),
            incident_flows=store_views.flows_by_id(store, [a.flow_id for a in firing]),
            silences=store.silences(now),
            rules=ruleset.rules,
            filters=Filters(filters.q, filters.state, filters.owner, page),
            org=aep_org(ruleset),
        )
        return 200, render("index.html.j2", view=view, now=view.now)

    def flow(self, store: Store, flow_id: str) -> tuple[int, str]:
        f = store_views.shown_flow(store, flow_id)
        if f is None:
            return 404, render("missing.html.j2", what="flow", now=_at(self.clock()))
        ruleset = self.ruleset()
        org = aep_org(ruleset)
        ui = ui_flow(f, f.id, f.sandbox)
        runs = store_views.latest_runs(store, [f.id], FLOW_RUNS)[f.id]
        alerts = store_views.flow_alerts(store, f.id, limit=FLOW_ALERTS)
        acks = acks_of(store, [a.id for a in alerts])
        rows = [
            {"cell": cell(r), "started": _at(r.started), "records": _records(r),
             "duration": _duration(r), "id": r.id, "url": aep_run_url(ui, r.id, org=org)}
            for r in runs
        ]  # fmt: skip
        strip = [cell(r) for r in reversed(runs[:STRIP_RUNS])]
        return 200, render(
            "flow.html.j2",
            flow=f,
            name=name_of(f, f.id),
            state=f.status,
            owners=owners_of(f, ruleset.rules),
            strip=strip_svg(strip, f"last {len(strip)} runs"),
            flow_url=aep_url(ui, org=org),
            runs=rows,
            alerts=[(a, acknowledged(acks.get(a.id))) for a in alerts],
            when=_at,
            now=_at(self.clock()),
            span=span,
            reason=lambda text: cut(one_line(text), 300),
            timedelta=timedelta,
        )


def aep_org(ruleset: Any) -> str:
    """`aep_ui.org` from rules.yaml, the org part of AEP UI links ("" when unset)."""
    aep_ui = getattr(ruleset, "aep_ui", None)
    return str(aep_ui.org or "") if aep_ui else ""


def acks_of(store: Store, alert_ids: Sequence[int]) -> dict[int, Ack]:
    """The acknowledgements of these alerts, read in bounded batches."""
    out: dict[int, Ack] = {}
    for start in range(0, len(alert_ids), 500):
        out.update(store_actions.acks(store, alert_ids[start : start + 500]))
    return out
