"""`flowbot run`: a real subprocess against the simulator over HTTP, a real
SQLite file and file channels: cycles, stop, reload (signal and mtime, good and bad),
a removed rule, the meta-alert and its recovery, the lock, a missing rules file. And,
in process: the scheduler options (a clock jump gives one catch-up cycle), a crashing
cycle that keeps the daemon alive and counts as a failure, the heartbeat."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from conftest import Clock
from daemon_harness import Running, free_port, sim_env, wait_until

from flowbot import daemon
from flowbot.daemon import AlreadyRunning, Daemon, acquire_lock, job_options
from flowbot.errors import ConfigError
from flowbot.outbox import Delivery
from flowbot.pipeline import CycleReport, build_deps
from flowbot.rules import load_rules
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator
from flowbot.store import Store
from flowbot.summary import delivery_line, summary_line

NOW = datetime.now(UTC).replace(microsecond=0)

RULES = """
sandboxes: [prod]
poll_every: 1s
lookback: 24h
channels:
  audit: {file: alerts.jsonl}
  ops: {file: ops.jsonl}
defaults:
  channels: [audit]
monitoring:
  channels: [ops]
  after: 2s
rules:
  - name: run-failed
    type: status
    status: [failed]
    flows: {name: "crm-*"}
"""

MAPPING_RULE = """
  - name: mapping-errors
    type: error_code
    codes: ["MAPPER-*"]
