"""Email through SMTP. The only smtplib importer.

One message is multipart/alternative (plain text and HTML) with its own Message-ID; a
message with a thread carries In-Reply-To and References to the alert's first message
so that repeats and the resolution land in the same conversation. STARTTLS is used when
configured and offered; credentials are never sent over a connection without it.
Connection errors and SMTP 4xx are transient, 5xx permanent.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Mapping
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from flowbot.errors import NotifyError
from flowbot.models import Message
from flowbot.settings import Settings, redact

TIMEOUT = 15  # seconds, connect and each command


def build_email(
    message: Message,
    sender: str,
    recipients: tuple[str, ...],
    thread: Mapping[str, str] | None,
    at: datetime,
) -> EmailMessage:
    """The EmailMessage of a rendered body {"subject", "text", "html"}."""
    body = message.body
    mail = EmailMessage()
    mail["Subject"] = str(body.get("subject", "flowbot alert"))
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = format_datetime(at)
    domain = sender.rpartition("@")[2].strip("> ") or "flowbot.localhost"
    mail["Message-ID"] = make_msgid("flowbot", domain=domain)
    if thread and thread.get("message_id"):
        mail["In-Reply-To"] = thread["message_id"]
        mail["References"] = thread["message_id"]
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(str(body.get("text", "")))
    if body.get("html"):
        mail.add_alternative(str(body["html"]), subtype="html")
    return mail


class EmailNotifier:
    """An email channel (`email: [oncall@example.com]`) through settings.smtp_*."""

    def __init__(
        self,
        name: str,
        recipients: tuple[str, ...],
        settings: Settings,
        *,
        now: Callable[[], datetime],
    ) -> None:
        self.name = name
        self.recipients = recipients
        self.settings = settings
        self.now = now

    def send(self, message: Message, thread: Mapping[str, str] | None) -> dict[str, str]:
        """Send; returns {"message_id": "<…>"} for the alert's later messages."""
        s = self.settings
        if not s.smtp_host:
            raise NotifyError(f"email channel {self.name}: SMTP_HOST is not set", permanent=True)
        mail = build_email(message, s.smtp_from, self.recipients, thread, self.now())
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=TIMEOUT) as smtp:
                smtp.ehlo()
                secure = False
                if s.smtp_starttls and smtp.has_extn("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                    secure = True
                if s.smtp_user and s.smtp_password:
                    if s.smtp_starttls and not secure:
                        raise NotifyError(
                            f"email channel {self.name}: {s.smtp_host} does not offer STARTTLS; "
                            "not sending the SMTP password in clear (set SMTP_STARTTLS=false to "
                            "allow it)",
                            permanent=True,
                        )
                    smtp.login(s.smtp_user, s.smtp_password.get())
                smtp.send_message(mail, from_addr=s.smtp_from, to_addrs=list(self.recipients))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise NotifyError(
                f"email channel {self.name}: recipients refused ({', '.join(map(str, codes))})",
                permanent=all(code >= 500 for code in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise NotifyError(
                f"email channel {self.name}: {s.smtp_host} answered {exc.smtp_code} "
                f"{redact(_text(exc.smtp_error), s.secrets())}",
                permanent=exc.smtp_code >= 500,
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise NotifyError(f"email channel {self.name}: {exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(
                f"email channel {self.name}: cannot reach {s.smtp_host}:{s.smtp_port} "
                f"({type(exc).__name__})"
            ) from None
        return {"message_id": str(mail["Message-ID"])}


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]
