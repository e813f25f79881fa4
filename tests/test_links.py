"""Links a person can open, and what to try under each error.

Every link in a rendered message (Slack blocks parsed, email HTML parsed) is an AEP UI
link on experience.adobe.com, an API link labelled "(API)", or the rule's runbook
labelled "Runbook"; the manifest's links are still there, after the UI links. The
error table is a pure lookup: exact, the same code with another HTTP suffix, family.
"""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from flowbot.error_codes import ERROR_CODES, lookup
from flowbot.notifiers.sample import sample_for_rule, sample_notices
from flowbot.render import render
from flowbot.rules import load_rules

EVENTS = ("firing", "repeat", "resolved", "grouped")
UI = "https://experience.adobe.com/#/"
RUNBOOK = "https://wiki.example.com/aep/run-failed"
MANIFEST = ("failedRecords", "sampleErrors", "fileInfo")


class Anchors(HTMLParser):
    """(href, text) of every <a> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href, self._text = dict(attrs).get("href") or "", []

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.found.append((self._href, "".join(self._text)))
            self._href = None


def html_links(html: str) -> list[tuple[str, str]]:
    parser = Anchors()
    parser.feed(html)
    return parser.found


def slack_links(body: dict) -> list[tuple[str, str]]:
    texts = []
    for block in body["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(e["text"] for e in block.get("elements", []))
    return re.findall(r"<([^|>]+)\|([^>]*)>", "\n".join(texts))


def kind_of(url: str, label: str) -> str:
    if url.startswith(UI):
        return "ui"
    if label.endswith("(API)"):
        return "api"
    if label == "Runbook" and url == RUNBOOK:
        return "runbook"
    return "unlabelled"


def notices_for(event: str, *, runbook: str | None = RUNBOOK):
    return [replace(n, runbook=runbook) for n in sample_notices(event)]


@pytest.mark.parametrize("event", EVENTS)
def test_every_link_in_slack_and_email_is_a_ui_link_an_api_link_or_the_runbook(event):
    notices = notices_for(event)
    slack = slack_links(render(notices, event, "slack"))
    email = html_links(render(notices, event, "email")["html"])
    for links in (slack, email):
        kinds = [kind_of(url, label) for url, label in links]
        assert kinds and "unlabelled" not in kinds, links
        assert "ui" in kinds


@pytest.mark.parametrize("kind", ["slack", "email"])
def test_a_firing_message_links_the_run_and_the_dataflow_before_the_api_links(kind):
    notices = notices_for("firing")
    run = notices[0].finding.run
    body = render(notices, "firing", kind)
    links = slack_links(body) if kind == "slack" else html_links(body["html"])
    urls = [url for url, _ in links]
    run_url = f"{UI}sname:prod/platform/source/dataflows/{notices[0].flow.id}/activity/{run.id}"
    assert run_url in urls
    assert run_url.rsplit("/", 1)[0] in urls  # the dataflow's runs
    api = [i for i, (_, label) in enumerate(links) if label.endswith("(API)")]
    assert [links[i][1].split(" ")[0] for i in api] == list(MANIFEST)
    assert urls.index(run_url) < api[0]
    text = body["text"] if kind == "email" else str(body)
    assert f"flowbot explain {run.id} --sandbox prod" in text


def test_the_org_of_aep_ui_wins_over_the_payloads_and_reaches_every_ui_link():
    [notice] = notices_for("firing")
    flow = replace(notice.flow, raw={"imsOrgId": "ABC123@AdobeOrg"})
    notice = replace(notice, flow=flow)
    record = render([notice], "firing", "file", aep_org="mycompany")
    assert record["flow"]["url"].startswith(f"{UI}@mycompany/sname:prod/")
    assert record["run"]["url"].startswith(f"{UI}@mycompany/sname:prod/")
    ui = [u for u, _ in slack_links(render([notice], "firing", "slack", aep_org="mycompany"))]
    assert ui and all("@mycompany/" in u for u in ui if u.startswith(UI))
    without = render([notice], "firing", "file")
    assert without["run"]["url"].startswith(f"{UI}@ABC123@AdobeOrg/sname:prod/")


def test_ids_from_the_api_cannot_leave_the_ui_route():
    [notice] = notices_for("firing")
    run = replace(notice.finding.run, id="../../x?y=1#z")
    notice = replace(notice, finding=replace(notice.finding, run=run))
    url = render([notice], "firing", "file")["run"]["url"]
    assert url.endswith("/activity/..%2F..%2Fx%3Fy%3D1%23z")


@pytest.mark.parametrize("kind", ["slack", "email", "terminal", "file"])
def test_the_rules_runbook_is_in_every_kind_of_message(kind):
    body = render(notices_for("firing"), "firing", kind)
    assert RUNBOOK in str(body)
    assert RUNBOOK not in str(render(notices_for("firing", runbook=None), "firing", kind))


def test_a_runbook_that_is_not_a_plain_url_is_shown_as_text():
    odd = "https://wiki.example.com/a b"
    body = render(notices_for("firing", runbook=odd), "firing", "slack")
    assert odd in str(body) and f"<{odd}|" not in str(body)


def test_notify_preview_samples_carry_the_rules_runbook(tmp_path):
    (tmp_path / "rules.yaml").write_text(
        "channels:\n  out: {terminal: true}\n"
        "rules:\n  - name: failed\n    type: status\n    status: [failed]\n    channels: [out]\n"
        f"    runbook: {RUNBOOK}\n",
        encoding="utf-8",
    )
    rule = load_rules(tmp_path / "rules.yaml").rule("failed")
    [notice] = sample_for_rule(rule)
    assert notice.runbook == RUNBOOK


# ------------------------------------------------------------------ the error table


def test_errors_in_messages_carry_their_meaning_and_first_step():
    body = render(sample_notices(), "firing", "terminal")["text"]
    for code in ("CONNECTOR-2001-500", "INGEST-1212-400", "MAPPER-3700-400"):
        help = lookup(code)
        assert help is not None and not help.is_family
        assert help.meaning in body and help.first_step in body
    record = render(sample_notices(), "firing", "file")
    assert record["errors"][0]["help"]["source"].startswith("https://experienceleague.adobe.com/")


@pytest.mark.parametrize(
    ("code", "want"),
    [
        ("CONNECTOR-1001-500", "CONNECTOR-1001-500"),
        (" ingest-1555-400 ", "INGEST-1555-400"),
        ("INGEST-1212-500", "INGEST-1212-400"),  # another HTTP suffix
        ("CONNECTOR-9999-500", "CONNECTOR-"),
        ("CTOR-2001-500", "CTOR-2001-500"),
        ("CTOR-7-500", "CTOR-"),
        ("MAPPER-3701-400", "MAPPER-"),
        ("FLOW-1439-404", "FLOW-"),
        ("2200", "2200"),
    ],
)
def test_lookup_exact_then_same_code_then_family(code, want):
    found = lookup(code)
    assert found is not None and found.code == want


@pytest.mark.parametrize(
    "code", ["", "   ", "UNKNOWN-1-400", "22000", "CONNECTOR-", "X" * 101, "INGEST"]
)
def test_lookup_finds_nothing_for_unknown_codes(code):
    assert lookup(code) is None


def test_every_entry_is_unique_sourced_and_one_line():
    codes = [e.code for e in ERROR_CODES]
    assert len(codes) == len(set(codes))
    for entry in ERROR_CODES:
        assert entry.source.startswith("https://experienceleague.adobe.com/en/docs/")
        for text in (entry.meaning, entry.first_step):
            assert text and "\n" not in text and len(text) <= 200
