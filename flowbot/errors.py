"""The exceptions flowbot raises. Adapters translate library errors into these.

FlowbotError
 ├── ConfigError        rules.yaml, templates or the environment are wrong (exit 2)
 ├── FlowAPIError       the Flow Service or IMS could not be read
 ├── NotifyError        a channel refused or failed a message (.permanent)
 └── StoreError         the SQLite database is locked, read-only or corrupt
"""

from __future__ import annotations


class FlowbotError(Exception):
    """Base of every error flowbot raises on purpose; its text is safe to show."""


class ConfigError(FlowbotError):
    """Bad configuration: the message names the file, line and key where it can."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class FlowAPIError(FlowbotError):
    """The Flow Service (or IMS) could not be read.

    `status` is the HTTP status when there was one; `retryable` says whether a later
    attempt may succeed (5xx, 429, timeouts, connection errors).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class NotifyError(FlowbotError):
    """A message could not be delivered. Only non-permanent errors are retried.

    `retry_after` (seconds), when the channel said how long to wait. `problem`, on a
    permanent error, names a refusal of the channel itself that only the operator can
    fix ("invalid_auth", "not_in_channel", "SMTP 550"): it raises the meta-alert.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        problem: str | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.problem = problem


class StoreError(FlowbotError):
    """The database cannot be used: locked by another process, read-only or corrupt."""


def reason_of(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line, its type and the start of its text: what a skip,
    a log line or a meta-alert says of it (never a traceback)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__
