"""Health and metrics: readiness decided purely, the Prometheus text format
parsed back, the HTTP server on loopback, and a live `flowbot run` answering them."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from daemon_harness import Running, wait_until

from flowbot.health import HealthServer, readiness
from flowbot.metrics import CONTENT_TYPE, FAMILIES, Metrics
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*)\})?'
    r" (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf|NaN))$"
)
LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format 0.0.4 → {(name, labels): value}; fails on any bad line."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped")
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no TYPE line before it"
        labels = frozenset(LABEL.findall(match["labels"] or ""))
        assert (name, labels) not in samples, f"duplicate sample {line!r}"
        samples[(name, labels)] = float(match["value"])
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


# ------------------------------------------------------------------ pure


@pytest.mark.parametrize(
    ("last_ok", "ready", "reason"),
    [
        ({"prod": NOW - MINUTE, "dev": NOW - 14 * MINUTE}, True, None),
        ({"prod": NOW - MINUTE}, False, {"dev": "no good cycle yet"}),
        (
            {"prod": NOW - MINUTE, "dev": NOW - 16 * MINUTE},
            False,
            {"dev": "last good cycle 960s ago (limit 900s)"},
        ),
        ({}, False, {"prod": "no good cycle yet", "dev": "no good cycle yet"}),
    ],
)
def test_readiness_wants_a_good_cycle_of_every_sandbox_within_three_intervals(
    last_ok, ready, reason
):
    ok, body = readiness(last_ok, ["prod", "dev"], timedelta(minutes=5), NOW)
    assert ok is ready
    assert body.get("sandboxes") == reason
    json.dumps(body)


def test_metrics_render_parses_back_with_help_type_and_escaped_labels():
    m = Metrics()
    m.inc("flowbot_cycles_total", sandbox="prod", result="ok")
    m.inc("flowbot_cycles_total", sandbox="prod", result="ok")
    m.inc("flowbot_messages_total", 3, channel='we"ird\\chan\nnel', result="sent")
    m.observe("flowbot_cycle_duration_seconds", 0.25, sandbox="prod")
    m.observe("flowbot_cycle_duration_seconds", 0.5, sandbox="prod")
    m.replace("flowbot_alerts", {"firing": 2, "resolved": 5}, "state")
    m.replace("flowbot_alerts", {"firing": 1}, "state")
    m.set("flowbot_outbox_depth", 4)
    text = m.render()
    samples = parse(text)
    assert value(samples, "flowbot_cycles_total", sandbox="prod", result="ok") == 2
    assert value(samples, "flowbot_cycle_duration_seconds_sum", sandbox="prod") == 0.75
    assert value(samples, "flowbot_cycle_duration_seconds_count", sandbox="prod") == 2
    assert value(samples, "flowbot_alerts", state="firing") == 1
    assert value(samples, "flowbot_alerts", state="resolved") is None
    assert value(samples, "flowbot_outbox_depth") == 4
    assert 'channel="we\\"ird\\\\chan\\nnel"' in text
    for family in FAMILIES:
        assert f"# TYPE {family.name} {family.type}\n" in text
    with pytest.raises(KeyError):
        m.inc("flowbot_typo_total")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_the_server_answers_health_ready_metrics_and_404():
    state = {"ready": (False, {"status": "not ready", "sandboxes": {"prod": "no good cycle yet"}})}
    metrics = Metrics()
    metrics.set("flowbot_outbox_depth", 7)
    with HealthServer("127.0.0.1", 0, ready=lambda: state["ready"], metrics=metrics.render) as srv:
        assert get(srv.url + "/healthz")[:2] == (200, "application/json")
        status, _, body = get(srv.url + "/readyz")
        assert status == 503 and json.loads(body)["sandboxes"] == {"prod": "no good cycle yet"}
        state["ready"] = (True, {"status": "ready"})
        assert get(srv.url + "/readyz")[0] == 200
        status, kind, body = get(srv.url + "/metrics")
        assert (status, kind) == (200, CONTENT_TYPE)
        assert value(parse(body), "flowbot_outbox_depth") == 7
        assert get(srv.url + "/nope")[0] == 404


# ------------------------------------------------------------------ live daemon

RULES = """
sandboxes: [prod]
poll_every: 1s
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
rules:
  - name: run-failed
    type: status
    status: [failed]
"""


def test_a_running_daemon_serves_health_readiness_and_metrics(tmp_path):
    now = datetime.now(UTC)
    scenario = Scenario(now=now)
    scenario.put_flow(make_flow(name="crm-daily", flow_id="f1", start_at=now - timedelta(days=1)))
    at = now - timedelta(minutes=10)
    scenario.put_run(make_run("f1", status="failed", started_at=at, completed_at=at + MINUTE))
    with Simulator(scenario, port=0) as sim, Running(tmp_path, sim, RULES, http=True) as bot:
        wait_until(lambda: bot.events(), what="the alert")
        # Wait for the state asserted below (two good cycles counted), not for a log line.
        wait_until(
            lambda: (value(parse(bot.get("/metrics")[2]), "flowbot_cycles_total", sandbox="prod",
                           result="ok") or 0) >= 2,
            what="two good cycles in /metrics",
        )  # fmt: skip
        assert bot.get("/healthz")[0] == 200
        assert bot.get("/readyz") == (200, "application/json", json.dumps({"status": "ready"}))
        status, kind, text = bot.get("/metrics")
        assert (status, kind) == (200, CONTENT_TYPE)
        samples = parse(text)
        assert value(samples, "flowbot_cycles_total", sandbox="prod", result="ok") >= 2
        assert value(samples, "flowbot_runs_read_total", sandbox="prod") >= 1
        assert value(samples, "flowbot_findings_total", sandbox="prod") >= 1
        assert value(samples, "flowbot_alerts", state="firing") == 1
        assert value(samples, "flowbot_messages_total", channel="audit", result="sent") == 1
        assert value(samples, "flowbot_outbox_depth") == 0
        assert value(samples, "flowbot_api_requests_total", status="200") >= 4
        assert value(samples, "flowbot_token_refreshes_total") == 1
        last = value(samples, "flowbot_last_success_timestamp_seconds", sandbox="prod")
        assert abs(last - datetime.now(UTC).timestamp()) < 30
        assert value(samples, "flowbot_cycle_duration_seconds_count", sandbox="prod") >= 2

        # The API refuses every request: after 3 × poll_every without a good cycle, 503.
        sim.fail_next(10_000, status=403)
        wait_until(lambda: bot.get("/readyz")[0] == 503, what="not ready")
        reason = json.loads(bot.get("/readyz")[2])
        assert reason["sandboxes"]["prod"].startswith("last good cycle")
        samples = parse(bot.get("/metrics")[2])
        assert value(samples, "flowbot_cycles_total", sandbox="prod", result="failed") >= 2
        assert value(samples, "flowbot_api_requests_total", status="403") >= 2
        assert bot.get("/healthz")[0] == 200  # alive all the same
        assert bot.stop() == 0
