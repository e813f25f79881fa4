"""Local stand-ins for Slack and an SMTP server, for tests on loopback.

Slack (a Web API look-alike on 127.0.0.1 that records every call)::

    with slack_server() as slack:
        notifier = SlackNotifier(..., Settings(slack_bot_token=Secret("xoxb-1"),
                                               slack_api_url=slack.url), ...)
        slack.fail("chat.postMessage", error="channel_not_found")   # next call only
        slack.fail("chat.postMessage", status=429, retry_after=7)
        slack.fail("chat.postMessage", status=500)
        ...
        slack.calls            # [Call(method, body, headers)], in order
        slack.calls_to("chat.update")
        slack.webhook_url()    # an incoming-webhook URL served by the same server

`method` is the Web API method ("chat.postMessage") or "webhook" for webhook posts.
Answers: chat.postMessage → {"ok": true, "channel": <id>, "ts": <increasing>}, where
the id is "C" + a number per channel name (or the id itself when a "C…" id is sent);
any other method → {"ok": true}; webhooks → 200 "ok".

SMTP (aiosmtpd on 127.0.0.1 and a concrete free port)::

    with smtp_server() as smtp:
        Settings(smtp_host=smtp.host, smtp_port=smtp.port, smtp_starttls=False)
        ...
        smtp.messages          # [email.message.EmailMessage] as received
        smtp.envelopes         # [(mail_from, [rcpt_tos])]
        smtp.fail_next(451)    # the next DATA is answered "451 …" (or 550, …)
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Failure:
    method: str | None  # None: any method
    status: int = 200
    error: str | None = None
    retry_after: float | str | None = None  # a str is sent as is ("inf", "1e12", …)


@dataclass
class SlackServer:
    """State of the Slack look-alike; see the module docstring."""

    url: str = ""
    calls: list[Call] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    channel_ids: dict[str, str] = field(default_factory=dict)
    ts: int = 0
    socket_url: str = ""  # what apps.connections.open answers (tests/socket_mode_server.py)
    usergroups: dict[str, list[str]] = field(default_factory=dict)  # usergroups.users.list
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(
        self,
        method: str | None = None,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: float | str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` (any when None) with an error:
        `error` as {"ok": false, "error": …}, `status` 429 (with Retry-After) or 5xx."""
        for _ in range(times):
            self.failures.append(Failure(method, status, error, retry_after))

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def webhook_url(self, path: str = "/services/T000/B000/XXXXSECRET") -> str:
        return self.url.removesuffix("/api/") + path

    def _failure(self, method: str) -> Failure | None:
        for failure in self.failures:
            if failure.method in (None, method):
                self.failures.remove(failure)
                return failure
        return None

    def _channel_id(self, channel: str) -> str:
        if channel.startswith("C") and not channel.startswith("#"):
            return channel
        return self.channel_ids.setdefault(channel, f"C{len(self.channel_ids) + 1:08d}")

    def answer(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one call; records it."""
        with self.lock:
            failure = self._failure(method)
            if failure is not None:
                headers = {"Content-Type": "application/json"}
                if failure.retry_after is not None:
                    value = failure.retry_after
                    headers["Retry-After"] = value if isinstance(value, str) else f"{value:g}"
                if method == "webhook":
                    return (
                        failure.status,
                        {"Content-Type": "text/plain"}
                        | {k: v for k, v in headers.items() if k == "Retry-After"},
                        (failure.error or "error").encode(),
                    )
                error = failure.error or ("ratelimited" if failure.status == 429 else "internal")
                if failure.status >= 500:
                    return failure.status, {"Content-Type": "text/html"}, b"<html>oops</html>"
                payload = {"ok": False, "error": error}
                return failure.status, headers, json.dumps(payload).encode()
            if method == "webhook":
                return 200, {"Content-Type": "text/plain"}, b"ok"
            result: dict[str, Any] = {"ok": True}
            if method == "apps.connections.open":
                result["url"] = self.socket_url
            if method == "usergroups.users.list":
                result["users"] = self.usergroups.get(str(body.get("usergroup")), [])
            if method in ("chat.postMessage", "chat.update"):
                self.ts += 1
                channel = self._channel_id(str(body.get("channel", "")))
                ts = body.get("ts") if method == "chat.update" else f"1700000000.{self.ts:06d}"
                result.update(channel=channel, ts=ts, message={"text": body.get("text", "")})
            return 200, {"Content-Type": "application/json"}, json.dumps(result).encode()


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    server_version = "SlackLookalike/1"
    state: SlackServer  # set on a subclass per server

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8")
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            body = json.loads(raw or "{}")
        else:
            body = dict(parse_qsl(raw))
        if self.path.startswith("/api/"):
            method = self.path[len("/api/") :].split("?")[0]
        else:
            method = "webhook"
        self.state.calls.append(Call(method, body, {k: v for k, v in self.headers.items()}))
        status, headers, payload = self.state.answer(method, body)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None


@contextmanager
def slack_server() -> Iterator[SlackServer]:
    """A running Slack look-alike; its `url` is a slack-sdk `base_url`."""
    state = SlackServer()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---------------------------------------------------------------- SMTP


@dataclass
class SMTPServer:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)

    def fail_next(self, code: int = 451) -> None:
        """Answer the next message's DATA with `code` (4xx transient, 5xx permanent)."""
        self.failures.append(code)


class _SMTPHandler:
    def __init__(self, state: SMTPServer) -> None:
        self.state = state

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.state.failures:
            code = self.state.failures.pop(0)
            return f"{code} {'try again later' if code < 500 else 'rejected'}"
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else content.encode()
        self.state.messages.append(message_from_bytes(data, policy=policy.default))  # type: ignore[arg-type]
        self.state.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[SMTPServer]:
    """A running aiosmtpd server on 127.0.0.1 without TLS (it does not offer STARTTLS)."""
    from aiosmtpd.controller import Controller

    state = SMTPServer("127.0.0.1", free_port())
    controller = Controller(_SMTPHandler(state), hostname=state.host, port=state.port)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()
