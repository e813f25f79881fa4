"""A hostile HTTP server on loopback, for the Flow Service and IMS sides: each path is
answered by a function that may do anything a bad server does (trickle bytes, stream
gigabytes, link elsewhere, redirect, echo what it was sent), and every request is
recorded with its headers and body so tests can see where credentials went.

    with HostileServer() as api, HostileServer() as foreign:
        api.on("/runs", lambda h: h.json(200, {"items": [], "_links": {"next": {"href": foreign.url}}}))
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-case
    body: str


class Exchange:
    """What a route function gets: the request, and ways to answer it."""

    def __init__(self, handler: BaseHTTPRequestHandler, seen: Seen, server: HostileServer):
        self.handler = handler
        self.seen = seen
        self.server = server
        self.sent = 0  # body bytes written

    def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = (body if isinstance(body, bytes) else json.dumps(body).encode()) or b""
        self.head(status, {"Content-Type": "application/json", **(headers or {})}, len(data))
        self.write(data)

    def head(self, status: int, headers: dict[str, str], length: int | None = None) -> None:
        self.handler.send_response(status)
        for name, value in headers.items():
            self.handler.send_header(name, value)
        if length is not None:
            self.handler.send_header("Content-Length", str(length))
        else:
            self.handler.send_header("Connection", "close")
        self.handler.end_headers()

    def write(self, data: bytes) -> bool:
        """Write body bytes; False once the client has gone (or the server stops)."""
        if self.server.stopping.is_set():
            return False
        try:
            self.handler.wfile.write(data)
            self.handler.wfile.flush()
        except OSError:
            return False
        self.sent += len(data)
        self.server.sent += len(data)
        return True

    def trickle(self, data: bytes, every: float) -> None:
        """Write `data` one byte per `every` seconds, until done or the client leaves."""
        for i in range(len(data)):
            if not self.write(data[i : i + 1]) or self.server.stopping.wait(every):
                return

    def raw(self, data: bytes) -> bool:
        """Write bytes before any status line (a broken or trickled head)."""
        return self.write(data)


Route = Callable[[Exchange], None]


class HostileServer:
    """Answers each path with its route (404 JSON when none); records every request.
    `tls=True` serves https with a throw-away self-signed certificate (`cert` is the
    file a client must trust)."""

    def __init__(self, tls: bool = False, tmp: Path | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.sent = 0
        self.stopping = threading.Event()
        self.cert: str | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            timeout = 30

            def do_GET(self) -> None:  # noqa: N802
                self.dispatch()

            def do_POST(self) -> None:  # noqa: N802
                self.dispatch()

            def dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                url = urlsplit(self.path)
                seen = Seen(
                    self.command, url.path, parse_qs(url.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()}, body,
                )  # fmt: skip
                server.requests.append(seen)
                route = server.routes.get(url.path)
                exchange = Exchange(self, seen, server)
                if route is None:
                    exchange.json(404, {"error_code": "404", "message": "no route"})
                else:
                    route(exchange)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if tls:
            assert tmp is not None, "a TLS server needs a folder for its certificate"
            self.cert = _self_signed(tmp)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert, str(tmp / "key.pem"))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )
        self._thread.start()

    def on(self, path: str, route: Route) -> HostileServer:
        self.routes[path] = route
        return self

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _self_signed(folder: Path) -> str:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert)