"""


def flow(name):
    return make_flow(name=name, flow_id=f"id-{name}", start_at=NOW - timedelta(days=3))


def failed(name, minutes_ago, code="CONNECTOR-2001-500"):
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return make_run(
        f"id-{name}", status="failed", started_at=at, completed_at=at + timedelta(minutes=1),
        failed_records=0, errors=[{"code": code, "message": "boom"}],
    )  # fmt: skip


@pytest.fixture
def sim():
    scenario = Scenario(now=NOW)
    for name in ("crm-daily", "crm-contacts", "web-import"):
        scenario.put_flow(flow(name))
    with Simulator(scenario, port=0) as server:
        yield server


def fired(bot, channel="alerts.jsonl"):
    return [(m["event"], m["rule"], m["flow"]["name"]) for m in bot.events(channel)]


# ------------------------------------------------------------------ subprocess


def test_run_cycles_alerts_logs_json_and_stops_cleanly_on_sigterm(tmp_path, sim):
    sim.put_run(failed("crm-daily", 30))
    env = {"FLOWBOT_LOG_FORMAT": "json"}
    with Running(tmp_path, sim, RULES, env=env) as bot:
        wait_until(lambda: fired(bot), what="the first alert")
        bot.wait_cycles(2)
        assert fired(bot) == [("firing", "run-failed", "crm-daily")]  # once, not per cycle
        sim.put_run(failed("crm-contacts", 1))
        wait_until(lambda: len(fired(bot)) == 2, what="the second alert")
        assert bot.stop(timeout=10) == 0
    lines = [json.loads(line) for line in bot.log().splitlines()]
    summaries = [e["message"] for e in lines if e["message"].startswith("cycle prod: ok")]
    assert summaries and "runs " in summaries[0] and "API requests" in summaries[0]
    assert any("1 fired" in s for s in summaries)
    assert lines[-1]["message"] == "flowbot run: stopped"
    assert sim.client_secret not in bot.log()
    store = Store(bot.db)
    try:
        names = {(a.flow_name, a.state) for a in store.alerts(rule="run-failed")}
    finally:
        store.close()
    assert names == {("crm-daily", "firing"), ("crm-contacts", "firing")}


def test_sigint_also_stops_with_exit_0(tmp_path, sim):
    with Running(tmp_path, sim, RULES) as bot:
        bot.wait_cycles(1)
        bot.signal(signal.SIGINT)
        assert bot.wait_exit(timeout=10) == 0
    assert "SIGINT: stopping" in bot.log()


def test_sighup_good_edit_fires_a_new_rule_and_a_bad_edit_keeps_the_old_rules(tmp_path, sim):
    sim.put_run(failed("web-import", 20, code="MAPPER-3001-400"))
    with Running(tmp_path, sim, RULES) as bot:
        bot.wait_cycles(1)
        assert fired(bot) == []  # web-import is not crm-*: no rule matches yet
        bot.rules.write_text(RULES + MAPPING_RULE)
        bot.signal(signal.SIGHUP)
        bot.wait_log("rules reloaded (SIGHUP): 2 rules")
        sim.put_run(failed("web-import", 1, code="MAPPER-3001-400"))  # runs judged as they come
        wait_until(lambda: fired(bot), what="the new rule to fire")
        assert fired(bot) == [("firing", "mapping-errors", "web-import")]

        bad = RULES + MAPPING_RULE + "    treshold: 5\n"
        bot.rules.write_text(bad)
        with pytest.raises(ConfigError) as expected:
            load_rules(bot.rules)
        bot.signal(signal.SIGHUP)
        log = bot.wait_log("rules reload rejected")
        assert str(expected.value) in log  # the same words as `rules check`
        wait_until(lambda: bot.events("ops.jsonl"), what="the rejection notice")
        assert "rejected" in bot.events("ops.jsonl")[0]["text"]
        # The last good rules keep working.
        sim.put_run(failed("crm-daily", 1))
        wait_until(lambda: len(fired(bot)) == 2, what="an alert under the old rules")
        assert fired(bot)[-1] == ("firing", "run-failed", "crm-daily")
        assert bot.stop() == 0


def test_an_edit_on_disk_reloads_and_a_removed_rule_resolves_quietly(tmp_path, sim):
    sim.put_run(failed("crm-daily", 20))
    with Running(tmp_path, sim, RULES + MAPPING_RULE) as bot:
        wait_until(lambda: fired(bot), what="the first alert")
        bot.rules.write_text(RULES.replace("name: run-failed", "name: run-broke"))
        bot.wait_log("rules reloaded (rules or templates changed on disk)")
        bot.wait_cycles(2)
        sim.put_run(failed("crm-daily", 1))

        def states():
            store = Store(bot.db)
            try:
                return {(a.rule, a.state) for a in store.alerts()}
            finally:
                store.close()

        wait_until(lambda: ("run-broke", "firing") in states(), what="the renamed rule")
        assert ("run-failed", "resolved") in states()
        # the alert is committed before the outbox drains: wait for its message
        renamed = ("firing", "run-broke", "crm-daily")
        events = wait_until(lambda: renamed in fired(bot) and fired(bot), what="its message")
        assert ("resolved", "run-failed", "crm-daily") not in events
        assert events.count(("firing", "run-broke", "crm-daily")) == 1
        assert bot.stop() == 0


def test_the_api_failing_sends_a_meta_alert_then_a_recovery(tmp_path, sim):
    with Running(tmp_path, sim, RULES) as bot:
        bot.wait_cycles(1)
        sim.fail_next(4, status=403)  # refused, not retried: one request per cycle
        wait_until(lambda: bot.events("ops.jsonl"), what="the meta-alert")
        degraded = bot.events("ops.jsonl")[0]["text"]
        assert "monitoring degraded for sandbox prod since" in degraded
        wait_until(lambda: len(bot.events("ops.jsonl")) == 2, what="the recovery")
        assert "monitoring recovered for sandbox prod" in bot.events("ops.jsonl")[1]["text"]
        assert "cycle prod: FAILED" in bot.log()
        assert bot.stop() == 0


def test_a_second_daemon_on_the_same_database_refuses_with_exit_2(tmp_path, sim):
    with Running(tmp_path, sim, RULES) as first:
        first.wait_cycles(1)
        second = subprocess.run(
            [sys.executable, "-m", "flowbot", "run"],
            cwd=tmp_path, env=first.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "already using" in lines[0] and str(first.db) in lines[0]
        assert first.proc.poll() is None  # the first one runs on
        assert first.stop() == 0


def test_a_missing_rules_file_is_one_line_and_exit_2(tmp_path, sim):
    env = {**sim_env(sim), "FLOWBOT_DB": str(tmp_path / "x.db"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "flowbot", "run", "--rules", str(tmp_path / "nope.yaml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.yaml" in lines[0] and "Traceback" not in result.stderr


# ------------------------------------------------------------------ in process


def test_a_clock_jump_gives_one_catch_up_cycle_not_a_burst():
    scheduler = BackgroundScheduler(timezone=UTC)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    job = scheduler.add_job(print, id="cycle:prod", **job_options(timedelta(minutes=5), start))
    assert (job.coalesce, job.max_instances) == (True, 1)
    assert job.next_run_time == start  # starts at once
    # The host sleeps for 3 hours: 36 runs were missed.
    woke = start + timedelta(hours=3, seconds=7)
    missed = job._get_run_times(woke)  # what APScheduler computes on waking
    assert len(missed) >= 30
    # coalesce → only the latest is submitted, and it is within the grace time, so it runs.
    latest = missed[-1]
    assert woke - latest <= timedelta(seconds=job.misfire_grace_time)
    assert job.trigger.interval == timedelta(minutes=5)
    assert 0 < job.trigger.jitter <= 30


def test_the_lock_is_exclusive_and_released_on_close(tmp_path):
    db = str(tmp_path / "flowbot.db")
    held = acquire_lock(db)
    with pytest.raises(AlreadyRunning, match="already using"):
        acquire_lock(db)
    held.close()
    acquire_lock(db).close()


def test_summary_line_names_every_figure():
    report = CycleReport("prod", runs_read=12, runs_new=3, findings=2, fired=1, queued=2,
                         api_requests=4, seconds=0.5)  # fmt: skip
    line = summary_line(report, Delivery(sent=2, pending=1))
    assert line == (
        "cycle prod: ok; runs 12 read, 3 new; 2 findings; alerts 1 fired, 0 repeated, "
        "0 resolved, 0 muted; messages 2 queued, 2 sent, 0 failed, 1 pending; "
        "4 API requests; 0.50s"
    )


def test_summary_line_without_a_delivery_stops_at_the_queue_and_a_failure_says_why():
    report = CycleReport("prod", ok=False, error="Flow Service GET /flows: 503", queued=1)
    line = summary_line(report)
    assert line.startswith("cycle prod: FAILED (Flow Service GET /flows: 503); runs 0 read")
    assert "messages 1 queued; 0 API requests" in line and "sent" not in line
    assert delivery_line(Delivery(sent=3, failed=1)) == "messages: 3 sent, 1 failed, 0 pending"


class Heartbeats(ThreadingHTTPServer):
    def __init__(self):
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(handler):  # noqa: N802, N805
                self.paths.append(handler.path)
                handler.send_response(200)
                handler.send_header("Content-Length", "2")
                handler.end_headers()
                handler.wfile.write(b"ok")

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.shutdown()
        self.server_close()


@pytest.fixture
def beats():
    server = Heartbeats()
    yield server
    server.close()


def in_process(tmp_path, sim, rules, clock, client_for=None):
    (tmp_path / "rules.yaml").write_text(rules)
    settings = sim.settings(db=str(tmp_path / "flowbot.db"), rules=str(tmp_path / "rules.yaml"))
    ruleset = load_rules(settings.rules)
    deps = build_deps(settings, ruleset, clock=clock)
    if client_for is not None:
        deps.client_for = client_for
    return Daemon(settings, ruleset, deps, scheduler=BackgroundScheduler(timezone=UTC))


@pytest.fixture
def logged(caplog):
    """caplog, also when an earlier test turned off propagation of flowbot's logger."""
    logger = logging.getLogger("flowbot")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_a_crashing_cycle_is_logged_counted_and_raises_the_meta_alert(tmp_path, sim, logged):
    clock = Clock(NOW)

    def broken(sandbox):
        raise RuntimeError("a bug in a stage")

    bot = in_process(tmp_path, sim, RULES, clock, client_for=broken)
    try:
        with logged.at_level("ERROR", logger="flowbot"):
            assert bot.cycle("prod") is None  # did not raise: the daemon lives on
        [crash, *_] = logged.records
        assert crash.getMessage().startswith(
            "cycle prod: FAILED in the cycle stage (RuntimeError: a bug in a stage (at "
        )
        assert crash.exc_info is None  # one line; the traceback is at DEBUG level
        assert bot.metrics.value("flowbot_cycles_total", sandbox="prod", result="error") == 1
        assert bot.deps.store.watermark("prod").failing_since == NOW
        clock.at = NOW + timedelta(seconds=3)  # past monitoring.after (2s)
        bot.cycle("prod")
        [meta] = bot.deps.store.messages(limit=5)  # queued and sent in the same cycle
        assert meta.state == "sent"
        assert "monitoring degraded for sandbox prod" in meta.body["text"]
        assert "RuntimeError: a bug in a stage" in meta.body["text"]
        assert "prod" not in bot.last_ok
    finally:
        bot.deps.store.close()


