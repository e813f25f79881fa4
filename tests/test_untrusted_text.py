"""Text and links from the API never become structure, links or mail headers, in any
channel; Slack cuts never split an entity, a link, a code span or a character."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from servers import smtp_server

from flowbot.blocks import SLACK_BLOCKS, cut_mrkdwn, slack_blocks
from flowbot.models import Activity, Link, Message, Notice, RunError
from flowbot.notifiers.email import EmailNotifier
from flowbot.notifiers.sample import sample_notices
from flowbot.render import render
from flowbot.settings import Settings
from flowbot.untrusted import cut, is_trusted_url, one_line

INJECTION = "crm\r\nBcc: victim@example.com\r\nSubject: pwned\n# INJECTED HEADER\n---\n[context] x"


def hostile(
    name: str = INJECTION, messages: tuple[str, ...] = (INJECTION,), links=None, count=None
) -> Notice:
    """Sample 01 with API text replaced by `name`, error `messages` and diagnostic links
    (sample 01's by default)."""
    [notice] = sample_notices()
    links = notice.finding.links if links is None else links
    errors = tuple(RunError(f"E-{i}", m, record_count=count) for i, m in enumerate(messages))
    activity = Activity("a1", "promotion\r\nBcc: x@example.com", links=tuple(links))
    run = replace(notice.finding.run, errors=errors, activities=(activity,))
    flow = replace(notice.flow, name=name)
    finding = replace(notice.finding, run=run, flow=flow, reason=f"reason {INJECTION}")
    return replace(notice, flow=flow, finding=finding)


def slack_texts(body: dict) -> list[str]:
    out = []
    for block in body["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out.extend(e["text"] for e in block.get("elements", []))
    return out


class Html(HTMLParser):
    """Collects what matters of an HTML body: doctype, title, hrefs, bdi spans."""

    def __init__(self) -> None:
        super().__init__()
        self.doctype, self.title, self.hrefs, self.bdi = "", "", [], []
        self._in: list[str] = []
        self.body_style = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in.append(tag)
        if tag == "a":
            self.hrefs.append(attrs.get("href"))
        if tag == "bdi":
            assert attrs.get("dir") == "auto"
            self.bdi.append("")
        if tag == "body":
            self.body_style = attrs.get("style", "")

    def handle_endtag(self, tag):
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data):
        if self._in and self._in[-1] == "title":
            self.title += data
        if "bdi" in self._in:
            self.bdi[-1] += data


def parse_html(html: str) -> Html:
    parser = Html()
    parser.feed(html)
    return parser


# ------------------------------------------------------------------ control characters


def test_one_line_neutralises_every_kind_of_line_break_and_control():
    text = "a\r\nb\rc\nd\u2028e\u2029f\x85g\x0bh\x0ci\tj\x1b[2Jk\x00l\u202em\ud800n"
    got = one_line(text)
    assert got.isprintable()
    assert got.count("⏎") == 8 and "\x1b" not in got and "\u202e" not in got
    assert got.startswith("a ⏎ b") and got.endswith("\ufffdn")
    assert one_line("plain ✓ text") == "plain ✓ text"


@pytest.mark.parametrize("event", ["firing", "repeat", "resolved", "grouped"])
def test_crlf_from_the_api_never_makes_a_mail_header_or_a_body_line(event):
    notices = [hostile()] * (3 if event == "grouped" else 1)
    notices = [replace(n, event=event if event != "grouped" else "firing") for n in notices]
    body = render(notices, event, "email")
    with smtp_server() as smtp:
        mailer = EmailNotifier(
            "oncall",
            ("oncall@example.com",),
            Settings(smtp_host=smtp.host, smtp_port=smtp.port, smtp_starttls=False),
            now=lambda: datetime(2024, 5, 1, tzinfo=UTC),
        )
        mailer.send(Message("oncall", "email", event, body), None)
        [mail] = smtp.messages
        [(_, recipients)] = smtp.envelopes
    assert recipients == ["oncall@example.com"]
    assert mail["Bcc"] is None and len(mail.get_all("Subject")) == 1
    assert "\n" not in mail["Subject"]
    if event != "grouped":
        assert "crm ⏎ Bcc: victim@example.com" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for content in (text, html):
        for line in content.splitlines():
            assert not re.match(r"\s*(Bcc|Subject):", line), line
    assert "crm ⏎ Bcc: victim@example.com ⏎ Subject: pwned" in text


@pytest.mark.parametrize("event", ["firing", "repeat", "resolved", "grouped"])
def test_newlines_in_names_and_errors_never_make_slack_structure(event):
    clean = render(sample_notices(event), event, "slack")
    notices = [hostile()] * (3 if event == "grouped" else 1)
    body = render(notices, event, "slack")
    for got, want in ((body, clean), (body.get("update"), clean.get("update"))):
        if want is None:
            continue
        assert [b["type"] for b in got["blocks"]] == [b["type"] for b in want["blocks"]]
        headers = [b["text"]["text"] for b in got["blocks"] if b["type"] == "header"]
        assert len(headers) == 1 and not headers[0].startswith("INJECTED")
    assert "INJECTED HEADER" in json.dumps(body)  # shown, as text


def test_a_value_that_starts_like_a_marker_stays_text(tmp_path):
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "firing.md.j2").write_text(
        "# {{ rule }}\n{{ flow.name }}\n{{ reason }}\n{{ errors[0].message }}\n[context] end\n"
    )
    notice = hostile(name="# fake header", messages=("---",))
    notice = replace(notice, finding=replace(notice.finding, reason="[context] fake"))
    body = render([notice], "firing", "slack", templates_dir=tmp_path)
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "context"]
    assert "# fake header" in body["blocks"][1]["text"]["text"]


