"""The read-only status page on the daemon's HTTP port: `GET /` (sandboxes, firing
incidents, every flow with a strip of its last runs, the silences; filters by name,
state and owner), `GET /flow/<id>` (its runs and alert history), `GET /status.css`.

flowbot.statusview decides what a page shows (pure, from facts the store holds);
`StatusPages` is the handler `health.HealthServer` calls for every path it does not
answer itself: it checks the token, opens its own short-lived connection to the
database (never the daemon's), reads only what the page shows (the counts by SQL
aggregate, one page of flows, their strips in one query) and renders with Jinja2
(autoescaped; the templates are flowbot's own files in flowbot/web/, never the
operator's, so they run unsandboxed: the sandbox's check of every attribute cost a
third of the page's time). No JavaScript: the Content-Security-Policy allows none.

Safe by default: bound to 127.0.0.1, ::1 or localhost the page is open; bound to any
other address it asks for FLOWBOT_UI_TOKEN (HTTP Basic, any user name, the token as the
password; or `Authorization: Bearer <token>`) and refuses to serve at all while the
token is unset. /healthz, /readyz and /metrics are answered by the server before this.
"""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from flowbot.context import aep_run_url, aep_url
from flowbot.health import Answer, Request
from flowbot.report import span
from flowbot.statusview import (
    PAGE_SIZE,
    STRIP_RUNS,
    Filters,
    acknowledged,
    build_view,
    cell,
    duration_of,
    name_of,
    owned_by,
    owners_of,
    pages_of,
    parse_filters,
    records_of,
    shown_at,
    strip_svg,
    ui_flow,
)
from flowbot.store import Store
from flowbot.store import actions as store_actions
from flowbot.store import views as store_views
from flowbot.store.actions import Ack
from flowbot.store.views import FlowFilter
from flowbot.untrusted import cut, one_line

log = logging.getLogger("flowbot.statuspage")

WEB = Path(__file__).parent / "web"
FLOW_RUNS = 100  # runs on a flow's page
FLOW_ALERTS = 100  # alerts on a flow's page
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})

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
def environment() -> Environment:
    env = Environment(
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
            render("missing.html.j2", what="page", now=shown_at(self.clock())),
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
            return 404, render("missing.html.j2", what="flow", now=shown_at(self.clock()))
        ruleset = self.ruleset()
        org = aep_org(ruleset)
        ui = ui_flow(f, f.id, f.sandbox)
        runs = store_views.latest_runs(store, [f.id], FLOW_RUNS)[f.id]
        alerts = store_views.flow_alerts(store, f.id, limit=FLOW_ALERTS)
        acks = acks_of(store, [a.id for a in alerts])
        rows = [
            {"cell": cell(r), "started": shown_at(r.started), "records": records_of(r),
             "duration": duration_of(r), "id": r.id, "url": aep_run_url(ui, r.id, org=org)}
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
            when=shown_at,
            now=shown_at(self.clock()),
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
