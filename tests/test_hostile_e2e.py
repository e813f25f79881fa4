"""Hostile Flow Service answers, end to end: an endless listing fails its cycles within
their bounds and the meta-alert goes out after `monitoring.after`; a 400 MB page keeps
the whole `flowbot check --once` process small."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hostile_servers import HostileServer

from flowbot.aep.client import Limits, RetryPolicy
from flowbot.pipeline import build_deps, run_once
from flowbot.rules import load_rules
from flowbot.settings import Secret, Settings
from flowbot.store import Store

RULES = """
sandboxes: [prod]
poll_every: 5m
channels:
  ops: {file: ops.jsonl}
defaults:
  channels: [ops]
monitoring:
  channels: [ops]
  after: 10m
rules:
  - {name: run-failed, type: status, status: [failed]}
"""


def endless(server: HostileServer):
    def answer(h):
        token = len(server.requests)
        h.json(200, {"items": [], "_links": {"next": {"href": f"/runs?continuationToken={token}"}}})

    return answer


def test_endless_pages_fail_each_cycle_and_the_meta_alert_follows(tmp_path, clock):
    (tmp_path / "rules.yaml").write_text(RULES)
    ruleset = load_rules(tmp_path / "rules.yaml", environ={})
    with HostileServer() as api:
        api.on("/flows", lambda h: h.json(200, {"items": []}))
        api.on("/runs", endless(api))
        settings = Settings(
            api_url=api.url, access_token=Secret("tok-e2e-1234"), client_id="cid",
            org_id="ORG@AdobeOrg", db=str(tmp_path / "flowbot.db"),
        )  # fmt: skip
        store = Store(settings.db)
        store.migrate()
        try:
            options = {"limits": Limits(max_pages=40), "retry": RetryPolicy(max_attempts=1)}
            deps = build_deps(settings, ruleset, clock=clock, store=store, client_options=options)
            [first], _ = run_once(deps)
            assert not first.ok and "more than 40 pages" in (first.error or "")
            assert first.api_requests <= 42  # the flows page and 40 runs pages, not forever
            assert not (tmp_path / "ops.jsonl").exists()  # one failed cycle pages nobody
            clock.advance(minutes=11)
            [second], delivery = run_once(deps)
            assert not second.ok and delivery.sent == 1 and delivery.pending == 0
            assert store.watermark("prod").runs_since is None  # nothing read: not advanced
        finally:
            store.close()
    [meta] = [json.loads(line) for line in (tmp_path / "ops.jsonl").read_text().splitlines()]
    assert "monitoring degraded for sandbox prod" in meta["text"]
    assert "more than 40 pages" in meta["text"]


def _peak_rss_mb(pid_status: str) -> float:
    for line in pid_status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


PROBE = """
import sys
sys.argv = ["flowbot", "check", "--once"]
from flowbot.cli import main
try:
    main()
except SystemExit as exit:
    code = exit.code
print(open("/proc/self/status").read())
sys.exit(code)
"""


def test_a_400_mb_page_keeps_the_whole_process_small(tmp_path):
    """The page is streamed without a Content-Length; the client stops reading at its
    size limit (64 MB by default), so the peak RSS of the whole process stays bounded."""
    (tmp_path / "rules.yaml").write_text(RULES)
    chunk = b'{"id": "x", "flowId": "f", "pad": "' + b"y" * 65000 + b'"},'

    def huge(h):
        h.head(200, {"Content-Type": "application/json"})
        h.write(b'{"items": [')
        for _ in range(400 * 2**20 // len(chunk)):
            if not h.write(chunk):
                return

    with HostileServer() as api:
        api.on("/flows", lambda h: h.json(200, {"items": []}))
        api.on("/runs", huge)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWBOT_", "ADOBE_"))}
        env.update(
            FLOWBOT_API_URL=api.url, ADOBE_ACCESS_TOKEN="tok-e2e-1234", ADOBE_CLIENT_ID="cid",
            ADOBE_ORG_ID="ORG@AdobeOrg", FLOWBOT_RULES=str(tmp_path / "rules.yaml"),
            FLOWBOT_DB=str(tmp_path / "flowbot.db"),
        )  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "larger than 64 MB" in done.stderr and "Traceback" not in done.stderr
    assert api.sent < 400 * 2**20 // 2  # reading stopped early
    peak = _peak_rss_mb(done.stdout)
    print(f"peak RSS of check --once reading a 400 MB page: {peak:.0f} MB")
    assert peak < 250, f"peak RSS {peak:.0f} MB"