def test_terminal_text_has_no_escape_sequences_or_fake_lines():
    text = render([hostile(name="crm\x1b[2J\x1b]0;owned\x07\r\nBcc: x")], "firing", "terminal")[
        "text"
    ]
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert not any(line.startswith("Bcc:") for line in text.splitlines())


def test_the_file_record_keeps_the_raw_text_json_escaped():
    record = render([hostile()], "firing", "file")
    line = json.dumps(record)
    assert "\n" not in line and json.loads(line)["flow"]["name"] == INJECTION


# ------------------------------------------------------------------ links


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://platform.adobe.io/data/foundation/export/batches/X/meta?path=a", True),
        ("https://experience.adobe.com/#/x", True),
        ("https://ims-na1.adobelogin.com/ims", True),
        ("https://PLATFORM.ADOBE.IO/x", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)//https://platform.adobe.io", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("http://platform.adobe.io/x", False),
        ("https://platform.adobe.io.evil.example/x", False),
        ("https://evil-adobe.io/x", False),
        ("https://evil.example\\@platform.adobe.io/x", False),
        ("https://user:pw@platform.adobe.io/x", False),
        ("https://platform.adobe.io:8443/x", False),
        ("https://platform.adobe.io/x y", False),
        ("https://platform.adobe.io/x\r\nBcc: a", False),
        ("https://platform.adobe.io/x|evil", False),
        ("//platform.adobe.io/x", False),
        ("", False),
    ],
)
def test_only_https_adobe_urls_are_trusted(url, trusted):
    assert is_trusted_url(url) is trusted


def test_the_configured_origin_is_trusted_exactly():
    origins = ("http://127.0.0.1:8089/data/foundation/flowservice",)
    assert is_trusted_url("http://127.0.0.1:8089/export/x", origins)
    assert not is_trusted_url("http://127.0.0.1:8090/export/x", origins)
    assert not is_trusted_url("https://127.0.0.1:8089/export/x", origins)
    assert not is_trusted_url("http://127.0.0.1:8089/export/x")


LINKS = (
    Link("evil", "javascript:alert(document.cookie)"),
    Link("foreign", "https://evil.example/steal"),
    Link("ok", "https://platform.adobe.io/data/foundation/export/batches/B/meta?path=row_errors"),
    Link("local", "http://127.0.0.1:8089/export/batches/B/meta?path=row_errors"),
)
LOCAL = ("http://127.0.0.1:8089/data/foundation/flowservice",)


def test_slack_links_only_trusted_urls_and_shows_the_rest_as_text():
    body = render([hostile(links=LINKS)], "firing", "slack", link_origins=LOCAL)
    text = "\n".join(slack_texts(body))
    targets = re.findall(r"<([^|>]+)\|", text)
    assert targets and all(t.startswith(("https://", "http://127.0.0.1:8089/")) for t in targets)
    assert not any("evil" in t or t.startswith("javascript") for t in targets)
    assert "`javascript:alert(document.cookie)` (not an Adobe address, not linked)" in text
    assert "`https://evil.example/steal`" in text
    assert (
        "<https://platform.adobe.io/data/foundation/export/batches/B/meta?path=row_errors|ok (API)>"
        in (text)
    )
    assert "<http://127.0.0.1:8089/export/batches/B/meta?path=row_errors|local (API)>" in text
    plain = render([hostile(links=LINKS)], "firing", "slack")
    assert "<http://127.0.0.1" not in json.dumps(plain)  # not configured: text


