"""Bounded exchanges with a channel's server: a total deadline and a size limit.

A socket timeout bounds each read, not the exchange: a server that trickles one byte
every two seconds never trips it. `Deadline` is a watchdog: every socket opened for the
exchange is registered with it, and when the deadline passes it shuts them down, so
whatever read or write is blocked returns at once with an error. `post` is one HTTP POST
under such a deadline, reading at most `max_bytes` of the answer.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit
from urllib.request import getproxies, proxy_bypass

DEADLINE = 20.0  # seconds: connect, send and read the whole answer
MAX_ANSWER = 1024 * 1024  # bytes of an answer read at most


class DeadlineExceeded(OSError):
    """The exchange took longer than its deadline."""


class AnswerTooLarge(OSError):
    """The answer was larger than the limit."""


class Deadline:
    """Shuts down the registered sockets `seconds` after it starts (see the module doc).
    Use as a context manager; `expired` says whether it fired. `socket_timeout` is what
    each socket read may take: a little longer, so that the watchdog speaks first."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.socket_timeout = seconds + 1.0
        self.expired = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()

    def register(self, sock: socket.socket) -> socket.socket:
        """Watch `sock` (a duplicate of it is kept: shutting that down stops the
        connection even after TLS has wrapped the original). Returns `sock`."""
        watch = sock.dup()
        with self._lock:
            if not self.expired:
                self._socks.append(watch)
                return sock
        _shut(watch)
        watch.close()
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@contextmanager
def bounded(seconds: float) -> Iterator[Deadline]:
    """A Deadline that also turns the error of a socket it cut into DeadlineExceeded."""
    started = time.monotonic()
    with Deadline(seconds) as deadline:
        try:
            yield deadline
        except (OSError, http.client.HTTPException) as exc:
            late = deadline.expired or time.monotonic() - started >= seconds
            if late and not isinstance(exc, DeadlineExceeded):
                raise DeadlineExceeded(f"no complete answer within {seconds:g}s") from None
            raise


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    deadline: float = DEADLINE,
    max_bytes: int = MAX_ANSWER,
) -> Answer:
    """POST `body` to `url` and read the answer, all within `deadline` seconds.
    Raises OSError (DeadlineExceeded, AnswerTooLarge, connection errors) or
    http.client.HTTPException (a malformed answer). Never follows redirects."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = proxy_for(url)
    with bounded(deadline) as watch:
        conn: Any
        via = proxy or parts  # proxy_for returns only proxies that name a host
        host, port = via.hostname or parts.hostname, via.port
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=watch.socket_timeout, context=ssl.create_default_context()
            )
            if proxy:  # CONNECT through the proxy; TLS with the real host inside
                conn.set_tunnel(parts.hostname, parts.port)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=watch.socket_timeout)
            if proxy:  # a plain-HTTP proxy takes the absolute URL
                path = url
        connect = conn._create_connection
        conn._create_connection = lambda *a, **kw: watch.register(connect(*a, **kw))
        try:
            conn.request("POST", path, body=body, headers=dict(headers))
            response = conn.getresponse()
            data = bytearray()
            while chunk := response.read(min(65536, max_bytes + 1 - len(data))):
                data += chunk
                if len(data) > max_bytes:
                    raise AnswerTooLarge(f"answer larger than {max_bytes} bytes")
            if response.length:  # the connection ended before the announced length
                raise http.client.IncompleteRead(bytes(data), response.length)
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
            return Answer(response.status, answer_headers, bytes(data))
        finally:
            conn.close()


def proxy_for(url: str) -> SplitResult | None:
    """The proxy the environment names for `url` (HTTPS_PROXY / HTTP_PROXY, honouring
    NO_PROXY, as requests and curl do), or None. Only http:// proxies are used."""
    parts = urlsplit(url)
    if proxy_bypass(parts.hostname or ""):
        return None
    proxy = getproxies().get(parts.scheme)
    if not proxy:
        return None
    found = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return found if found.scheme == "http" and found.hostname else None
