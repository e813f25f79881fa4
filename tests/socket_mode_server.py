"""A Socket Mode look-alike on loopback: the WebSocket side of Slack's Socket Mode.

    with slack_server() as slack, socket_mode_server() as sock:
        slack.socket_url = sock.url        # what apps.connections.open answers
        ... start flowbot's SocketMode against slack.url ...
        sock.wait_connected()
        eid = sock.send("interactive", payload)      # an envelope, as Slack sends it
        sock.wait_ack(eid)                           # the client's ack ({"envelope_id", ...})
        sock.send("interactive", payload, envelope_id=eid)   # a replay
        sock.drop()                                  # cut the socket; the client reconnects
        sock.connections                             # how many sockets were opened

Each new connection is greeted with Slack's `hello`. Acks are recorded with the time
they took (seconds from the envelope sent to its ack received).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


@dataclass
class SocketModeServer:
    url: str = ""
    connections: int = 0
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ack_seconds: dict[str, float] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    current: ServerConnection | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def handle(self, conn: ServerConnection) -> None:
        with self.cond:
            self.connections += 1
            self.current = conn
            self.cond.notify_all()
        conn.send(json.dumps({"type": "hello", "num_connections": 1,
                              "debug_info": {"host": "lookalike"}}))  # fmt: skip
        try:
            for raw in conn:
                data = json.loads(raw)
                envelope = data.get("envelope_id") if isinstance(data, dict) else None
                if envelope:
                    with self.cond:
                        self.acks[envelope] = data
                        started = self.sent_at.get(envelope, time.monotonic())
                        self.ack_seconds[envelope] = time.monotonic() - started
                        self.cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self.cond:
                if self.current is conn:
                    self.current = None
                self.cond.notify_all()

    def wait(self, predicate: Any, timeout: float = 5.0) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError("the Socket Mode look-alike waited in vain")

    def wait_connected(self, count: int = 1, timeout: float = 5.0) -> None:
        self.wait(lambda: self.connections >= count and self.current is not None, timeout)

    def send(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        accepts_response_payload: bool = False,
    ) -> str:
        envelope_id = envelope_id or f"env-{next(self.ids)}"
        self.wait_connected()
        conn = self.current
        assert conn is not None
        with self.cond:
            self.acks.pop(envelope_id, None)
            self.sent_at[envelope_id] = time.monotonic()
        conn.send(json.dumps({
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": accepts_response_payload, "retry_attempt": 0,
        }))  # fmt: skip
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        self.wait(lambda: envelope_id in self.acks, timeout)
        return self.acks[envelope_id]

    def drop(self) -> None:
        """Cut the current socket, as a Slack restart or a network hiccup does."""
        conn = self.current
        if conn is not None:
            conn.close()
        self.wait(lambda: self.current is None)


@contextmanager
def socket_mode_server() -> Iterator[SocketModeServer]:
    state = SocketModeServer()
    server = serve(state.handle, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/link/?ticket=lookalike"
    try:
        yield state
    finally:
        server.shutdown()
        thread.join(5)
