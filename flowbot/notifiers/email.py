"""Email through SMTP. The only smtplib importer.

One message is multipart/alternative (plain text and HTML) with its own Message-ID; a
message with a thread carries In-Reply-To and References to the alert's first message
so that repeats and the resolution land in the same conversation. STARTTLS is used when
configured and offered; credentials are never sent over a connection without it.
Connection errors and SMTP 4xx are transient, 5xx permanent: a 5xx refuses the
channel itself (login, sender, recipients), so it carries `problem` for the meta-alert.

The whole dialogue, from connect to QUIT, has one deadline (`deadline`, 60 s): a server
that stalls or trickles mid-dialogue is cut there (notifiers/exchange.py).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable, Mapping
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from flowbot.errors import NotifyError
from flowbot.models import Message
from flowbot.notifiers.exchange import Deadline, DeadlineExceeded, bounded
from flowbot.settings import Settings, redact

if TYPE_CHECKING:
    from flowbot.notifiers import ChannelLike, NotifierDeps

DEADLINE = 60.0  # seconds: the whole dialogue, connect to QUIT
LOGIN_REFUSED = frozenset({530, 534, 535, 538})


class _BoundedSMTP(smtplib.SMTP):
    """smtplib.SMTP whose sockets a Deadline watches."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        super().__init__(timeout=deadline.socket_timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib.SMTP._get_socket exists, but typeshed does not declare it.
        return self.deadline.register(super()._get_socket(host, port, timeout))  # type: ignore[misc]


def refusal_hint(code: int) -> str:
    if code in LOGIN_REFUSED:
        return "the server refused the login: check SMTP_USER and SMTP_PASSWORD"
    return "the server refused the message: check SMTP_FROM and the channel's addresses"


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
        deadline: float = DEADLINE,
    ) -> None:
        self.name = name
        self.deadline = deadline
        self.recipients = recipients
        self.settings = settings
        self.now = now

    def send(self, message: Message, thread: Mapping[str, str] | None) -> dict[str, str]:
        """Send; returns {"message_id": "<…>"} for the alert's later messages."""
        s = self.settings
        if not s.smtp_host:
            raise NotifyError(
                f"email channel {self.name}: SMTP_HOST is not set",
                permanent=True,
                problem="SMTP_HOST not set",
            )
        try:
            mail = build_email(message, s.smtp_from, self.recipients, thread, self.now())
        except (ValueError, TypeError) as exc:
            raise NotifyError(
                f"email channel {self.name}: cannot build the message ({type(exc).__name__})",
                permanent=True,
            ) from None
        try:
            with bounded(self.deadline) as deadline:
                self._dialogue(deadline, mail)
        except NotifyError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            refused = all(code >= 500 for code in codes)
            raise NotifyError(
                f"email channel {self.name}: recipients refused ({', '.join(map(str, codes))})"
                + (" (check the channel's addresses in rules.yaml)" if refused else ""),
                permanent=refused,
                problem="recipients refused" if refused else None,
            ) from None
        except smtplib.SMTPResponseException as exc:
            code = exc.smtp_code if isinstance(exc.smtp_code, int) else 0
            permanent = 500 <= code < 600
            raise NotifyError(
                f"email channel {self.name}: {s.smtp_host} answered {code} "
                f"{redact(_text(exc.smtp_error), s.secrets())}"
                + (f" ({refusal_hint(code)})" if permanent else ""),
                permanent=permanent,
                problem=f"SMTP {code}" if permanent else None,
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise NotifyError(
                f"email channel {self.name}: {_text(str(exc))}",
                permanent=True,
                problem="SMTP not supported",
            ) from None
        except DeadlineExceeded:
            raise NotifyError(
                f"email channel {self.name}: {s.smtp_host}:{s.smtp_port} did not finish the "
                f"dialogue within {self.deadline:g}s"
            ) from None
        except (smtplib.SMTPException, OSError, ValueError, UnicodeError) as exc:
            raise NotifyError(
                f"email channel {self.name}: cannot reach {s.smtp_host}:{s.smtp_port} "
                f"({type(exc).__name__})"
            ) from None
        return {"message_id": str(mail["Message-ID"])}

    def _dialogue(self, deadline: Deadline, mail: EmailMessage) -> None:
        s = self.settings
        with _BoundedSMTP(deadline) as smtp:
            smtp.connect(s.smtp_host, s.smtp_port)
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
                        problem="no STARTTLS",
                    )
                smtp.login(s.smtp_user, s.smtp_password.get())
            smtp.send_message(mail, from_addr=s.smtp_from, to_addrs=list(self.recipients))


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]


def from_channel(channel: ChannelLike, deps: NotifierDeps) -> EmailNotifier:
    """The notifier of an `email:` channel (flowbot.channels): one address or several."""
    target = channel.target
    recipients = (target,) if isinstance(target, str) else tuple(target)
    return EmailNotifier(channel.name, recipients, deps.settings, now=deps.now)
