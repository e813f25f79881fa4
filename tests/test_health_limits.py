"""The health endpoint under hostile clients, over real sockets: 1,000 idle
connections, 2,000 slowloris sockets, oversized heads, silent keep-alives. One
thread serves them all; /healthz still answers within a second."""

from __future__ import annotations

import resource
import socket
import threading
import time
from contextlib import ExitStack

import pytest
from daemon_harness import wait_until

from flowbot.health import BadRequest, HealthServer, parse_head
from flowbot.metrics import Metrics


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted`; returns what is allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def server(**options):
    return HealthServer(
        "127.0.0.1", 0, ready=lambda: (True, {"status": "ready"}), metrics=Metrics().render,
        **options,
    )  # fmt: skip


def ask(srv, path="/healthz", head=None, timeout=5.0):
    """One raw request → (status, the whole answer as text)."""
    host, port = srv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(
            head or f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    text = data.decode("latin-1")
    return int(text.split(" ", 2)[1]), text


def address(srv):
    host, port = srv.url.removeprefix("http://").split(":")
    return host, int(port)


def timed_healthz(srv):
    started = time.monotonic()
    status, text = ask(srv, timeout=2.0)
    return status, time.monotonic() - started, text


def test_healthz_answers_within_a_second_while_1000_idle_connections_are_open():
    allowed = raise_fd_limit(1000 + 200)
    idle = min(1000, allowed - 200)
    assert idle == 1000, f"fd limit {allowed} allows only {idle} idle sockets"
    threads = threading.active_count()
    with server() as srv, ExitStack() as stack:
        for _ in range(idle):
            stack.enter_context(socket.create_connection(address(srv), timeout=5))
        wait_until(lambda: srv.evicted >= idle - srv.max_connections, what="accepted")
        assert srv.open_connections <= srv.max_connections
        status, seconds, text = timed_healthz(srv)
        assert status == 200 and '{"status": "ok"}' in text
        assert seconds < 1.0, f"/healthz took {seconds:.2f}s"
        assert threading.active_count() <= threads + 1  # the server's one thread


def test_2000_slowloris_sockets_make_no_threads_and_health_still_answers():
    raise_fd_limit(2000 + 200)
    threads = threading.active_count()
    with server() as srv, ExitStack() as stack:
        socks = []
        for _ in range(2000):
            sock = stack.enter_context(socket.create_connection(address(srv), timeout=5))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-a: ")  # never finishes its head
            socks.append(sock)
        for sock in socks[-50:]:  # the newest keep trickling
            try:
                sock.sendall(b"b")
            except OSError:
                pass  # already closed by the server: that is fine
        assert threading.active_count() <= threads + 1
        wait_until(lambda: srv.evicted >= 2000 - srv.max_connections, what="all accepted")
        assert srv.open_connections <= srv.max_connections
        status, seconds, _ = timed_healthz(srv)
        assert status == 200 and seconds < 1.0
        assert threading.active_count() <= threads + 1


def test_a_slow_head_and_a_silent_keep_alive_are_closed_after_their_timeouts():
    with server(header_timeout=0.3, idle_timeout=0.3) as srv:
        slow = socket.create_connection(address(srv), timeout=5)
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        kept = socket.create_connection(address(srv), timeout=5)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = kept.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200") and b"Connection: keep-alive" in answer
        with slow, kept:
            assert slow.recv(10) == b""  # closed by the server, no answer
            assert kept.recv(10) == b""
        wait_until(lambda: srv.open_connections == 0, what="both closed")


def test_keep_alive_serves_several_requests_on_one_connection():
    with server() as srv, socket.create_connection(address(srv), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            data += sock.recv(4096)
        assert b'{"status": "ready"}' in data


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-h: v\r\n" * 40 + b"\r\n", 431),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 413),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 505),
        (b"GET /nope HTTP/1.0\r\n\r\n", 404),
    ],
)
def test_bad_heads_get_one_short_answer_and_a_close(head, status):
    with server() as srv:
        got, text = ask(srv, head=head)
        assert got == status
        assert "Connection: close" in text


def test_parse_head_reads_keep_alive_by_version():
    assert parse_head(b"GET /x?y HTTP/1.1").keep_alive is True
    assert parse_head(b"GET /x?y HTTP/1.1").path == "/x"
    assert parse_head(b"GET / HTTP/1.1\r\nConnection: close").keep_alive is False
    assert parse_head(b"GET / HTTP/1.0").keep_alive is False
    assert parse_head(b"HEAD / HTTP/1.0\r\nConnection: Keep-Alive").keep_alive is True
    with pytest.raises(BadRequest):
        parse_head(b"GET / HTTP/1.1\r\n bad: folded")


def test_a_callback_that_raises_answers_503_and_the_server_lives_on():
    def broken():
        raise RuntimeError("bug")

    with HealthServer("127.0.0.1", 0, ready=broken, metrics=Metrics().render) as srv:
        assert ask(srv, "/readyz")[0] == 503
        assert ask(srv, "/healthz")[0] == 200