def test_email_links_only_trusted_urls_and_marks_the_rest():
    body = render([hostile(links=LINKS)], "firing", "email", link_origins=LOCAL)
    page = parse_html(body["html"])
    assert page.hrefs and all(
        h.startswith(("https://platform.adobe.io/", "https://experience.adobe.com/", "http://127"))
        for h in page.hrefs
    )
    assert "javascript:alert(document.cookie)" in body["html"]  # as text
    assert "javascript:alert(document.cookie) (not an Adobe address)" in body["text"]
    assert "row_errors (not an Adobe" not in body["text"]


# ------------------------------------------------------------------ HTML shape, plurals


def test_html_email_has_a_doctype_a_title_isolated_names_and_wraps_long_tokens():
    rtl = "תזרים-לקוחות"
    body = render([hostile(name=rtl, messages=("x" * 400,))], "firing", "email")
    page = parse_html(body["html"])
    assert page.doctype.lower() == "doctype html"
    assert rtl in page.title and "<" not in page.title
    assert rtl in page.bdi and "x" * 400 in page.bdi
    assert "overflow-wrap:anywhere" in page.body_style and "word-break" in page.body_style
    for event in ("repeat", "resolved", "grouped"):
        other = parse_html(render(sample_notices(event), event, "email")["html"])
        assert other.doctype.lower() == "doctype html" and other.title.strip()


@pytest.mark.parametrize(("records", "words"), [(1, "1 record)"), (2, "2 records)")])
def test_record_counts_are_plural_only_when_they_should_be(records, words):
    notice = hostile(name="crm", messages=("bad",), count=records)
    for kind in ("slack", "email", "terminal"):
        assert words in json.dumps(render([notice], "firing", kind), ensure_ascii=False)
    once = replace(sample_notices("resolved")[0], count=1)
    assert "seen 1 time)" in render([once], "resolved", "email")["text"]


# ------------------------------------------------------------------ Slack limits and cuts


def test_ten_long_errors_with_injected_lines_keep_the_footer_under_50_blocks():
    messages = tuple(("line\n# INJECTED HEADER\n---\n" * 30) + "y" * 2000 for _ in range(10))
    body = render([hostile(messages=messages)], "firing", "slack")
    assert len(body["blocks"]) <= SLACK_BLOCKS
    footer = body["blocks"][-1]
    assert footer["type"] == "context" and "Open in AEP" in footer["elements"][0]["text"]
    assert sum(b["type"] == "header" for b in body["blocks"]) == 1


def test_too_many_blocks_keep_the_footer_and_say_how_many_were_left_out():
    text = "# title\n" + "\n\n".join(f"paragraph {i}" for i in range(80)) + "\n[context] footer"
    blocks = slack_blocks(text)["blocks"]
    assert len(blocks) == SLACK_BLOCKS
    assert blocks[-1]["elements"][0]["text"] == "footer"
    assert blocks[-2]["elements"][0]["text"] == "and 33 more blocks not shown"


def well_formed(text: str) -> bool:
    """No broken entity, no open link, no open code span."""
    if re.search(r"&(?![a-z]+;)", text) or text.count("`") % 2:
        return False
    return text.count("<") == text.count(">")


def test_mrkdwn_cuts_never_split_an_entity_a_link_a_code_span_or_a_character():
    piece = "a &amp; b <https://platform.adobe.io/x?a=1&amp;b=2|name &lt;x&gt;> `code &amp; more` "
    emoji = "👩‍👩‍👧‍👦 é 🇫🇷 "
    text = (piece + emoji) * 40
    for limit in range(20, 600):
        got = cut_mrkdwn(text, limit)
        assert len(got.encode("utf-16-le")) // 2 <= limit
        assert got.endswith("…") and well_formed(got[:-1]), (limit, got)
        kept = got[:-1].rstrip()
        assert text.startswith(kept)
        nxt = text[len(kept) : len(kept) + 1]
        assert nxt in (" ", "<", "&", "`", "") or not (
            nxt in "\u0301\u200d\ufe0f" or kept.endswith("\u200d")
        )


def test_cut_keeps_combining_marks_and_emoji_sequences_whole():
    assert cut("e\u0301" * 10, 5) == "e\u0301e\u0301…"
    family = "👩‍👩‍👧‍👦"
    assert cut("ab" + family + "cd", 6) == "ab…"


def test_slack_sections_and_headers_never_end_inside_an_entity_or_a_link():
    name = "R&D <ops> " * 40
    msgs = tuple(("<https://evil.example|click> & `x` " * 200) for _ in range(3))
    body = render([hostile(name=name, messages=msgs)], "firing", "slack")
    for block in body["blocks"]:
        texts = [block["text"]["text"]] if "text" in block else []
        texts += [e["text"] for e in block.get("elements", [])]
        for t in texts:
            assert well_formed(t), t[-80:]
            assert len(t) <= (150 if block["type"] == "header" else 3000)