def test_a_good_cycle_calls_the_heartbeat_and_a_dead_heartbeat_is_not_fatal(
    tmp_path, sim, beats, logged
):
    port = beats.server_address[1]
    beat = f"  heartbeat_url: http://127.0.0.1:{port}/ping/abc\n"
    rules = RULES.replace("  after: 2s\n", "  after: 2s\n" + beat)
    bot = in_process(tmp_path, sim, rules, Clock(NOW))
    try:
        report = bot.cycle("prod")
        assert report is not None and report.ok
        assert beats.paths == ["/ping/abc"]
        assert bot.metrics.value("flowbot_cycles_total", sandbox="prod", result="ok") == 1
        dead = f"http://127.0.0.1:{free_port()}/ping"
        with logged.at_level("WARNING", logger="flowbot"):
            daemon.ping(dead, timeout=2)
        assert "heartbeat to 127.0.0.1" in logged.text
    finally:
        bot.deps.store.close()


def test_a_reload_reschedules_on_new_sandboxes_and_rejects_a_broken_template(tmp_path, sim):
    bot = in_process(tmp_path, sim, RULES, Clock(NOW))
    try:
        bot.schedule()
        assert sorted(j.id for j in bot.scheduler.get_jobs()) == ["cycle:prod", "watch"]
        rules = RULES.replace("sandboxes: [prod]", "sandboxes: [prod, dev]")
        (tmp_path / "rules.yaml").write_text(rules.replace("poll_every: 1s", "poll_every: 2s"))
        assert bot.reload("test") is True
        jobs = {j.id: j for j in bot.scheduler.get_jobs()}
        assert sorted(jobs) == ["cycle:dev", "cycle:prod", "watch"]
        assert jobs["cycle:dev"].trigger.interval == timedelta(seconds=2)

        (tmp_path / "tpl" / "slack").mkdir(parents=True)
        (tmp_path / "tpl" / "slack" / "firing.j2").write_text("{{ flow.name }")
        (tmp_path / "rules.yaml").write_text(RULES + "templates: tpl\n")
        assert bot.reload("test") is False  # a template syntax error: rejected
        assert bot.ruleset.sandboxes == ("prod", "dev") and bot.ruleset.templates is None
        [notice] = bot.deps.store.pending("ops")
        assert "rejected" in notice.body["text"] and "firing.j2" in notice.body["text"]
        bot.watch()  # the same bad file on disk: not announced again
        assert len(bot.deps.store.pending("ops")) == 1
    finally:
        bot.deps.store.close()


