"""The status page's reads and what they add to the page: acknowledgements beside
silences, links into the AEP UI (context's helpers, escaped), and paging at many flows
with the counts read by SQL aggregate (each checked against the flows themselves)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from seeded_store import NOW
from statuspage_harness import Served

from flowbot.context import aep_run_url, aep_url
from flowbot.models import Flow, Run
from flowbot.statusview import PAGE_SIZE
from flowbot.store import Store
from flowbot.store.actions import acknowledge

HOSTILE_USER = "<b>U1&evil</b>"


@pytest.fixture
def served(tmp_path):
    with Served(tmp_path) as s:
        yield s


def incident_rows(page: str) -> list[str]:
    return re.findall(r'<tr class="incident[^"]*">(.*?)</tr>', page, re.S)


def test_an_acknowledged_incident_says_by_whom_and_when(served):
    (before,) = incident_rows(served.get("/")[2])
    assert "acknowledged" not in before and "<td>no</td>" in before
    store = Store(served.db)
    try:
        (alert,) = store.firing_alerts()
        acknowledge(store, alert.id, user=HOSTILE_USER, now=NOW - timedelta(minutes=30),
                    signature="E1")  # fmt: skip
    finally:
        store.close()
    page = served.get("/")[2]
    (after,) = incident_rows(page)
    assert "acknowledged by &lt;b&gt;U1&amp;evil&lt;/b&gt; at 2026-11-30 07:30 UTC" in after
    assert HOSTILE_USER not in page
    flow_page = served.get("/flow/flow-crm")[2]
    assert "acknowledged by &lt;b&gt;U1&amp;evil&lt;/b&gt; at 2026-11-30 07:30 UTC" in flow_page


def test_silenced_and_acknowledged_show_side_by_side(served):
    store = Store(served.db)
    try:
        (alert,) = store.firing_alerts()
        acknowledge(store, alert.id, user="U2", now=NOW, signature="E1")
        store.add_silence(rule="run-failed", flow=None, reason="known", now=NOW,
                          expires=NOW + timedelta(hours=1))  # fmt: skip
    finally:
        store.close()
    (row,) = incident_rows(served.get("/")[2])
    assert "silenced; " in row and "acknowledged by U2 at 2026-11-30 08:00 UTC" in row


def test_incidents_and_flow_pages_link_the_dataflow_and_the_run_in_aep(served):
    flow = Flow(id="flow-crm", sandbox="prod")
    (row,) = incident_rows(served.get("/")[2])
    links = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', row)]
    assert aep_url(flow, org="acme") in links
    assert aep_run_url(flow, "flow-crm-run3", org="acme") in links
    assert "/#/@acme/sname:prod/" in aep_url(flow, org="acme")
    page = served.get("/flow/flow-web")[2]
    links = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page)]
    web = Flow(id="flow-web", sandbox="prod")
    assert aep_url(web, org="acme") in links
    assert {aep_run_url(web, f"flow-web-run{n}", org="acme") for n in range(1, 6)} <= set(links)


def test_a_hostile_flow_id_stays_inside_its_links(served):
    evil = 'x"><script>alert(1)</script>/../../evil?'
    store = Store(served.db)
    try:
        store.upsert_flows([Flow(id=evil, name="evil-flow", state="enabled", sandbox="prod")], NOW)
        store.upsert_runs([Run(id=evil + "-r", flow_id=evil, status="failed", sandbox="prod",
                               started_at=NOW - timedelta(hours=1), raw={})], NOW)  # fmt: skip
        store.insert_alert(rule="run-failed", flow_id=evil, sandbox="prod", flow_name="evil-flow",
                           now=NOW, count=1, last_run_id=evil + "-r", reason="x", muted=False)  # fmt: skip
    finally:
        store.close()
    page = served.get("/")[2]
    assert "<script>" not in page
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page)]
    aep = [h for h in hrefs if "evil" in h and h.startswith("https://")]
    assert len(aep) == 2
    for h in aep:
        assert h.startswith("https://experience.adobe.com/#/@acme/sname:prod/platform/source/")
        assert '"' not in h and "<" not in h and "/../" not in h
    status, _, flow_page = served.get("/flow/" + quote(evil, safe=""))
    assert status == 200 and "<h1>evil-flow</h1>" in flow_page and "<script>" not in flow_page
    run_link = aep_run_url(Flow(id=evil, sandbox="prod"), evil + "-r", org="acme")
    assert run_link in [html.unescape(h) for h in re.findall(r'href="([^"]+)"', flow_page)]


def many(served: Served, n: int) -> None:
    """`n` more flows in prod: every third failed last, the rest fine; no alerts."""
    store = Store(served.db)
    try:
        flows = [Flow(id=f"bulk-{i:04d}", name=f"Bulk-{i:04d}", state="enabled", sandbox="prod")
                 for i in range(n)]  # fmt: skip
        store.upsert_flows(flows, NOW)
        store.upsert_runs([
            Run(id=f"{f.id}-r", flow_id=f.id, sandbox="prod",
                status="failed" if i % 3 == 0 else "success",
                started_at=NOW - timedelta(minutes=i + 1), completed_at=NOW - timedelta(minutes=i),
                input_records=10, failed_records=0, raw={})
            for i, f in enumerate(flows)
        ], NOW)  # fmt: skip
    finally:
        store.close()


def states(page: str) -> list[str]:
    return re.findall(r'<tr class="flow state-(\w+)">', page)


def test_many_flows_page_by_state_with_whole_counts(served):
    many(served, 250)  # 84 of them failed last (every third); with the seeded 4: 254
    first = served.get("/")[2]
    assert "Flows (254 of 254)" in first and "Page 1 of 3" in first
    assert len(states(first)) == PAGE_SIZE and states(first)[0] == "alerting"
    assert states(first) == sorted(states(first), key=["alerting", "failed", "ok"].index)
    counts = dict(re.findall(r'<option value="(\w+)"[^>]*>\w+ \((\d+)\)</option>', first))
    assert counts == {"alerting": "1", "failed": "84", "ok": "169", "running": "0",
                      "disabled": "0", "unknown": "0"}  # fmt: skip
    names = []
    for n in (1, 2, 3):
        page = served.get(f"/?page={n}")[2].split('id="flows-h"')[1]
        names += re.findall(r'<th scope="row"><a href="/flow/([^"]+)">', page)
    assert len(names) == len(set(names)) == 254  # every flow once, over three pages
    failed = served.get("/?state=failed&page=9")[2]  # past the end: its last page
    assert "Flows (84 of 254)" in failed and set(states(failed)) == {"failed"}
    assert len(states(failed)) == 84 and "Page " not in failed


def test_the_name_filter_folds_case_and_matches_ids(served):
    many(served, 30)
    page = served.get("/?q=bulk-002")[2]
    assert sorted(re.findall(r'<a href="/flow/(bulk-\d+)">', page)) == [
        f"bulk-{i:04d}" for i in range(20, 30)
    ]
    assert "Flows (1 of" in served.get("/?q=FLOW-WEB")[2]  # the id, any case
