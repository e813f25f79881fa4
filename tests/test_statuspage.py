"""The status page over real sockets: what `/` and a flow's page show, the filters,
escaping, the security headers, and the token beyond loopback."""

from __future__ import annotations

import re

import pytest
from seeded_store import HOSTILE
from statuspage_harness import Served

from flowbot.statuspage import CSP, authorize, parse_filters


@pytest.fixture
def served(tmp_path):
    with Served(tmp_path) as s:
        yield s


def rows(html: str, cls: str) -> list[str]:
    return re.findall(rf'<tr class="{cls}[^"]*">(.*?)</tr>', html, re.S)


def test_the_page_shows_sandboxes_the_firing_incident_flows_and_silences(served):
    status, headers, html = served.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == CSP and "script-src" not in CSP
    assert "<script" not in html.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    (incident,) = rows(html, "incident")
    assert "run-failed" in incident and "critical" in incident and "@data-ops" in incident
    assert "20h" in incident and "runbook" in incident and "/flow/flow-crm" in incident
    flows = rows(html, "flow")
    assert len(flows) == 4 and "alerting" in flows[0]
    assert "last 4 runs: 2 succeeded, 2 failed" in flows[0]
    assert 'fill="#c62828"' in flows[0] and "✗" in flows[0] and "✓" in flows[0]
    assert "maintenance &lt;b&gt;window&lt;/b&gt;" in html  # the silence, escaped
    assert "Last good cycle" in html and "healthy" in html


def test_filters_by_name_state_and_owner(served):
    assert [HOSTILE not in r for r in rows(served.get("/?q=web")[2], "flow")] == [True]
    only = rows(served.get("/?state=alerting")[2], "flow")
    assert len(only) == 1 and "flow-crm" in only[0]
    web = rows(served.get("/?owner=web-team")[2], "flow")
    assert len(web) == 1 and "web-events" in web[0]
    assert "No flow matches" in served.get("/?q=nothing-like-this")[2]


def test_hostile_queries_are_bounded_and_never_break_the_page(served):
    for query in (
        "?q=" + "x" * 100_00,
        "?state=<b>",
        "?page=-1",
        "?page=99999999999",
        "?q=%ff%fe",
        "?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10",
        "?q=<script>",
    ):
        status, _, html = served.get("/" + query)
        assert status in (200, 431), query
        assert "<script>" not in html


def test_parse_filters_keeps_known_states_only():
    assert parse_filters("state=failed&q=crm&page=2").state == "failed"
    assert parse_filters("state=evil").state == ""
    assert parse_filters("page=0").page == 1


def test_a_flow_page_shows_its_runs_and_alert_history(served):
    status, _, html = served.get("/flow/flow-web")
    assert status == 200 and "<h1>web-events</h1>" in html
    assert html.count('<tr class="run-') == 5
    assert "after 10h" in html and "resolved" in html
    assert served.get("/flow/no-such-flow")[0] == 404
    assert served.get("/nowhere")[0] == 404


def test_health_endpoints_stay_open_beside_the_page(served):
    assert served.get("/healthz")[0] == 200 and served.get("/metrics")[0] == 200


def test_beyond_loopback_the_page_needs_the_token(tmp_path):
    with Served(tmp_path, host="127.0.0.2", token="s3cret-ui-token") as s:
        status, headers, _ = s.get("/")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert s.get("/", password="wrong")[0] == 401
        assert s.get("/", password="s3cret-ui-token")[0] == 200
        assert s.get("/flow/flow-web", bearer="s3cret-ui-token")[0] == 200
        assert s.get("/status.css")[0] == 401
        assert s.get("/healthz")[0] == 200 and s.get("/readyz")[0] == 200


def test_beyond_loopback_without_a_token_the_page_is_refused(tmp_path):
    with Served(tmp_path, host="127.0.0.2") as s:
        status, _, text = s.get("/")
        assert status == 403 and "FLOWBOT_UI_TOKEN" in text
        assert s.get("/", password="")[0] == 403
        assert s.get("/healthz")[0] == 200 and s.get("/metrics")[0] == 200


def test_loopback_needs_no_token():
    assert authorize({}, "", "127.0.0.1") is None and authorize({}, "t", "::1") is None
    assert authorize({}, "", "0.0.0.0").status == 403
    assert authorize({"authorization": "Basic !!!"}, "tok", "10.0.0.1").status == 401
