"""One HTTP exchange with Adobe, bounded in time and size, and the URL checks that keep
credentials on the origins they belong to.

`exchange()` sends one request and reads the whole answer within `seconds` *in total*:
connecting, sending, the status line and headers, and the body. A per-read timeout
alone lets a server that trickles one byte a second hold a call for days, so a
watchdog timer shuts the connection's socket down at the deadline, and the body is
read in chunks with the clock checked between them. The body stops at `max_bytes`
(decompressed), so a huge or endless answer costs at most that much memory. Redirects
are never followed: a 3xx is answered to the caller, who refuses it, so headers and
forms never travel to a host the operator did not configure.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

CHUNK = 64 * 1024  # bytes read at a time from a body
MAX_DEPTH = 254  # nesting a single item may have (orjson.dumps refuses deeper)
DEFAULT_PORTS = {"http": 80, "https": 443}

_local = threading.local()


class ExchangeError(Exception):
    """An exchange that gave no usable answer. `problem` is one short phrase that is
    safe to show (no URL query, no header); `retryable` says whether trying again may
    help (timeouts and connection errors) or not (an answer over the size limit)."""

    def __init__(self, problem: str, *, retryable: bool) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes | bytearray
    reason: str = ""


# ---------------------------------------------------------------- sessions


def new_session() -> requests.Session:
    """A requests.Session whose connections the exchange deadline can cut."""
    session = requests.Session()
    watch_session(session)
    return session


def watch_session(session: requests.Session) -> None:
    """Mount the deadline-aware adapter on `session` (idempotent)."""
    for prefix in ("http://", "https://"):
        if not isinstance(session.adapters.get(prefix), _WatchedAdapter):
            session.mount(prefix, _WatchedAdapter())


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    seconds: float,
    max_bytes: int,
    headers: dict[str, str] | None = None,
    params: Any = None,
    data: Any = None,
) -> Answer:
    """Send one request and read its whole answer within `seconds`, at most `max_bytes`
    of body. Raises ExchangeError (retryable for timeouts and connection errors)."""
    seconds = max(seconds, 0.001)
    ends = time.monotonic() + seconds
    watch = _Watch()
    timer = threading.Timer(seconds, watch.cut)
    timer.daemon = True
    _local.watch = watch
    timer.start()
    try:
        try:
            response = session.request(
                method, url, headers=headers, params=params, data=data,
                timeout=(seconds, seconds), stream=True, allow_redirects=False,
            )  # fmt: skip
        finally:
            _local.watch = None
        with response:
            body = _read(response, max_bytes, ends, watch)
        return Answer(response.status_code, response.headers, body, response.reason or "")
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        if watch.fired or time.monotonic() >= ends:
            raise _timeout(seconds) from None
        raise ExchangeError(_problem(exc), retryable=True) from None
    finally:
        timer.cancel()


def _read(response: requests.Response, max_bytes: int, ends: float, watch: _Watch) -> bytearray:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    while True:
        if watch.fired or time.monotonic() >= ends:
            raise _timeout(ends - watch.started)
        chunk = response.raw.read1(CHUNK, decode_content=True)
        if not chunk:
            break
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    if watch.fired:  # the socket was shut while the last read ran: the body is cut short
        raise _timeout(ends - watch.started)
    return body


def _timeout(seconds: float) -> ExchangeError:
    return ExchangeError(f"no complete answer within {seconds:.0f}s", retryable=True)


def _too_large(max_bytes: int) -> ExchangeError:
    return ExchangeError(
        f"the answer is larger than {max_bytes / 2**20:g} MB (reading stopped)", retryable=False
    )


def _problem(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "Timeout"
    if isinstance(exc, requests.ConnectionError):
        return "ConnectionError"
    return type(exc).__name__


# ---------------------------------------------------------------- JSON


def decode_json(body: bytes | bytearray) -> Any:
    """JSON → Python values, without recursion or overflow errors: nesting deeper than
    1024 levels, numbers beyond a double and malformed text raise ValueError."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "surrogate" not in str(exc):
            raise ValueError(str(exc)[:120]) from None
    try:  # a lone UTF-16 surrogate escape is valid JSON but not text: make it U+FFFD
        return orjson.loads(_LONE_SURROGATE.sub(_keep_pairs, bytes(body)))
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)[:120]) from None


# An escaped backslash, a surrogate pair, or a lone surrogate escape, scanned left to
# right so that `\\ud800` (a backslash, then text) is never taken for an escape.
_LONE_SURROGATE = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    rb"|\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _keep_pairs(match: re.Match[bytes]) -> bytes:
    text = match.group(0)
    return text if text == b"\\\\" or len(text) == 12 else b"\\ufffd"


def check_depth(item: Any) -> None:
    """Raise ValueError when `item` nests deeper than MAX_DEPTH levels: such an item
    could not be stored or re-read without recursion errors."""
    try:
        orjson.dumps(item)
    except TypeError as exc:
        if "Recursion" in str(exc):
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
        raise ValueError(f"not storable as JSON: {str(exc)[:80]}") from None


def adobe_error(answer: Answer) -> str:
    """Adobe's error code and message from an error body, e.g. 'FLOW-2120-403: You do
    not have sufficient permissions...'; '' when the body says nothing useful."""
    try:
        body = decode_json(answer.body)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    code = body.get("error_code") or body.get("code") or ""
    kind = body.get("type")
    if not code and isinstance(kind, str) and "/errors/" in kind:
        code = kind.rsplit("/", 1)[-1]
    found = body.get("report")
    report: dict[str, Any] = found if isinstance(found, dict) else {}
    message = (
        body.get("errorMessage")
        or body.get("message")
        or report.get("detailed-message")
        or body.get("title")
        or body.get("detail")
        or ""
    )
    text = ": ".join(str(p)[:300] for p in (code, message) if p)
    return "".join(ch if ch.isprintable() else " " for ch in text[:300])


# ---------------------------------------------------------------- URLs


def origin(url: str) -> str:
    """`scheme://host:port` of `url` (the port made explicit, the host lower-case), the
    unit to which credentials are bound; '' when `url` has no scheme or host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return ""
    return f"{scheme}://{parts.hostname.lower()}:{port or DEFAULT_PORTS.get(scheme, 0)}"


def safe_url(url: str, limit: int = 200) -> str:
    """`url` as it may be shown: without user:password@, query and fragment, control
    characters removed, at most `limit` characters."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(an unreadable URL)"
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    text = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path
    text = "".join(ch for ch in text if ch.isprintable() and ch not in " \t")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- the watchdog


class _Watch:
    """Remembers the connection an exchange uses, and shuts its socket at the deadline."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.fired = False
        self.connection: HTTPConnection | None = None

    def cut(self) -> None:
        self.fired = True
        self.shut()

    def shut(self) -> None:
        sock = getattr(self.connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Watched(HTTPConnection):
    """Tells the exchange running in this thread which connection it uses (comes
    before HTTPSConnection too, which is an HTTPConnection)."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch: _Watch | None = getattr(_local, "watch", None)
        if watch is not None:
            watch.connection = self
        super().request(*args, **kwargs)
        if watch is not None and watch.fired:  # fired while connecting: cut now
            watch.shut()


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }
