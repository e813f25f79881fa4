"""Acting from Slack over Socket Mode, end to end on loopback: the simulator as Adobe,
the Slack look-alike's Web API (tests/servers.py) and its Socket Mode WebSocket
(tests/socket_mode_server.py), a real SQLite file, and flowbot's cycle between presses."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Clock, Ticks
from daemon_harness import wait_until
from servers import slack_server
from socket_mode_server import socket_mode_server

from flowbot import slack_actions as sa
from flowbot.notifiers import build_notifiers
from flowbot.pipeline import build_deps, run_once
from flowbot.rules import load_rules
from flowbot.settings import Secret, Settings
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator
from flowbot.slack_socket import (
    ACTION_BUSY_TIMEOUT,
    Handler,
    SocketMode,
    action_store,
    web_client,
)
from flowbot.store import Store
from flowbot.store import actions as log_of

NOW = datetime.now(UTC).replace(microsecond=0)
ALLOWED, MEMBER, OTHER = "UALLOWED1", "UMEMBER01", "UOTHER001"

RULES = """
sandboxes: [prod]
poll_every: 1m
lookback: 24h
channels:
  ops: {slack: "#data-ops"}
defaults:
  channels: [ops]
  repeat_after: 1h
slack_actions:
  allow: [UALLOWED1, SGROUP001]
  retry: [UALLOWED1]
rules:
  - name: run-failed
    type: status
    status: [failed]
    actions: [retry]
"""


def error(code: str) -> list[dict[str, Any]]:
    return [{"code": code, "message": f"failure {code}"}]


class Rig:
    """Adobe, Slack (Web API and socket), the store, the cycle and flowbot's Socket Mode."""

    def __init__(self, tmp_path: Any, sim: Simulator, slack: Any, sock: Any) -> None:
        (tmp_path / "rules.yaml").write_text(RULES)
        self.sim, self.slack, self.sock = sim, slack, sock
        self.clock = Clock(NOW)
        self.settings = sim.settings(
                        db=str(tmp_path / "flowbot.db"), slack_bot_token=Secret("xoxb-test"),
            slack_api_url=slack.url, slack_app_token=Secret("xapp-1-test"),
        )  # fmt: skip
        self.ruleset = load_rules(tmp_path / "rules.yaml")
        self.store = Store(self.settings.db)
        self.store.migrate()
        self.deps = build_deps(self.settings, self.ruleset, clock=self.clock, store=self.store)
        ticks = Ticks()
        self.deps.notifiers = build_notifiers(
            self.ruleset.channels, self.settings, clock=ticks, sleep=ticks.sleep, now=self.clock
        )
        self.counted: list[tuple[str, str]] = []
        self.socket_store = action_store(self.settings.db)
        web = web_client("xoxb-test", slack.url)
        self.handler = Handler(
            self.socket_store, web, lambda: self.ruleset, self.deps.client_for, self.clock,
            lambda action, outcome: self.counted.append((action, outcome)),
        )  # fmt: skip
        slack.socket_url = sock.url
        self.mode = SocketMode("xapp-1-test", web, self.handler, ping_interval=0.5).start()
        sock.wait_connected()

    def close(self) -> None:
        self.mode.stop()
        self.socket_store.close()
        self.store.close()

    def cycle(self) -> None:
        run_once(self.deps)

    def firing_post(self) -> Any:
        posts = self.slack.calls_to("chat.postMessage")
        return [c for c in posts if sa.ACTIONS_BLOCK in str(c.body.get("blocks"))][-1]

    def press(self, action: str, user: str = ALLOWED, envelope: str | None = None) -> str:
        post = self.firing_post()
        [buttons] = [b for b in post.body["blocks"] if b.get("block_id") == sa.ACTIONS_BLOCK]
        value = buttons["elements"][0]["value"]
        channel = self.slack._channel_id(post.body["channel"])
        ts = self.sent_ts(post)
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": "someone"},
            "container": {"type": "message", "message_ts": ts, "channel_id": channel},
            "channel": {"id": channel},
            "message": {"ts": ts, "text": "x"},
            "actions": [{"action_id": sa.PREFIX + action, "value": value, "type": "button"}],
        }
        eid = self.sock.send("interactive", payload, envelope_id=envelope)
        self.sock.wait_ack(eid)
        return eid

    def sent_ts(self, post: Any) -> str:
        index = self.slack.calls.index(post)
        posts = [c for c in self.slack.calls[: index + 1] if c.method == "chat.postMessage"]
        return f"1700000000.{len(posts) + self._updates_before(index):06d}"

    def _updates_before(self, index: int) -> int:
        return len([c for c in self.slack.calls[:index] if c.method == "chat.update"])

    def wait_action(self, count: int = 1) -> list[log_of.ActionRow]:
        return wait_until(lambda: len(self.settled()) >= count and self.settled())

    def settled(self) -> list[log_of.ActionRow]:
        return [a for a in log_of.actions(self.store) if a.outcome != "pending"]


