"""`flowbot run` as a subprocess against the simulator, for the daemon and health tests.

with Running(tmp_path, sim, RULES) as bot:
    bot.wait_for(lambda: bot.events("audit"))
    bot.signal(signal.SIGHUP)
    assert bot.stop() == 0
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

WAIT = 20.0  # seconds: generous, polled


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, timeout: float = WAIT, every: float = 0.05, what: str = "") -> Any:
    """Poll `check()` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(every)


def sim_env(sim: Any) -> dict[str, str]:
    return sim.environment()


class Running:
    """A `flowbot run` process: its rules file, database, log and channel files."""

    def __init__(
        self,
        path: Path,
        sim: Any,
        rules: str,
        *,
        http: bool = False,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        self.rules = path / "rules.yaml"
        self.rules.write_text(rules)
        self.db = path / "flowbot.db"
        self.port = free_port() if http else None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWBOT_", "ADOBE_"))}
        self.env.update(sim_env(sim))
        self.env.update({"FLOWBOT_RULES": str(self.rules), "FLOWBOT_DB": str(self.db)})
        if self.port:
            self.env["FLOWBOT_HTTP_PORT"] = str(self.port)
        self.env.update(env or {})
        self.args = args
        self.log_path = path / f"flowbot-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Running:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowbot", "run", *self.args],
            cwd=self.path,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def __enter__(self) -> Running:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    # -------------------------------------------------------------- control

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = WAIT) -> int:
        """SIGTERM, then the exit code (fails when it does not exit in time)."""
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def wait_exit(self, timeout: float = WAIT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    # -------------------------------------------------------------- looking

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1, timeout: float = WAIT) -> str:
        wait_until(lambda: self.log().count(text) >= count, timeout, what=repr(text))
        return self.log()

    def cycles(self) -> int:
        return self.log().count("cycle prod: ok")

    def wait_cycles(self, more: int = 1, timeout: float = WAIT) -> None:
        """Wait until `more` good cycles have run after now."""
        target = self.cycles() + more
        wait_until(lambda: self.cycles() >= target, timeout, what=f"{more} more cycles")

    def events(self, channel_file: str = "alerts.jsonl") -> list[dict[str, Any]]:
        path = self.path / channel_file
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) of GET `path` on the health port."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status, answer.headers["Content-Type"], answer.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers["Content-Type"], exc.read().decode()
