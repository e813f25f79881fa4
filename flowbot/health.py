"""The daemon's HTTP side: `/healthz`, `/readyz` and `/metrics` on a small server.

`readiness` decides (pure); `HealthServer` only answers with what its callbacks say.

The server is one thread around a selector, never a thread per socket, so idle or
slow clients cost a file descriptor each and nothing else:

- at most `max_connections` sockets are kept; a new one beyond that evicts the one
  idle the longest, so a flood of idle sockets cannot lock out the liveness probe;
- a request head must arrive whole within `header_timeout` seconds of the connection
  (or of the previous answer), in at most `max_header_bytes` and `max_headers` lines;
  a kept-alive connection with nothing to say is closed after `idle_timeout`;
- answers are small and written without blocking; a client that does not read its
  answer within `header_timeout` is dropped.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from flowbot.metrics import CONTENT_TYPE

log = logging.getLogger("flowbot.health")

STALE_AFTER = 3  # poll intervals without a good cycle before /readyz says 503
MAX_CONNECTIONS = 64  # sockets kept open at once; beyond: the longest idle is closed
HEADER_TIMEOUT = 5.0  # seconds to send a whole request head (and to read an answer)
IDLE_TIMEOUT = 5.0  # seconds a kept-alive connection may stay silent
MAX_HEADER_BYTES = 8192  # request line and headers together
MAX_HEADERS = 32  # header lines
BACKLOG = 1024
TICK = 0.25  # seconds between looks at the deadlines

Ready = Callable[[], tuple[bool, dict[str, Any]]]


def readiness(
    last_ok: Mapping[str, datetime],
    sandboxes: Iterable[str],
    poll_every: timedelta,
    now: datetime,
) -> tuple[bool, dict[str, Any]]:
    """Ready when every sandbox had a good cycle within STALE_AFTER × poll_every.

    Returns (ready, body): body names each sandbox that is not ready and why.
    """
    limit = poll_every * STALE_AFTER
    problems: dict[str, str] = {}
    for sandbox in sandboxes:
        at = last_ok.get(sandbox)
        if at is None:
            problems[sandbox] = "no good cycle yet"
        elif now - at > limit:
            ago = int((now - at).total_seconds())
            problems[sandbox] = f"last good cycle {ago}s ago (limit {int(limit.total_seconds())}s)"
    if problems:
        return False, {"status": "not ready", "sandboxes": problems}
    return True, {"status": "ready"}


# ------------------------------------------------------------------ deciding


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    keep_alive: bool
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """What a page handler returns: status, content type, body and extra headers."""

    status: int
    content_type: str
    text: str
    headers: tuple[tuple[str, str], ...] = ()


Pages = Callable[[Request], Answer]


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_head(head: bytes, *, max_headers: int = MAX_HEADERS) -> Request:
    """The request line and headers of one request (the bytes before the blank line). Raises BadRequest (400, 405, 413,
    431, 505) for anything this server will not answer."""
    text = head.decode("latin-1")  # every byte decodes; HTTP heads are ASCII
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(505, "HTTP version not supported")
    headers = [line for line in lines[1:] if line]
    if len(headers) > max_headers:
        raise BadRequest(431, "too many headers")
    fields: dict[str, str] = {}
    for line in headers:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "bad header line")
        fields[name.lower()] = value.strip()
    if method not in ("GET", "HEAD"):
        raise BadRequest(405, "method not allowed")
    if fields.get("content-length", "0") != "0" or "transfer-encoding" in fields:
        raise BadRequest(413, "no request body accepted")
    connection = fields.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    path, _, query = target.partition("?")
    return Request(method, path, keep_alive, query, fields)


def response(
    status: int,
    content_type: str,
    text: str,
    *,
    keep_alive: bool,
    head: bool,
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
               404: "Not Found", 405: "Method Not Allowed",
               408: "Request Timeout", 413: "Content Too Large",
               431: "Request Header Fields Too Large", 503: "Service Unavailable",
               505: "HTTP Version Not Supported"}  # fmt: skip
    data = text.encode("utf-8")
    lines = [
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(data)}",
        "Connection: " + ("keep-alive" if keep_alive else "close"),
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else data)


# ------------------------------------------------------------------ the server


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    deadline: float  # when it is dropped unless it makes progress
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    close_after: bool = False
    last_active: float = 0.0


class HealthServer:
    """Serves the endpoints on `host:port` (0: a free port) in one background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Ready,
        metrics: Callable[[], str],
        pages: Pages | None = None,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_headers: int = MAX_HEADERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ready = ready
        self.metrics = metrics
        self.pages = pages  # every other GET path (the status page), when set
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.clock = clock
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
            self._listener.listen(BACKLOG)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._conns: dict[int, _Conn] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flowbot-health", daemon=True)
        self.evicted = 0  # connections closed to make room (for tests and debugging)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for conn in list(self._conns.values()):
            self._close(conn)
        self._selector.close()
        self._listener.close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -------------------------------------------------------------- the loop

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._selector.select(TICK)
            except OSError as exc:  # pragma: no cover (a closed selector at shutdown)
                log.debug("health: select failed: %s", exc)
                return
            for key, mask in events:
                if key.data is None:
                    self._accept()
                    continue
                conn: _Conn = key.data
                try:
                    if mask & selectors.EVENT_READ:
                        self._read(conn)
                    if mask & selectors.EVENT_WRITE and conn.sock.fileno() != -1:
                        self._write(conn)
                except OSError:
                    self._close(conn)
            self._expire()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: shed the longest idle
                log.warning("health: cannot accept a connection: %s", exc)
                if not self._evict():
                    return
                continue
            if len(self._conns) >= self.max_connections:
                self._evict()
            sock.setblocking(False)
            now = self.clock()
            conn = _Conn(sock, now + self.header_timeout, last_active=now)
            self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _evict(self) -> bool:
        if not self._conns:
            return False
        oldest = min(self._conns.values(), key=lambda c: c.last_active)
        self._close(oldest)
        self.evicted += 1
        return True

    def _read(self, conn: _Conn) -> None:
        data = conn.sock.recv(4096)
        if not data:
            self._close(conn)
            return
        conn.inbox += data
        conn.last_active = self.clock()
        if len(conn.inbox) > 4 * self.max_header_bytes:  # pipelining without reading
            self._close(conn)
            return
        if conn.outbox:  # pipelined: answer the next once this one is out
            return
        self._answer_waiting(conn)

    def _answer_waiting(self, conn: _Conn) -> None:
        end = conn.inbox.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.inbox) > self.max_header_bytes:
                self._fail(conn, BadRequest(431, "request head too large"))
            return
        if end > self.max_header_bytes:
            self._fail(conn, BadRequest(431, "request head too large"))
            return
        head = bytes(conn.inbox[:end])
        del conn.inbox[: end + 4]
        try:
            request = parse_head(head, max_headers=self.max_headers)
        except BadRequest as exc:
            self._fail(conn, exc)
            return
        answer = self._route(request)
        conn.outbox += response(
            answer.status,
            answer.content_type,
            answer.text,
            keep_alive=request.keep_alive,
            head=request.method == "HEAD",
            headers=answer.headers,
        )
        conn.close_after = not request.keep_alive
        self._flush(conn)

    def _route(self, request: Request) -> Answer:
        path = request.path
        try:
            if path == "/healthz":
                return Answer(200, "application/json", json.dumps({"status": "ok"}))
            if path == "/readyz":
                ready, body = self.ready()
                return Answer(200 if ready else 503, "application/json", json.dumps(body))
            if path == "/metrics":
                return Answer(200, CONTENT_TYPE, self.metrics())
            if self.pages is not None:
                return self.pages(request)
        except Exception as exc:  # a callback's bug answers 503, never ends the server
            log.error("health: %s failed: %s: %s", path[:200], type(exc).__name__, exc)
            return Answer(503, "application/json", json.dumps({"status": "error"}))
        return Answer(404, "application/json", json.dumps({"error": "not found"}))

    def _fail(self, conn: _Conn, exc: BadRequest) -> None:
        log.debug("health: refused a request: %s", exc.reason)
        conn.inbox.clear()
        body = json.dumps({"error": exc.reason})
        conn.outbox += response(exc.status, "application/json", body, keep_alive=False, head=False)
        conn.close_after = True
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        conn.deadline = self.clock() + self.header_timeout
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        if conn.outbox:
            try:
                sent = conn.sock.send(conn.outbox)
            except BlockingIOError:
                sent = 0
            del conn.outbox[:sent]
        if conn.outbox:
            self._selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
            return
        if conn.close_after:
            self._close(conn)
            return
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        now = self.clock()
        conn.last_active = now
        conn.deadline = now + (self.header_timeout if conn.inbox else self.idle_timeout)
        if conn.inbox:
            self._answer_waiting(conn)

    def _expire(self) -> None:
        now = self.clock()
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd != -1:
            self._conns.pop(fd, None)
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.sock.close()