def test_a_reload_logs_a_sub_second_poll_as_it_is_not_as_0s(tmp_path, sim, logged):
    # poll_every takes ms (the daemon-memory bench polls every 100ms); int() said "every 0s"
    logged.set_level(logging.INFO, logger="flowbot.daemon")
    bot = in_process(tmp_path, sim, RULES, Clock(NOW))
    try:
        (tmp_path / "rules.yaml").write_text(RULES.replace("poll_every: 1s", "poll_every: 250ms"))
        assert bot.reload("test") is True
        assert "sandboxes prod, every 0.25s" in logged.text
        assert bot.scheduler.get_job("cycle:prod").trigger.interval == timedelta(seconds=0.25)
    finally:
        bot.deps.store.close()


# ------------------------------------------------------------------ one check, reload storms

OWN_FOLDER_RULE = RULES + "    template: own\n"


def test_reload_refuses_a_broken_rule_folder_and_an_edit_there_is_watched(tmp_path, sim):
    (tmp_path / "own" / "slack").mkdir(parents=True)
    good = tmp_path / "own" / "slack" / "firing.md.j2"
    good.write_text("# {{ flow.name }}\n")
    bot = in_process(tmp_path, sim, OWN_FOLDER_RULE, Clock(NOW))
    try:
        assert bot.ruleset.rules[0].template == tmp_path / "own"
        good.write_text("{{ flow.name }\n")  # the watcher sees the rule's folder
        bot.watch()
        [notice] = bot.deps.store.pending("ops")
        assert "own/slack/firing.md.j2:1" in notice.body["text"]
        good.write_text("# {{ flow.name }} again\n")
        before = bot.deps
        bot.watch()
        assert bot.deps is not before  # reloaded with the fixed template
    finally:
        bot.deps.store.close()


