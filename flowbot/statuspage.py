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

from flowbot.health import Answer, Request
from flowbot.models import RUNNING_STATES, WAITING_STATES
from flowbot.report import span
from flowbot.store import AlertRow, Silence, Store, Watermark
from flowbot.store import views as store_views
from flowbot.store.views import FlowFact, RunFact
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
STATES = ("alerting", "failed", "ok", "running", "disabled", "unknown")

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
    strip: tuple[Cell, ...]
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
    count: int
    reason: str
    runbook: str | None


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


def state_of(flow: FlowFact, alerting: bool) -> str:
    if alerting:
        return "alerting"
    if flow.state == "disabled":
        return "disabled"
    last = flow.last_run_state or ""
    if last == "failed":
        return "failed"
    if last == "success":
        return "ok"
    if last in RUNNING_STATES or last in WAITING_STATES:
        return "running"
    return "unknown"


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
    flows: Sequence[FlowFact],
    firing: Sequence[AlertRow],
    silences: Sequence[Silence],
    rules: Sequence[Any],
    filters: Filters,
    strips: Callable[[list[str]], Mapping[str, list[RunFact]]],
) -> View:
    """What `/` shows. `strips` reads the runs of the flows of the page shown only."""
    rule_of = {r.name: r for r in rules}
    by_id = {f.id: f for f in flows}
    incidents = []
    for a in sorted(firing, key=lambda a: a.first_seen):
        rule = rule_of.get(a.rule)
        incidents.append(
            Incident(
                id=a.id, rule=a.rule, flow_id=a.flow_id,
                flow=name_of(by_id.get(a.flow_id), a.flow_name or a.flow_id),
                sandbox=a.sandbox, severity=getattr(rule, "severity", "warning"),
                owner=getattr(rule, "owner", None) or "-", age=span(now - a.first_seen),
                since=_at(a.first_seen), silenced=silenced(a, silences), count=a.count,
                reason=cut(one_line(a.reason), 300), runbook=getattr(rule, "runbook", None),
            )
        )  # fmt: skip
    alerting = {a.flow_id for a in firing}
    states = {f.id: state_of(f, f.id in alerting) for f in flows}
    owner_cache: dict[str, tuple[str, ...]] = {}
    counts: dict[str, int] = {s: 0 for s in STATES}
    for s in states.values():
        counts[s] += 1

    def owners(f: FlowFact) -> tuple[str, ...]:
        if f.id not in owner_cache:
            owner_cache[f.id] = owners_of(f, rules)
        return owner_cache[f.id]

    q = filters.q.lower()
    matched = [
        f for f in flows
        if (not q or q in f.name.lower() or q == f.id.lower())
        and (not filters.state or states[f.id] == filters.state)
        and (not filters.owner or any(filters.owner.lower() in o.lower() for o in owners(f)))
    ]  # fmt: skip
    matched.sort(key=lambda f: (STATES.index(states[f.id]), f.sandbox, f.name.lower(), f.id))
    pages = max(1, -(-len(matched) // PAGE_SIZE))
    page = min(filters.page, pages)
    shown = matched[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    runs = strips([f.id for f in shown])
    lines = []
    for f in shown:
        recent = runs.get(f.id, [])
        oldest_first = list(reversed(recent[:STRIP_RUNS]))
        failed = sum(r.status == "failed" for r in oldest_first)
        ok = sum(r.status == "success" for r in oldest_first)
        other = len(oldest_first) - failed - ok
        summary = f"last {len(oldest_first)} runs: {ok} succeeded, {failed} failed"
        summary += f", {other} other" if other else ""
        last = recent[0] if recent else None
        lines.append(
            FlowLine(
                id=f.id, name=name_of(f, f.id), sandbox=f.sandbox, state=states[f.id],
                owners=owners(f), strip=tuple(cell(r) for r in oldest_first),
                summary=summary if recent else "no runs stored",
                last_records=_records(last), last_duration=_duration(last),
            )
        )  # fmt: skip
    all_owners = sorted({o for r in rules for o in ([r.owner] if r.owner else [])})
    return View(
        now=_at(now),
        sandboxes=tuple(_sandbox_line(s, marks.get(s), now) for s in sandboxes),
        incidents=tuple(incidents),
        flows=tuple(lines),
        matched=len(matched),
        total=len(flows),
        filters=Filters(filters.q, filters.state, filters.owner, page),
        pages=pages,
        owners=tuple(all_owners),
        silences=tuple(silences),
        counts=counts,
    )


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
        view = build_view(
            now=now,
            sandboxes=names,
            marks=store_views.watermarks(store, names),
            flows=[f for f in store_views.flows(store) if f.sandbox in names],
            firing=[a for a in store.firing_alerts() if a.sandbox in names],
            silences=store.silences(now),
            rules=ruleset.rules,
            filters=filters,
            strips=lambda ids: store_views.latest_runs(store, ids, STRIP_RUNS),
        )
        return 200, render("index.html.j2", view=view, now=view.now)

    def flow(self, store: Store, flow_id: str) -> tuple[int, str]:
        found = store_views.flows(store, flow_id=flow_id)
        if not found:
            return 404, render("missing.html.j2", what="flow", now=_at(self.clock()))
        f = found[0]
        runs = store_views.latest_runs(store, [f.id], FLOW_RUNS)[f.id]
        alerts = store_views.flow_alerts(store, f.id, limit=FLOW_ALERTS)
        firing = any(a.state == "firing" for a in alerts)
        rows = [
            {"cell": cell(r), "started": _at(r.started), "records": _records(r),
             "duration": _duration(r), "id": r.id}
            for r in runs
        ]  # fmt: skip
        return 200, render(
            "flow.html.j2",
            flow=f,
            name=name_of(f, f.id),
            state=state_of(f, firing),
            owners=owners_of(f, self.ruleset().rules),
            strip=[cell(r) for r in reversed(runs[:STRIP_RUNS])],
            runs=rows,
            alerts=alerts,
            when=_at,
            now=_at(self.clock()),
            span=span,
            reason=lambda text: cut(one_line(text), 300),
            timedelta=timedelta,
        )