def scenario(flow_state: str = "enabled") -> tuple[Scenario, str]:
    world = Scenario(now=NOW)
    flow = make_flow(name="crm-orders", state=flow_state, frequency="hour")
    world.put_flow(flow)
    run = make_run(flow["id"], status="failed", started_at=NOW - timedelta(minutes=30),
                   completed_at=NOW - timedelta(minutes=20), errors=error("CONNECTOR-1001-500"))  # fmt: skip
    world.put_run(run)
    return world, run["id"]


@pytest.fixture
def rig(tmp_path: Any):
    world, _ = scenario()
    with Simulator(world) as sim, slack_server() as slack, socket_mode_server() as sock:
        r = Rig(tmp_path, sim, slack, sock)
        r.failed_run = next(iter(world.runs))
        try:
            r.cycle()
            yield r
        finally:
            r.close()


def test_firing_message_has_buttons_built_by_flowbot(rig: Rig) -> None:
    [block] = [
        b for b in rig.firing_post().body["blocks"] if b.get("block_id") == "flowbot_actions"
    ]
    actions = [e["action_id"] for e in block["elements"]]
    assert actions == [
        "flowbot_ack", "flowbot_silence_1h", "flowbot_silence_4h", "flowbot_silence_1d",
        "flowbot_retry", "flowbot_open",
    ]  # fmt: skip
    [alert] = rig.store.firing_alerts()
    assert {e.get("value") for e in block["elements"][:-1]} == {str(alert.id)}
    assert "confirm" in block["elements"][4]
    assert block["elements"][5]["url"].startswith("https://experience.adobe.com/")


def test_no_buttons_without_app_token(rig: Rig) -> None:
    from flowbot.slack_hooks import offer_buttons

    message = rig.store.messages()[0]
    from flowbot.models import Message

    plain = Message("ops", "slack", "firing", {"blocks": [{"type": "divider"}]}, message.alert_id)
    assert offer_buttons([plain], rig.ruleset, rig.store, Settings()) == [plain]
    assert offer_buttons([plain], rig.ruleset, rig.store, rig.settings) != [plain]


def test_acknowledge_stops_repeats_until_a_different_error(rig: Rig) -> None:
    rig.sim.fail_next(50, 503)  # the Flow Service is down: acknowledging needs only the store
    eid = rig.press("ack")
    [done] = rig.wait_action()
    assert rig.sock.ack_seconds[eid] < 3.0
    assert (done.user, done.action, done.outcome) == (ALLOWED, "ack", "done")
    [update] = rig.slack.calls_to("chat.update")
    status = [b for b in update.body["blocks"] if b.get("block_id") == "flowbot_status"]
    assert f"Acknowledged by <@{ALLOWED}>" in status[0]["elements"][0]["text"]
    assert ("ack", "done") in rig.counted
    rig.sim.clear_requests()
    rig.sim._faults.fail.clear()
    flow_id = rig.store.firing_alerts()[0].flow_id
    posts = len(rig.slack.calls_to("chat.postMessage"))
    rig.clock.advance(hours=2)  # past repeat_after; the same error again
    rig.sim.put_run(make_run(flow_id, status="failed", started_at=rig.clock() - timedelta(minutes=5),
                             completed_at=rig.clock(), errors=error("CONNECTOR-1001-500")))  # fmt: skip
    rig.cycle()
    assert len(rig.slack.calls_to("chat.postMessage")) == posts
    rig.clock.advance(hours=2)  # a different error: the acknowledgement ends
    rig.sim.put_run(make_run(flow_id, status="failed", started_at=rig.clock() - timedelta(minutes=5),
                             completed_at=rig.clock(), errors=error("CONNECTOR-2002-400")))  # fmt: skip
    rig.cycle()
    assert len(rig.slack.calls_to("chat.postMessage")) == posts + 1


def in_function(name: str, file_end: str) -> bool:
    """Whether some thread is inside the function `name` of a file ending `file_end`."""
    for frame in sys._current_frames().values():
        at: Any = frame
        while at is not None:
            if at.f_code.co_name == name and at.f_code.co_filename.endswith(file_end):
                return True
            at = at.f_back
    return False


