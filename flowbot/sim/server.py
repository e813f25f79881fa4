"""The simulator's HTTP side: IMS tokens, Flow Service headers, faults, and routing.

`Simulator(scenario).start()` serves on 127.0.0.1 in a background thread:
- `POST /ims/token/v3` issues bearer tokens for the one accepted client;
- `GET /flows`, `GET /runs` list (filters, orderby, limit, continuation paging, count);
- `GET /flows/{id}`, `GET /runs/{id}` answer `{"items": [item]}` or a FLOW-1439-404.

Every API request needs a valid bearer token (else 401), `x-api-key` equal to the
client id (else 403), `x-gw-ims-org-id` (400 when missing, 403 when another org) and an
`x-sandbox-name` of the scenario (else 403); only that sandbox's items are visible.
Faults (`fail_next`, `slow_next`, `malformed_next`) apply to API requests, not to IMS;
a failure answers as Adobe would for its status (a 401 is the gateway's `401013`, a 429
its `429050`, others a Flow Service error body). Every request is recorded
(`requests`), with its raw target, so tests can measure the URLs a client builds.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from flowbot.sim.data_access import DataAccessSim
from flowbot.sim.scenario import Scenario
from flowbot.sim.world import ListError, World

if TYPE_CHECKING:
    from flowbot.settings import Settings

IMS_PATH = "/ims/token/v3"
CLIENT_ID = "sim-client"
CLIENT_SECRET = "sim-secret"
ORG_ID = "SIM@AdobeOrg"
ERROR_TYPE = "https://ns.adobe.com/aep/errors/"
MALFORMED = b'{"items": [{"id": <html>upstream timeout</html>'  # cut short, not JSON


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the simulator received. Header names are lower-case; `target` is the
    request target as it arrived (path and query, still percent-encoded)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: str = ""
    target: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer: status, JSON (or raw bytes) body and extra headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def flow_error(code: str, title: str, message: str, **report: Any) -> dict[str, Any]:
    """A Flow Service error body (samples 23 and 24), e.g. code `FLOW-1439-404`."""
    return {
        "type": ERROR_TYPE + code,
        "title": title,
        "status": int(code.rsplit("-", 1)[1]),
        "report": {"detailed-message": message, **report, "request-id": secrets.token_hex(8)},
        "errorMessage": message,
        "errorDetails": message,
    }


def gateway_error(status: int, error_code: str, message: str) -> Reply:
    """An Adobe I/O gateway error (401013 bad token, 403003 bad api key, ...)."""
    return Reply(status, {"error_code": error_code, "message": message})


@dataclass
class Faults:
    """Queued per-request faults; each entry is consumed by one API request."""

    slow: deque[float] = field(default_factory=deque)
    fail: deque[tuple[int, float | None]] = field(default_factory=deque)
    malformed: deque[bool] = field(default_factory=deque)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: Simulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that hangs up early (a size or time bound) is not an error."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.simulator._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.simulator._track(self.connection, add=False)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        url = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            target=self.path,
        )
        reply = self.server.simulator._handle(request)
        raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header, from the simulator's wall clock (tests step it)."""
        return super().date_time_string(self.server.simulator.wall())

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: tests and the CLI print what matters themselves."""


class Simulator:
    """A Flow Service + IMS look-alike on 127.0.0.1, serving `scenario`.

    `port=0` picks a free port; `page_size` caps `limit`; `default_page` is the page
    size when no `limit` is asked (like Adobe's default; `page_size` when None); `token_lifetime` is the
    `expires_in` of issued tokens, measured on `clock` (seconds, monotonic by default);
    `wall` (epoch seconds, time.time by default) gives the `Date` header of answers.
    Use as a context manager, or call start() and stop().
    """

    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET
    org_id = ORG_ID

    def __init__(
        self,
        scenario: Scenario,
        port: int = 0,
        page_size: int = 100,
        default_page: int | None = None,
        token_lifetime: int = 86399,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.world = World(scenario, page_size=page_size, default_page=default_page)
        self.data_access = DataAccessSim(self._runs)  # the Data Access API under /export
        self.wall = wall
        self.port = port
        self.token_lifetime = token_lifetime
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._static_token = ""
        self._requests: list[RecordedRequest] = []
        self._faults = Faults()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.expire_tokens()

    # -- life cycle

    def start(self) -> Simulator:
        """Bind and serve in a daemon thread; returns self."""
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.simulator = self
        self._server = server
        self.port = server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="flowbot-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and close the socket."""
        self._stopping.set()
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- what tests read and steer

    @property
    def url(self) -> str:
        """The Flow Service base URL (FLOWBOT_API_URL)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ims_url(self) -> str:
        """The IMS token endpoint (FLOWBOT_IMS_URL)."""
        return self.url + IMS_PATH

    def environment(self) -> dict[str, str]:
        """The environment that points flowbot at this simulator (its URLs and the
        only credentials it accepts), as `flowbot sim` prints it."""
        return {
            "FLOWBOT_API_URL": self.url,
            "FLOWBOT_IMS_URL": self.ims_url,
            "ADOBE_CLIENT_ID": self.client_id,
            "ADOBE_CLIENT_SECRET": self.client_secret,
            "ADOBE_ORG_ID": self.org_id,
            "FLOWBOT_EXPORT_URL": self.export_url,
        }

    def settings(self, **overrides: Any) -> Settings:
        """Settings that point flowbot at this simulator (as `environment()` does),
        with `overrides` (the database, the channels' servers, ...)."""
        from flowbot.settings import Secret, Settings

        base: dict[str, Any] = {
            "api_url": self.url,
            "ims_url": self.ims_url,
            "client_id": self.client_id,
            "client_secret": Secret(self.client_secret),
            "org_id": self.org_id,
            "export_url": self.export_url,
        }
        return Settings(**{**base, **overrides})

    @property
    def export_url(self) -> str:
        """The Data Access API base URL (FLOWBOT_EXPORT_URL)."""
        return self.url + "/export"

    def _runs(self) -> dict[str, Any]:
        with self.world.lock:
            return dict(self.world.scenario.runs)

    @property
    def static_token(self) -> str:
        """A token valid without IMS (ADOBE_ACCESS_TOKEN), until expire_tokens()."""
        return self._static_token

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, IMS ones included, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def put_run(self, payload: dict[str, Any]) -> None:
        """Add or replace a run; its flow's lastRunDetails follows when it is the newest."""
        self.world.put_run(payload)

    def put_flow(self, payload: dict[str, Any]) -> None:
        """Add or replace a flow."""
        self.world.put_flow(payload)

    def fail_next(self, n: int, status: int = 503, retry_after: float | None = None) -> None:
        """The next `n` API requests answer `status` (with Retry-After when given); a 401
        is the gateway's refusal of the token, whatever token was sent."""
        with self._lock:
            self._faults.fail.extend([(status, retry_after)] * n)

    def slow_next(self, n: int, seconds: float) -> None:
        """The next `n` API requests wait `seconds` before answering."""
        with self._lock:
            self._faults.slow.extend([seconds] * n)

    def malformed_next(self, n: int) -> None:
        """The next `n` API requests answer 200 with a body that is not JSON."""
        with self._lock:
            self._faults.malformed.extend([True] * n)

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far; static_token becomes a new one."""
        with self._lock:
            self._tokens.clear()
            self._static_token = "sim-static-" + secrets.token_urlsafe(24)
            self._tokens[self._static_token] = float("inf")

    # -- answering

    def _handle(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
        if request.path == IMS_PATH:
            return self._issue_token(request)
        with self._lock:
            slow = self._faults.slow.popleft() if self._faults.slow else 0.0
            fail = self._faults.fail.popleft() if self._faults.fail else None
            malformed = self._faults.malformed.popleft() if self._faults.malformed else False
        if slow:
            self._stopping.wait(slow)
        if fail is not None:
            return failure_reply(*fail)
        reply = self._check_headers(request) or self._route(request)
        if malformed and reply.status == 200:
            return Reply(200, MALFORMED)
        return reply

    def _issue_token(self, request: RecordedRequest) -> Reply:
        if request.method != "POST":
            return Reply(405, {"error": "method_not_allowed"})
        form = parse_qs(request.body)
        form.update({k: v for k, v in request.query.items() if k not in form})

        def one(name: str) -> str:
            return (form.get(name) or [""])[0]

        if one("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "..."})
        if one("client_id") != CLIENT_ID or one("client_secret") != CLIENT_SECRET:
            return Reply(
                401, {"error": "invalid_client", "error_description": "invalid client credentials"}
            )
        token = "sim-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = self.clock() + self.token_lifetime
        return Reply(
            200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime}
        )

    def _check_headers(self, request: RecordedRequest) -> Reply | None:
        headers = request.headers
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self._lock:
            expires = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires is None or expires <= self.clock():
            return gateway_error(401, "401013", "Oauth token is not valid")
        if headers.get("x-api-key") != CLIENT_ID:
            return gateway_error(403, "403003", "Api Key is invalid")
        org = headers.get("x-gw-ims-org-id")
        if not org:
            return gateway_error(400, "400003", "Missing header: x-gw-ims-org-id")
        sandbox = headers.get("x-sandbox-name", "")
        if org != ORG_ID or sandbox not in self.world.sandboxes:
            message = (
                "You do not have sufficient permissions to perform the operation. "
                "Please contact your administrator to resolve permissions and try again."
            )
            return Reply(403, flow_error("FLOW-2120-403", "Forbidden", message))
        return None

    def _route(self, request: RecordedRequest) -> Reply:
        sandbox = request.headers["x-sandbox-name"]
        parts = [part for part in request.path.split("/") if part]
        if request.method == "GET" and parts[:1] == ["export"]:
            status, body, headers = self.data_access.handle(
                sandbox, parts[1:], request.query, self.export_url, self._stopping.wait
            )
            return Reply(status, body, headers)
        if request.method == "POST" and len(parts) == 3 and parts[::2] == ["runs", "action"]:
            from flowbot.sim.actions import retrigger

            op = (request.query.get("op") or [""])[0]
            now = datetime.fromtimestamp(self.wall(), UTC)
            return Reply(*retrigger(self.world, sandbox, parts[1], op, now))
        if request.method != "GET" or not parts or parts[0] not in ("flows", "runs"):
            message = f"No route for {request.method} {request.path}."
            return Reply(404, flow_error("FLOW-1000-404", "Not found", message))
        kind = parts[0]
        if len(parts) == 1:
            try:
                body = self.world.list(kind, sandbox, request.query)
            except ListError as exc:
                return Reply(400, flow_error(exc.code, "Bad Request", exc.message))
            return Reply(200, self.world.encode(body))
        item = self.world.get(kind, sandbox, parts[1]) if len(parts) == 2 else None
        if item is None:
            return Reply(404, not_found(kind, parts[1]))
        return Reply(200, {"items": [item]})


def not_found(kind: str, item_id: str) -> dict[str, Any]:
    """The 404 body of an unknown flow or run (sample 23)."""
    message = (
        f"The requested {kind} resource {item_id} is not found. "
        "Verify the resource ID before trying again."
    )
    return flow_error("FLOW-1439-404", "Resource not found", message, id=item_id, type=kind)


def failure_reply(status: int, retry_after: float | None) -> Reply:
    """The answer of an injected failure."""
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    if status == 401:
        return Reply(401, gateway_error(401, "401013", "Oauth token is not valid").body, headers)
    if status == 429:
        return Reply(429, {"error_code": "429050", "message": "Too many requests"}, headers)
    message = "The service is temporarily unavailable. Try again later."
    title = "Service Unavailable" if status == 503 else "Internal Server Error"
    return Reply(status, flow_error(f"FLOW-1500-{status}", title, message), headers)


def wait_for_signal() -> int:
    """Block until SIGINT or SIGTERM arrives (main thread only); returns its number."""
    received: list[int] = []
    arrived = threading.Event()

    def note(signum: int, _frame: Any) -> None:
        received.append(signum)
        arrived.set()

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not arrived.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0]
