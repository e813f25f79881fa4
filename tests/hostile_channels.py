"""Channel servers that misbehave, on loopback: an HTTP server (a Slack Web API or webhook
stand-in) and an SMTP server that answer with whatever a test scripts.

    with hostile_http(trickle(b'{"ok": true}', every=2.0)) as server:
        SlackNotifier(..., Settings(slack_api_url=server.url, ...), deadline=1.0)
        server.requests        # how many requests it read

    with hostile_smtp(stall_after=2) as smtp:   # greets, answers EHLO, then never again
        Settings(smtp_host=smtp.host, smtp_port=smtp.port, smtp_starttls=False)

A behaviour is a function `(sock, stop)` called with the connection once the request is
read; it writes what it wants and returns (the connection is then closed). `stop` is an
Event set when the server shuts down: behaviours wait on it, never on `time.sleep`, so
closing the server ends them at once.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

Behaviour = Callable[[socket.socket, threading.Event], None]


def answer(status: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """Raw bytes of an HTTP/1.1 answer with a Content-Length."""
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def raw(data: bytes) -> Behaviour:
    """Send `data` as is, then close."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(data)

    return behave


def trickle(data: bytes, every: float) -> Behaviour:
    """Send `data` one byte every `every` seconds (a valid answer, arriving forever)."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        for byte in data:
            sock.sendall(bytes([byte]))
            if stop.wait(every):
                return

    return behave


def silence() -> Behaviour:
    """Read the request and never answer."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        stop.wait()

    return behave


def huge(size: int) -> Behaviour:
    """A 200 whose body is `size` bytes of JSON-looking text."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/json\r\n\r\n"
        )
        sock.sendall(head.encode())
        chunk = b" " * 65536
        sent = 0
        while sent < size and not stop.is_set():
            part = chunk[: min(len(chunk), size - sent)]
            sock.sendall(part)
            sent += len(part)

    return behave


@dataclass
class HostileServer:
    host: str = "127.0.0.1"
    port: int = 0
    requests: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/api/"

    def webhook_url(self) -> str:
        return f"http://{self.host}:{self.port}/services/T000/B000/XXXXSECRET"


def _read_request(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return
        body += chunk


@contextmanager
def _serve(handle: Callable[[socket.socket, HostileServer], None]) -> Iterator[HostileServer]:
    state = HostileServer()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    state.port = listener.getsockname()[1]
    workers: list[threading.Thread] = []

    def one(conn: socket.socket) -> None:
        with conn, suppress(OSError):
            conn.settimeout(10)
            handle(conn, state)

    def accept() -> None:
        while not state.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=one, args=(conn,), daemon=True)
            workers.append(worker)
            worker.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield state
    finally:
        state.stop.set()
        acceptor.join(5)
        listener.close()
        for worker in workers:
            worker.join(5)


@contextmanager
def hostile_http(behaviour: Behaviour) -> Iterator[HostileServer]:
    """An HTTP server that reads each request, then acts out `behaviour`."""

    def handle(conn: socket.socket, state: HostileServer) -> None:
        _read_request(conn)
        state.requests += 1
        behaviour(conn, state.stop)

    with _serve(handle) as state:
        yield state


@contextmanager
def hostile_smtp(*, stall_after: int | None = None, trickle_every: float | None = None):
    """An SMTP server that greets and answers EHLO, then stops answering after
    `stall_after` replies (greeting included), or trickles its greeting one byte every
    `trickle_every` seconds."""

    def handle(conn: socket.socket, state: HostileServer) -> None:
        state.requests += 1
        greeting = b"220 hostile.example ESMTP\r\n"
        if trickle_every is not None:
            trickle(greeting, trickle_every)(conn, state.stop)
            state.stop.wait()
            return
        replies = 0
        conn.sendall(greeting)
        replies += 1
        buffer = b""
        while not state.stop.is_set():
            chunk = conn.recv(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\r\n" in buffer:
                line, _, buffer = buffer.partition(b"\r\n")
                if stall_after is not None and replies >= stall_after:
                    state.stop.wait()
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-hostile.example\r\n250 8BITMIME\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 OK\r\n")
                replies += 1

    with _serve(handle) as state:
        yield state