def test_a_reload_storm_announces_each_distinct_rejected_file_once(tmp_path, sim, logged):
    bot = in_process(tmp_path, sim, RULES, Clock(NOW))
    try:
        (tmp_path / "rules.yaml").unlink()
        with logged.at_level("ERROR", logger="flowbot"):
            for _ in range(200):
                assert bot.reload("SIGHUP") is False
        assert len(bot.deps.store.pending("ops")) == 1
        rejected = {id(r) for r in logged.records if "reload rejected" in r.getMessage()}
        assert len(rejected) == 1  # (a record may reach caplog twice: through two loggers)
        (tmp_path / "rules.yaml").write_text(RULES + "    treshold: 5\n")
        for _ in range(200):
            bot.reload("SIGHUP")
        assert len(bot.deps.store.pending("ops")) == 2  # new content: announced once more
        (tmp_path / "rules.yaml").write_text(RULES)
        assert bot.reload("SIGHUP") is True
        (tmp_path / "rules.yaml").unlink()
        bot.reload("SIGHUP")  # bad again after a good file: announced again
        assert len(bot.deps.store.pending("ops")) == 3
    finally:
        bot.deps.store.close()


def test_200_sighups_with_the_rules_file_deleted_send_one_notice(tmp_path, sim):
    with Running(tmp_path, sim, RULES) as bot:
        bot.wait_cycles(1)
        bot.rules.unlink()
        for _ in range(200):
            bot.signal(signal.SIGHUP)
        wait_until(lambda: bot.events("ops.jsonl"), what="the rejection notice")
        bot.wait_cycles(1)  # any further notice would have been sent by now
        for _ in range(50):
            bot.signal(signal.SIGHUP)
        bot.wait_cycles(2)
        notices = [e["text"] for e in bot.events("ops.jsonl")]
        assert len(notices) == 1 and "rejected" in notices[0]
        assert bot.log().count("rules reload rejected") == 1
        assert bot.stop() == 0


# ------------------------------------------------------------------ isolation and state


def test_a_crash_is_one_line_and_the_meta_alert_leaves_in_the_same_cycles(tmp_path, sim, logged):
    clock = Clock(NOW)

    def broken(sandbox):
        raise RecursionError("maximum recursion depth exceeded")

    bot = in_process(tmp_path, sim, RULES, clock, client_for=broken)
    try:
        with logged.at_level("INFO", logger="flowbot.daemon"):
            assert bot.cycle("prod") is None
            clock.at = NOW + timedelta(seconds=3)  # past monitoring.after (2s)
            assert bot.cycle("prod") is None
        crashes = {
            id(r): r for r in logged.records if "FAILED in the cycle stage" in r.getMessage()
        }
        assert len(crashes) == 2 and all(r.exc_info is None for r in crashes.values())
        line = next(iter(crashes.values())).getMessage()
        assert "RecursionError: maximum recursion depth exceeded (at test_daemon.py:" in line
        assert "\n" not in line
        # The outbox was drained although the cycle stage failed: the meta-alert is out.
        [meta] = bot.deps.store.messages(limit=10)
        assert meta.channel == "ops" and meta.state == "sent"
        ops = (tmp_path / "ops.jsonl").read_text()
        assert "monitoring degraded for sandbox prod" in ops
        assert bot.metrics.value("flowbot_cycles_total", sandbox="prod", result="error") == 2
    finally:
        bot.deps.store.close()


