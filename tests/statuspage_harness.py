"""The status page served over loopback from a seeded store, for the page and browser
tests: `Served(tmp_path, host=...)` starts a real HealthServer with StatusPages."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import Clock
from seeded_store import NOW, seed

from flowbot.health import HealthServer
from flowbot.rules import load_rules
from flowbot.statuspage import StatusPages
from flowbot.store import Store

RULES = """
sandboxes: [prod, dev]
aep_ui: {org: acme}
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
rules:
  - name: run-failed
    type: status
    status: [failed]
    severity: critical
    owner: "@data-ops"
    runbook: https://wiki.example.com/aep/run-failed
  - name: web-failed
    type: status
    status: [failed]
    flows: {name: "web-*"}
    owner: "@web-team"
"""


class Served:
    def __init__(self, path: Path, *, host: str = "127.0.0.1", token: str = "") -> None:
        self.db = path / "flowbot.db"
        seed(self.db).close()
        (path / "rules.yaml").write_text(RULES)
        ruleset = load_rules(path / "rules.yaml")
        self.pages = StatusPages(
            lambda: Store(self.db), lambda: ruleset, Clock(NOW), token=token, bound_to=host
        )
        self.server = HealthServer(
            host, 0, ready=lambda: (True, {}), metrics=lambda: "", pages=self.pages
        )

    def __enter__(self) -> Served:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, *, password: str | None = None, bearer: str | None = None) -> Any:
        """(status, headers, text) of GET `path`."""
        request = urllib.request.Request(self.url + path)
        if password is not None:
            basic = base64.b64encode(f"ops:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {basic}")
        if bearer is not None:
            request.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.headers, answer.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers, exc.read().decode()
