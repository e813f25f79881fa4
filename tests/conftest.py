"""Small fixtures shared by the reliability suites: an injectable clock and an SMTP
server on loopback that can be stopped and started again on the same port."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from servers import SMTPServer, _SMTPHandler, free_port

SOAK = os.environ.get("FLOWBOT_SOAK") == "1"


class Clock:
    """A settable UTC clock: `clock()` is now, `clock.advance(minutes=5)` moves it."""

    def __init__(self, at: datetime | None = None) -> None:
        self.at = at or datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **kw: float) -> None:
        self.at += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Ticks:
    """A monotonic clock and its sleep for pacing and retries: `ticks()` is now in
    seconds, `ticks.sleep(s)` moves it and records `s` in `slept`; nothing really waits."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class RestartableSMTP(SMTPServer):
    """An aiosmtpd server (tests/servers.py's handler) that can go down and come back."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", free_port())
        self.controller = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(_SMTPHandler(self), hostname=self.host, port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    server = RestartableSMTP()
    server.start()
    yield server
    server.stop()


# Secret values the tests configure (client secrets, Slack tokens, SMTP passwords). No log
# record of any test may carry one: checked after every test of the suite.
# Each is looked for in every encoding it may travel in (URL/form-encoded, JSON-escaped,
# base64 alone or inside `id:secret`): see flowbot.settings.secret_forms.
SECRET_VALUES = ("sim-secret", "xoxb-", "s3cr3t", "pw-9876", "p+q/r=s%t&u+V/W=X%Y&Z9")


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture):
    from flowbot.settings import secret_forms

    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    text = "\n".join(r.getMessage() + "\n" + (r.exc_text or "") for r in records)
    leaked = [value for value in SECRET_VALUES if any(f in text for f in secret_forms(value))]
    assert not leaked, f"a log record carries a secret ({leaked}):\n{text[-2000:]}"


@pytest.fixture(autouse=True)
def flowbot_logger_restored():
    """Commands run in process set up the `flowbot` logger (level, handlers); put it back
    so that a later test's caplog sees what it logs."""
    import logging

    logger = logging.getLogger("flowbot")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