def test_a_full_database_is_one_line_loses_nothing_and_recovers(tmp_path, sim, logged):
    bot = in_process(tmp_path, sim, RULES, Clock(NOW))
    store = bot.deps.store
    try:
        assert bot.cycle("prod").ok
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk is full"
        for i in range(30):
            sim.put_run(failed("crm-daily", 5 + i % 5))
        with logged.at_level("WARNING", logger="flowbot"):
            report = bot.cycle("prod")
        assert report is not None and not report.ok
        [line] = {r.getMessage() for r in logged.records if "failed" in r.getMessage()}
        assert "is full" in line and "tried again when there is room" in line
        assert "Traceback" not in logged.text
        assert fired_in(store) == []
        store.db.execute("PRAGMA max_page_count = 1073741823")  # room again
        report = bot.cycle("prod")
        assert report is not None and report.ok
        assert fired_in(store) == [("run-failed", "crm-daily")]  # read again, nothing lost
    finally:
        store.close()


def test_a_read_only_database_is_one_clear_line_and_recovers(tmp_path, sim, logged):
    bot = in_process(tmp_path, sim, RULES, Clock(NOW))
    store = bot.deps.store
    try:
        store.db.execute("PRAGMA query_only = 1")  # what a read-only folder gives, also as root
        sim.put_run(failed("crm-daily", 5))
        with logged.at_level("WARNING", logger="flowbot"):
            report = bot.cycle("prod")
        assert report is not None and not report.ok
        [line] = {r.getMessage() for r in logged.records if "failed" in r.getMessage()}
        assert "cannot be written" in line and "Traceback" not in logged.text
        store.db.execute("PRAGMA query_only = 0")
        assert bot.cycle("prod").ok
        assert fired_in(store) == [("run-failed", "crm-daily")]
    finally:
        store.close()


def fired_in(store):
    return [(a.rule, a.flow_name) for a in store.alerts()]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_is_noticed_within_one_cycle(tmp_path, sim, logged, how):
    import os

    bot = in_process(tmp_path, sim, RULES, Clock(NOW))
    try:
        assert bot.cycle("prod").ok and bot.ready()[0]
        db = tmp_path / "flowbot.db"
        if how == "replaced":  # e.g. a backup restored over it
            other = Store(tmp_path / "backup.db")
            other.migrate()
            other.close()
            os.replace(tmp_path / "backup.db", db)
        else:
            os.unlink(db)
        with logged.at_level("ERROR", logger="flowbot.daemon"):
            assert bot.cycle("prod") is None
            assert bot.cycle("prod") is None
        lines = {r.getMessage() for r in logged.records if str(db) in r.getMessage()}
        assert len(lines) == 1 and f"was {how}" in lines.pop()
        ready, body = bot.ready()
        assert not ready and f"was {how}" in body["database"]
        [meta] = [json.loads(x) for x in (tmp_path / "ops.jsonl").read_text().splitlines()]
        assert f"was {how}" in meta["text"]
        assert not db.exists() or how == "replaced"  # never recreated behind the user's back
        assert bot.metrics.value("flowbot_cycles_total", sandbox="prod", result="error") == 2
    finally:
        bot.deps.store.close()


def test_a_deleted_database_turns_readyz_not_ready_in_a_running_daemon(tmp_path, sim):
    import os

    with Running(tmp_path, sim, RULES, http=True) as bot:
        bot.wait_cycles(1)
        wait_until(lambda: bot.get("/readyz")[0] == 200, what="ready")
        os.unlink(bot.db)
        wait_until(lambda: bot.get("/readyz")[0] == 503, what="not ready")
        assert "was deleted" in json.loads(bot.get("/readyz")[2])["database"]
        assert bot.get("/healthz")[0] == 200
        assert bot.log().count("was deleted while flowbot run was using it") == 1
        assert bot.stop() == 0
    assert not bot.db.exists()


def test_sigterm_during_an_endless_fetch_exits_0_within_the_stop_timeout(tmp_path, sim):
    with Running(tmp_path, sim, RULES, args=("--stop-timeout", "1")) as bot:
        bot.wait_cycles(1)
        asked = len(sim.requests)
        sim.slow_next(50, 30.0)  # every API request now hangs for 30 s
        wait_until(lambda: len(sim.requests) > asked, timeout=5, what="a hung fetch")
        started = time.monotonic()
        assert bot.stop(timeout=10) == 0
        assert time.monotonic() - started < 5
    assert "stopped without waiting for the cycle of prod in flight" in bot.log()
