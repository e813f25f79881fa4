"""Templates → message bodies: golden files, escaping, limits, fallback, checks.

Golden files in tests/golden/ hold the rendered messages of sample 01 for every kind
and event; regenerate them with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py`
and review the diff.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowbot.models import Finding, Notice, RunError
from flowbot.notifiers.sample import sample_flow, sample_notices
from flowbot.render import (
    DEFAULT_TEMPLATES,
    check_templates,
    count,
    duration,
    format_time,
    pct,
    render,
    render_meta,
)

GOLDEN = Path(__file__).parent / "golden"
EVENTS = ("firing", "repeat", "resolved", "grouped")
KINDS = ("slack", "email", "terminal", "file")


def as_text(kind: str, body: dict) -> str:
    if kind == "email":
        return f"Subject: {body['subject']}\n\n{body['text']}\n---- html ----\n{body['html']}\n"
    if kind == "terminal":
        return body["text"] + "\n"
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("kind", KINDS)
def test_rendered_sample_01_matches_golden_file(kind, event):
    body = render(sample_notices(event), event, kind, timezone="Europe/Paris")
    got = as_text(kind, body)
    path = GOLDEN / f"{kind}-{event}.{'json' if kind in ('slack', 'file') else 'txt'}"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(got, encoding="utf-8")
    want = path.read_text(encoding="utf-8")
    if got != want:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(True), got.splitlines(True), str(path), "rendered now"
            )
        )
        pytest.fail(f"{path.name} changed (UPDATE_GOLDEN=1 to accept):\n{diff}")


def test_firing_message_carries_everything_a_person_needs():
    body = render(sample_notices(), "firing", "slack")
    text = json.dumps(body)
    for needed in (
        "crm-daily-import",
        "c9cef9cb-c934-4467-8ef9-cbc934546741",
        "prod",
        "CRITICAL",
        "too-many-bad-records",
        "9830305a-985f-47d0-b030-5a985fd7d004",
        "success",
        "2020-08-05 19:34:18 UTC",
        "2020-08-05 19:35:13 UTC",
        "55s",
        "100 in",
        "99 out",
        "1 failed (1.0%)",
        "CONNECTOR-2001-500",
        "INGEST-1212-400",
        "MAPPER-3700-400",
        "1 record)",
        "failedRecords",
        "sampleErrors",
        "fileInfo",
        "https://experience.adobe.com/#/sname:prod/platform/source/dataflows/c9cef9cb",
        "@data-oncall",
    ):
        assert needed in text, needed


def test_aep_link_includes_the_org_when_the_flow_payload_has_it():
    [notice] = sample_notices()
    flow = replace(notice.flow, raw={"imsOrgId": "ABC123@AdobeOrg"})
    body = render([replace(notice, flow=flow)], "firing", "file")
    assert body["flow"]["url"] == (
        "https://experience.adobe.com/#/@ABC123@AdobeOrg/sname:prod/platform/source/"
        "dataflows/c9cef9cb-c934-4467-8ef9-cbc934546741/activity"
    )


def evil_notice(errors: int = 1) -> Notice:
    [notice] = sample_notices()
    bad = tuple(
        RunError(f"EVIL-{i}", "x <!channel> & <https://evil.example|click> " + "y" * 300)
        for i in range(errors)
    )
    run = replace(notice.finding.run, errors=bad, activities=())
    flow = replace(notice.flow, name="crm <!here> & co")
    return replace(notice, flow=flow, finding=replace(notice.finding, run=run, flow=flow))


def slack_texts(body: dict) -> list[str]:
    out = []
    for block in body["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            out.append(element["text"])
    return out


@pytest.mark.parametrize("event", EVENTS)
def test_slack_escapes_untrusted_text_but_not_the_owner_mention(event):
    notice = replace(evil_notice(), owner="<!subteam^S123|data-oncall>")
    body = render([notice] * (3 if event == "grouped" else 1), event, "slack")
    everything = "\n".join([body["text"], *slack_texts(body)])
    if "update" in body:
        everything += "\n".join(slack_texts(body["update"]))
    assert "<!channel>" not in everything and "<!here>" not in everything
    assert "<https://evil.example" not in everything
    assert "crm &lt;!here&gt; &amp; co" in everything
    if event in ("firing", "grouped"):
        assert "<!subteam^S123|data-oncall>" in everything
        assert "&lt;!channel&gt;" in everything


def test_email_html_escapes_and_text_keeps_the_words():
    body = render([evil_notice()], "firing", "email")
    assert "<!channel>" not in body["html"] and "&lt;!channel&gt;" in body["html"]
    assert "crm &lt;!here&gt; &amp; co" in body["html"]
    assert "<!channel>" in body["text"]


def test_long_error_lists_stay_inside_slack_limits():
    body = render([evil_notice(500)], "firing", "slack")
    assert len(body["blocks"]) <= 50
    for block in body["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        elif "text" in block:
            assert len(block["text"]["text"]) <= 3000
    assert "and 490 more" in json.dumps(body)
    assert len(json.dumps(body)) < 40_000


def test_long_names_are_cut_in_the_header():
    [notice] = sample_notices()
    flow = replace(notice.flow, name="n" * 400)
    body = render([replace(notice, flow=flow)], "firing", "slack")
    header = body["blocks"][0]["text"]["text"]
    assert len(header) <= 150 and header.endswith("…")


def test_grouped_message_lists_flows_and_cuts_the_rest():
    [notice] = sample_notices()
    notices = [replace(notice, flow=sample_flow(f"flow-{i:02d}", f"id-{i:02d}")) for i in range(35)]
    for kind in ("slack", "email", "terminal"):
        text = json.dumps(render(notices, "grouped", kind))
        assert "flow-00" in text and "flow-19" in text and "flow-20" not in text
        assert "and 15 more" in text
        assert "35 dataflows" in text


def test_missing_run_message_says_when_a_run_was_expected_and_when_the_last_was():
    flow = sample_flow()
    finding = Finding(
        rule="hourly-import-missing",
        rule_type="missing_run",
        flow=flow,
        run=None,
        reason="no run started within 1h + 15m",
        expected_at=datetime(2024, 5, 1, 10, 15, tzinfo=UTC),
        last_run_at=datetime(2024, 5, 1, 9, 0, 2, tzinfo=UTC),
    )
    notice = Notice(
        event="firing",
        rule="hourly-import-missing",
        rule_type="missing_run",
        severity="warning",
        flow=flow,
        finding=finding,
        first_seen_at=datetime(2024, 5, 1, 10, 16, tzinfo=UTC),
        sandbox="prod",
    )
    for kind in ("slack", "email", "terminal"):
        text = json.dumps(render([notice], "firing", kind))
        assert "2024-05-01 10:15:00 UTC" in text, kind
        assert "2024-05-01 09:00:02 UTC" in text, kind
    assert render([notice], "firing", "file")["expected_at"] == "2024-05-01T10:15:00+00:00"


def test_a_directory_overrides_templates_file_by_file(tmp_path):
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "firing.md.j2").write_text("# custom {{ flow.name }}\nhello\n")
    body = render(sample_notices(), "firing", "slack", templates_dir=tmp_path)
    assert body["blocks"][0]["text"]["text"] == "custom crm-daily-import"
    repeat = render(sample_notices("repeat"), "repeat", "slack", templates_dir=tmp_path)
    assert "still firing" in repeat["text"]  # not overridden: the default


def test_a_rule_template_directory_wins_over_the_templates_dir(tmp_path):
    common, rule = tmp_path / "common", tmp_path / "rule"
    for root, word in ((common, "common"), (rule, "rule")):
        (root / "terminal").mkdir(parents=True)
        (root / "terminal" / "firing.txt.j2").write_text(word)
    body = render(sample_notices(), "firing", "terminal", templates_dir=common, rule_template=rule)
    assert body == {"text": "rule"}


def test_a_broken_template_falls_back_to_a_plain_message_and_logs(tmp_path, caplog):
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "firing.md.j2").write_text("{{ flow.nmae }} {{ run.__class__ }}")
    with caplog.at_level(logging.ERROR, logger="flowbot.render"):
        body = render([evil_notice()], "firing", "slack", templates_dir=tmp_path)
    assert "too-many-bad-records firing" in body["text"]
    assert "crm &lt;!here&gt;" in body["text"]
    assert "failed" in caplog.text and "slack/firing" in caplog.text


def test_templates_cannot_reach_python_internals(tmp_path, caplog):
    (tmp_path / "terminal").mkdir()
    (tmp_path / "terminal" / "firing.txt.j2").write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    )
    with caplog.at_level(logging.ERROR, logger="flowbot.render"):
        body = render(sample_notices(), "firing", "terminal", templates_dir=tmp_path)
    assert "subclasses" not in body["text"] and "[CRITICAL]" in body["text"]
    assert "SecurityError" in caplog.text or "UndefinedError" in caplog.text


def test_default_templates_pass_the_check():
    assert check_templates(None) == []


def test_check_reports_syntax_errors_and_unknown_names_with_file_and_line(tmp_path):
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "firing.txt.j2").write_text("ok\n{% if %}\n")
    (tmp_path / "email" / "firing.subject.j2").write_text("line one\n{{ flwo.name }}\n")
    (tmp_path / "terminal").mkdir()
    (tmp_path / "terminal" / "firing.txt.j2").write_text("a\nb\n{{ run.nope }}\n")
    problems = check_templates(tmp_path)
    joined = "\n".join(problems)
    assert f"{tmp_path / 'email' / 'firing.txt.j2'}:2:" in joined
    assert f"{tmp_path / 'email' / 'firing.subject.j2'}:2: unknown variable 'flwo'" in joined
    assert f"{tmp_path / 'terminal' / 'firing.txt.j2'}:3:" in joined and "nope" in joined


def test_render_meta_gives_a_body_for_every_kind():
    text = "monitoring degraded for sandbox prod since 2024-05-01 10:00 UTC: <!channel> 503"
    slack = render_meta(text, "slack")
    assert "&lt;!channel&gt;" in slack["blocks"][0]["text"]["text"]
    email = render_meta(text, "email")
    assert email["subject"].startswith("[flowbot] monitoring degraded")
    assert "&lt;!channel&gt;" in email["html"]
    assert render_meta(text, "terminal") == {"text": text}
    assert render_meta(text, "file") == {"event": "meta", "text": text}


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (None, "—"),
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=65), "1m 05s"),
        (timedelta(hours=2, minutes=3), "2h 03m"),
        (timedelta(days=3, hours=4), "3d 4h"),
        (90, "1m 30s"),
    ],
)
def test_duration_filter(value, want):
    assert duration(value) == want


def test_count_pct_and_time_filters():
    assert count(1234567) == "1,234,567" and count(None) == "—"
    assert pct(0.012) == "1.2%" and pct(None) == "—" and pct(0.00001) == "<0.1%"
    at = datetime(2024, 1, 15, 23, 30, tzinfo=UTC)
    assert format_time(at) == "2024-01-15 23:30:00 UTC"
    assert format_time(at, "Europe/Paris") == "2024-01-15 23:30:00 UTC (2024-01-16 00:30 CET)"
    assert format_time(at, "Not/AZone") == "2024-01-15 23:30:00 UTC"


def test_default_templates_exist_for_every_kind_and_event():
    for event in EVENTS:
        assert (DEFAULT_TEMPLATES / "slack" / f"{event}.md.j2").is_file()
        assert (DEFAULT_TEMPLATES / "terminal" / f"{event}.txt.j2").is_file()
        for part in ("subject", "txt", "html"):
            assert (DEFAULT_TEMPLATES / "email" / f"{event}.{part}.j2").is_file()