def test_an_action_pressed_while_a_cycle_holds_the_write_lock_lands_after_it(rig: Rig) -> None:
    blocked: list[bool] = []

    def during_the_fetch(stage: str) -> None:
        if stage != "fetched":
            return
        rig.press("ack")  # acknowledged to Slack at once; the work waits for the lock
        wait_until(lambda: in_function("claim", "store/actions.py"), what="the action waiting")
        blocked.append(rig.settled() == [])

    rig.deps.step = during_the_fetch
    rig.clock.advance(minutes=1)
    rig.cycle()  # holds the write lock from its fetch to its commit
    assert blocked == [True]
    [done] = rig.wait_action()
    assert (done.action, done.outcome) == ("ack", "done")
    assert log_of.acks(rig.store, [rig.store.firing_alerts()[0].id])


def test_the_actions_store_waits_long_for_the_write_lock(tmp_path: Any) -> None:
    store = action_store(str(tmp_path / "flowbot.db"))
    try:
        [(waits,)] = store.db.execute("PRAGMA busy_timeout").fetchall()
        assert waits == ACTION_BUSY_TIMEOUT * 1000 >= 120_000
    finally:
        store.close()


def test_silence_and_unsilence(rig: Rig, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from flowbot.cli import cli

    rig.press("silence_4h")
    rig.wait_action()
    [silence] = rig.store.silences(rig.clock())
    [alert] = rig.store.firing_alerts()
    assert (silence.rule, silence.flow) == ("run-failed", alert.flow_id)
    assert silence.expires == NOW + timedelta(hours=4)
    listed = CliRunner().invoke(cli, ["silence", "list", "--db", rig.settings.db])
    assert alert.flow_id in listed.output and ALLOWED in listed.output
    update = rig.slack.calls_to("chat.update")[-1]
    assert any(e["action_id"] == "flowbot_unsilence" for e in update.body["blocks"][-1]["elements"])
    rig.press("unsilence")
    rig.wait_action(2)
    assert rig.store.silences(rig.clock()) == []
    shown = CliRunner().invoke(cli, ["history", "--db", rig.settings.db])
    assert "silence_4h" in shown.output and "unsilence" in shown.output and ALLOWED in shown.output


def test_refused_user_gets_ephemeral_and_nothing_happens(rig: Rig) -> None:
    rig.press("silence_1d", user=OTHER)
    [refused] = rig.wait_action()
    assert (refused.user, refused.outcome) == (OTHER, "refused")
    [note] = rig.slack.calls_to("chat.postEphemeral")
    assert note.body["user"] == OTHER and "not allowed" in note.body["text"]
    assert rig.store.silences(rig.clock()) == [] and not rig.slack.calls_to("chat.update")
    assert ("silence_1d", "refused") in rig.counted


def test_usergroup_member_may_act_but_not_retry(rig: Rig) -> None:
    rig.slack.usergroups["SGROUP001"] = [MEMBER]
    rig.press("ack", user=MEMBER)
    rig.press("retry", user=MEMBER)
    outcomes = sorted((a.action, a.outcome) for a in rig.wait_action(2))
    assert outcomes == [("ack", "done"), ("retry", "refused")]


def test_replayed_envelope_is_acted_on_once(rig: Rig) -> None:
    eid = rig.press("silence_1h")
    rig.wait_action()
    rig.press("silence_1h", envelope=eid)  # Slack sends it again: acked again, no action
    wait_until(lambda: ("silence_1h", "replayed") in rig.counted)
    assert len(rig.store.silences(rig.clock())) == 1
    assert len(log_of.actions(rig.store)) == 1


def test_dropped_socket_reconnects(rig: Rig) -> None:
    rig.sock.drop()
    rig.sock.wait_connected(count=2)
    assert len(rig.slack.calls_to("apps.connections.open")) == 2
    rig.press("ack")
    assert rig.wait_action()[0].outcome == "done"


def test_buttons_of_a_resolved_incident_say_so(rig: Rig) -> None:
    [alert] = rig.store.firing_alerts()
    rig.clock.advance(minutes=10)
    rig.sim.put_run(make_run(alert.flow_id, status="success", started_at=rig.clock(),
                             completed_at=rig.clock()))  # fmt: skip
    rig.cycle()
    assert rig.store.firing_alerts() == []
    rig.press("ack")  # the button of the first message, pressed late
    [late] = rig.wait_action()
    assert late.outcome == "resolved"
    assert "resolved" in rig.slack.calls_to("chat.postEphemeral")[-1].body["text"]


def command(rig: Rig, text: str, user: str = ALLOWED) -> str:
    payload = {"command": "/flowbot", "text": text, "user_id": user, "channel_id": "C00000001"}
    eid = rig.sock.send("slash_commands", payload, accepts_response_payload=True)
    ack = rig.sock.wait_ack(eid)
    assert rig.sock.ack_seconds[eid] < 3.0
    return str(ack["payload"]["text"])


def test_slash_command(rig: Rig) -> None:
    assert "1 alert(s) firing" in command(rig, "status") and "run-failed" in command(rig, "status")
    assert "No silence" in command(rig, "silences")
    answer = command(rig, "silence run-failed crm-* 2h planned maintenance")
    assert answer.startswith("Silence #")
    [silence] = rig.store.silences(rig.clock())
    assert (silence.rule, silence.flow, silence.expires) == (
        "run-failed",
        "crm-*",
        NOW + timedelta(hours=2),
    )
    assert "planned maintenance" in command(rig, "silences")
    assert "not allowed" in command(rig, "silences", user=OTHER)
    assert "Usage" in command(rig, "silence nope")
    assert "No rule matches" in command(rig, "silence nope * 1h x")
    assert len(rig.store.silences(rig.clock())) == 1


@pytest.mark.parametrize("outcome", ["failed", "success"])
def test_retry_end_to_end(rig: Rig, outcome: str) -> None:
    rig.press("retry")
    [done] = rig.wait_action()
    assert done.outcome == "done", done.detail
    posted = [r for r in rig.sim.requests if r.method == "POST" and r.path.endswith("/action")]
    assert posted and posted[0].query["op"] == ["RE_TRIGGER"]
    new_id = done.detail.removeprefix("new run ")
    reply = rig.slack.calls_to("chat.postMessage")[-1]
    assert new_id in reply.body["text"] and reply.body["thread_ts"]
    [alert] = rig.store.firing_alerts()
    rig.clock.advance(minutes=10)
    errors = error("CONNECTOR-1001-500") if outcome == "failed" else None
    rig.sim.put_run(make_run(alert.flow_id, run_id=new_id, status=outcome, errors=errors,
                             started_at=rig.clock() - timedelta(minutes=5), completed_at=rig.clock()))  # fmt: skip
    rig.cycle()
    firing = rig.store.firing_alerts()
    assert (len(firing) == 1) == (outcome == "failed")


def test_refusal_from_adobe_is_said_in_the_thread(tmp_path: Any) -> None:
    world, run_id = scenario()
    with Simulator(world) as sim, slack_server() as slack, socket_mode_server() as sock:
        rig = Rig(tmp_path, sim, slack, sock)
        try:
            rig.cycle()
            flow = next(iter(world.flows.values()))
            sim.put_flow({**flow, "state": "disabled"})
            rig.press("retry")
            [failed] = rig.wait_action()
            assert failed.outcome == "failed" and "1388" in failed.detail
            reply = slack.calls_to("chat.postMessage")[-1]
            assert "refused" in reply.body["text"] and reply.body["thread_ts"]
        finally:
            rig.close()


def test_the_daemon_serves_buttons_and_counts_actions_in_metrics(tmp_path: Any) -> None:
    from daemon_harness import Running

    world, _ = scenario()
    with Simulator(world) as sim, slack_server() as slack, socket_mode_server() as sock:
        slack.socket_url = sock.url
        env = {"SLACK_APP_TOKEN": "xapp-1-test", "SLACK_BOT_TOKEN": "xoxb-test",
               "FLOWBOT_SLACK_API_URL": slack.url}  # fmt: skip
        with Running(tmp_path, sim, RULES.replace("1m", "1h"), http=True, env=env) as bot:
            sock.wait_connected(timeout=20)
            post = wait_until(lambda: [c for c in slack.calls_to("chat.postMessage")
                                       if sa.ACTIONS_BLOCK in str(c.body.get("blocks"))])[0]  # fmt: skip
            [block] = [b for b in post.body["blocks"] if b.get("block_id") == sa.ACTIONS_BLOCK]
            payload = {
                "type": "block_actions", "user": {"id": OTHER},
                "container": {"message_ts": "1700000000.000001", "channel_id": "C00000001"},
                "actions": [{"action_id": "flowbot_ack", "value": block["elements"][0]["value"]}],
            }  # fmt: skip
            sock.wait_ack(sock.send("interactive", payload))
            metric = 'flowbot_slack_actions_total{action="ack",outcome="refused"} 1'
            wait_until(lambda: metric in bot.get("/metrics")[2], what="the action counted")
            assert bot.stop() == 0
