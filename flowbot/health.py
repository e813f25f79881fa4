"""The daemon's HTTP side: `/healthz`, `/readyz` and `/metrics` on a small stdlib server.

`readiness` decides (pure); `HealthServer` only answers with what its callbacks say.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from flowbot.metrics import CONTENT_TYPE

log = logging.getLogger("flowbot.health")

STALE_AFTER = 3  # poll intervals without a good cycle before /readyz says 503


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


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._reply(200, "application/json", json.dumps({"status": "ok"}))
        elif path == "/readyz":
            ready, body = self.server.ready()
            self._reply(200 if ready else 503, "application/json", json.dumps(body))
        elif path == "/metrics":
            self._reply(200, CONTENT_TYPE, self.server.metrics())
        else:
            self._reply(404, "application/json", json.dumps({"error": "not found"}))

    def _reply(self, status: int, content_type: str, text: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("health: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        ready: Callable[[], tuple[bool, dict[str, Any]]],
        metrics: Callable[[], str],
    ) -> None:
        super().__init__(address, _Handler)
        self.ready = ready
        self.metrics = metrics


class HealthServer:
    """Serves the endpoints on `host:port` (0: a free port) in a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Callable[[], tuple[bool, dict[str, Any]]],
        metrics: Callable[[], str],
    ) -> None:
        self._server = _Server((host, port), ready, metrics)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="flowbot-health", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
