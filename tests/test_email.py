"""Email notifier against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from servers import free_port, smtp_server

from flowbot.errors import NotifyError
from flowbot.models import Message, RunError
from flowbot.notifiers.email import EmailNotifier
from flowbot.notifiers.sample import sample_notices
from flowbot.render import render
from flowbot.settings import Secret, Settings

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def smtp():
    with smtp_server() as server:
        yield server


def mailer(smtp, **settings):
    options = dict(
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_starttls=False,
        smtp_from="flowbot@example.com",
    )
    options.update(settings)
    return EmailNotifier(
        "oncall", ("oncall@example.com", "lead@example.com"), Settings(**options), now=lambda: NOW
    )


def message(event="firing", notices=None):
    body = render(notices or sample_notices(event), event, "email")
    return Message(channel="oncall", kind="email", event=event, body=body)


def parts(mail):
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    return text, html


def test_message_is_multipart_with_a_readable_subject(smtp):
    ref = mailer(smtp).send(message(), None)
    [mail] = smtp.messages
    assert mail["Subject"] == "[CRITICAL] too-many-bad-records: crm-daily-import (prod)"
    assert mail["To"] == "oncall@example.com, lead@example.com"
    assert mail["From"] == "flowbot@example.com"
    assert mail.get_content_type() == "multipart/alternative"
    assert smtp.envelopes == [("flowbot@example.com", ["oncall@example.com", "lead@example.com"])]
    text, html = parts(mail)
    assert "9830305a-985f-47d0-b030-5a985fd7d004" in text
    assert "MAPPER-3700-400" in text and "row_errors" in text
    assert "<table" in html
    assert ref == {"message_id": mail["Message-ID"]}
    assert mail["Message-ID"].startswith("<") and mail["Message-ID"].endswith("@example.com>")
    assert "In-Reply-To" not in mail


def test_repeat_and_resolution_carry_threading_headers(smtp):
    send = mailer(smtp)
    ref = send.send(message(), None)
    send.send(message("repeat"), ref)
    send.send(message("resolved"), ref)
    first, repeat, resolved = smtp.messages
    for reply in (repeat, resolved):
        assert reply["In-Reply-To"] == ref["message_id"]
        assert reply["References"] == ref["message_id"]
        assert reply["Message-ID"] != first["Message-ID"]
        assert reply["Subject"] == "Re: " + first["Subject"]
    assert "RESOLVED" in parts(resolved)[0]


def test_untrusted_text_is_html_escaped(smtp):
    [notice] = sample_notices()
    evil = RunError("EVIL-1", "<script>alert(1)</script> <!channel> <https://evil.example|click>")
    run = replace(notice.finding.run, errors=(evil,), activities=())
    notice = replace(notice, finding=replace(notice.finding, run=run))
    mailer(smtp).send(message(notices=[notice]), None)
    text, html = parts(smtp.messages[0])
    assert "<script>" not in html and "<!channel>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;!channel&gt;" in html
    assert "<https://evil.example|click>" in text  # plain text shows it as it is


def test_4xx_is_transient_and_5xx_permanent(smtp):
    send = mailer(smtp)
    smtp.fail_next(451)
    with pytest.raises(NotifyError) as caught:
        send.send(message(), None)
    assert not caught.value.permanent and "451" in str(caught.value)
    smtp.fail_next(554)
    with pytest.raises(NotifyError) as caught:
        send.send(message(), None)
    assert caught.value.permanent
    send.send(message(), None)
    assert len(smtp.messages) == 1


def test_unreachable_server_is_transient():
    send = EmailNotifier(
        "oncall",
        ("a@example.com",),
        Settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False),
        now=lambda: NOW,
    )
    with pytest.raises(NotifyError) as caught:
        send.send(message(), None)
    assert not caught.value.permanent


def test_missing_smtp_host_is_permanent():
    send = EmailNotifier("oncall", ("a@example.com",), Settings(), now=lambda: NOW)
    with pytest.raises(NotifyError, match="SMTP_HOST is not set") as caught:
        send.send(message(), None)
    assert caught.value.permanent


def test_password_is_never_sent_without_starttls_when_starttls_is_on(smtp):
    send = mailer(smtp, smtp_starttls=True, smtp_user="bot", smtp_password=Secret("hunter22"))
    with pytest.raises(NotifyError, match="STARTTLS") as caught:
        send.send(message(), None)
    assert caught.value.permanent and "hunter22" not in str(caught.value)
    assert smtp.messages == []


def test_starttls_on_sends_in_clear_when_not_offered_and_no_login(smtp):
    mailer(smtp, smtp_starttls=True).send(message(), None)
    assert len(smtp.messages) == 1
