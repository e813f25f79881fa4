"""Socket Mode: buttons and `/flowbot` reach the daemon over a WebSocket that it opens
itself (slack-sdk's built-in SocketModeClient, app-level token SLACK_APP_TOKEN): no
public URL, no inbound port.

Every envelope is acknowledged first (a slash command's answer rides on its
acknowledgement), well within Slack's 3 seconds; the work follows. An envelope Slack
replays is acknowledged again and acted on once (its id is recorded, store/actions.py).
Acknowledge and silence need only the store, so they work while the Flow Service is
down; Retry calls Adobe. The store is a connection of its own (`action_store`): a cycle
holds the database's write lock while it reads the Flow Service, and an action, already
acknowledged to Slack, waits for it (up to ACTION_BUSY_TIMEOUT) instead of failing. The decisions are flowbot.slack_actions'; this module reads, calls
Slack's Web API (chat.update, chat.postEphemeral, chat.postMessage,
usergroups.users.list) and Adobe, and records.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from flowbot import slack_actions as sa
from flowbot.errors import FlowAPIError, StoreError
from flowbot.store import Store
from flowbot.store import actions as log_of
from flowbot.times import utc_minute

log = logging.getLogger("flowbot.slack.actions")

GROUP_TTL = 300.0  # seconds a user group's members are remembered
WEB_TIMEOUT = 10  # seconds for one Web API call
RECONNECT_MAX = 60.0  # seconds between attempts to open the socket, at most
# seconds an acknowledged action's write waits for a cycle's write lock (the first cycle
# of a large sandbox holds it for about a minute)
ACTION_BUSY_TIMEOUT = 120.0

Count = Callable[[str, str], None]  # (action, outcome)


class Handler:
    """What a Socket Mode request does. `web` is a slack_sdk WebClient (bot token);
    `rules()` the rules in force; `client_for(sandbox)` a FlowClient."""

    def __init__(
        self,
        store: Store,
        web: Any,
        rules: Callable[[], Any],
        client_for: Callable[[str], Any],
        clock: Callable[[], datetime],
        count: Count = lambda action, outcome: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.web = web
        self.rules = rules
        self.client_for = client_for
        self.clock = clock
        self.count = count
        self.monotonic = monotonic
        self._lock = threading.Lock()  # one action at a time on the store connection
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    # -------------------------------------------------------------- envelopes

    def on_request(self, client: Any, req: Any) -> None:
        """A SocketModeClient listener: acknowledge, then act."""
        from slack_sdk.socket_mode.response import SocketModeResponse

        envelope = str(getattr(req, "envelope_id", ""))[:100]
        if req.type == "slash_commands":
            with self._lock:
                answer = self._command(envelope, req.payload)
            client.send_socket_mode_response(
                SocketModeResponse(envelope_id=envelope, payload=answer)
            )
            return
        client.send_socket_mode_response(SocketModeResponse(envelope_id=envelope))
        if req.type == "interactive":
            press = sa.parse_press(envelope, req.payload)
            if press is None:
                log.debug("an interactive payload that is not one of our buttons was ignored")
                return
            with self._lock:
                self._safely(lambda: self.press(press), press.action)

    def _safely(self, work: Callable[[], None], action: str) -> None:
        try:
            work()
        except StoreError as exc:
            log.error("slack action %s could not be recorded: %s", action, exc)
        except Exception as exc:  # a listener must never die on one press
            log.error("slack action %s failed: %s", action, type(exc).__name__)
            log.debug("slack action %s failed", action, exc_info=exc)

    # -------------------------------------------------------------- buttons

    def press(self, p: sa.Press) -> None:
        now = self.clock()
        action_id = log_of.claim(self.store, p.envelope, user=p.user, action=p.action, now=now)
        if action_id is None:
            log.info("slack envelope %s replayed: already acted on", p.envelope)
            self.count(p.action, "replayed")
            return

        def settle(outcome: str, detail: str = "", alert_id: int | None = None) -> None:
            log_of.settle(self.store, action_id, outcome=outcome, detail=detail, alert_id=alert_id)
            self.count(p.action, outcome)
            log.info("slack action %s by %s: %s %s", p.action, p.user, outcome, detail)

        found = [a for a in (log_of.alert(self.store, i) for i in p.alert_ids) if a is not None]
        if not found:
            settle("unknown", "no such alert (forgotten after retention?)")
            self._ephemeral(p, "flowbot no longer knows this alert; nothing was done.")
            return
        lead = found[0].id
        rules = self.rules()
        who = rules.slack_actions.retry if p.action == "retry" else rules.slack_actions.allow
        if not self.allowed(p.user, who):
            settle("refused", "not allowed", lead)
            self._ephemeral(p, f"You are not allowed to {sa.LABELS[p.action].lower()} here.")
            return
        firing = [a for a in found if a.state == "firing"]
        if not firing:
            resolved = max((a.resolved for a in found if a.resolved), default=None)
            at = f" at {utc_minute(resolved)}" if resolved else ""
            settle("resolved", "the incident had resolved", lead)
            self._ephemeral(p, f"This incident resolved{at}; nothing was done.")
            return
        if p.action == "ack":
            self._acknowledge(p, firing, now)
            settle("done", f"alerts {sa.value_of([a.id for a in firing])}", lead)
        elif p.action in sa.SILENCES:
            until = now + sa.SILENCES[p.action]
            for a in firing:
                self.store.add_silence(
                    rule=a.rule, flow=a.flow_id, now=now, expires=until,
                    reason=f"from Slack by {p.user} ({sa.LABELS[p.action]})",
                )  # fmt: skip
            status = f"Silenced until {utc_minute(until)} by <@{p.user}>"
            self._update(p, status, silenced=True)
            settle("done", f"until {utc_minute(until)}", lead)
        elif p.action == "unsilence":
            ended = 0
            for a in firing:
                for s in self.store.silences(now):
                    if s.rule == a.rule and s.flow == a.flow_id:
                        ended += self.store.expire_silence(s.id, now)
            self._update(p, f"Unsilenced by <@{p.user}> at {utc_minute(now)}", silenced=False)
            settle("done", f"{ended} silence(s) ended", lead)
        else:
            outcome, detail = self._retry(p, firing[0])
            settle(outcome, detail, lead)

    def _acknowledge(self, p: sa.Press, firing: Sequence[Any], now: datetime) -> None:
        from flowbot.aep.parse import parse_run

        for a in firing:
            raw = log_of.run_raw(self.store, a.last_run_id) if a.last_run_id else None
            try:
                run = parse_run(raw) if raw else None
            except (ValueError, TypeError, AttributeError, RecursionError):
                run = None
            log_of.acknowledge(self.store, a.id, user=p.user, now=now, signature=sa.signature(run))
        self._update(p, f"Acknowledged by <@{p.user}> at {utc_minute(now)}")

    def _retry(self, p: sa.Press, alert: Any) -> tuple[str, str]:
        from flowbot.aep.parse import parse_run

        rule = self.rules().rule(alert.rule)
        raw = log_of.run_raw(self.store, alert.last_run_id) if alert.last_run_id else None
        try:
            run = parse_run(raw) if raw else None
        except (ValueError, TypeError, AttributeError, RecursionError):
            run = None
        flow = log_of.flow(self.store, alert.flow_id)
        batch = flow is not None and flow.schedule is not None
        if rule is None or "retry" not in rule.actions or not sa.may_retry(run, batch):
            self._ephemeral(
                p, "Retry is offered for failed runs of batch sources, on rules with "
                "`actions: [retry]`; this alert's run is not one. Nothing was done.",
            )  # fmt: skip
            return "refused", "not retryable"
        assert run is not None
        try:
            new_id = str(self.client_for(alert.sandbox).retry_run(run.id))
        except FlowAPIError as exc:
            text = f"Adobe refused to retry run `{run.id}`: {sa.clean(str(exc))}"
            self._reply(p, text)
            return "failed", sa.clean(str(exc))[:300]
        self._reply(
            p, f"<@{p.user}> retried run `{run.id}`: the new run is `{sa.clean(new_id)}`; "
            "its outcome resolves or keeps this alert.",
        )  # fmt: skip
        return "done", f"new run {sa.clean(new_id)}"

    # -------------------------------------------------------------- who may act

    def allowed(self, user: str, ids: Sequence[str]) -> bool:
        groups = {g: self._members(g) for g in sa.group_ids(ids)}
        return sa.allowed(user, ids, groups)

    def _members(self, group: str) -> frozenset[str]:
        """The members of a user group as Slack says (remembered GROUP_TTL seconds);
        nobody when Slack cannot say."""
        now = self.monotonic()
        known = self._groups.get(group)
        if known and now - known[0] < GROUP_TTL:
            return known[1]
        members: frozenset[str] = frozenset()
        try:
            answer = self.web.usergroups_users_list(usergroup=group)
            users = answer.get("users")
            if isinstance(users, list):
                members = frozenset(u for u in users[:10_000] if isinstance(u, str))
        except Exception as exc:  # Slack's refusal or silence: nobody is let in
            log.warning("members of user group %s unknown: %s", group, type(exc).__name__)
        self._groups[group] = (now, members)
        return members

    # -------------------------------------------------------------- talking to Slack

    def _update(self, p: sa.Press, status: str, silenced: bool | None = None) -> None:
        """Rewrite the message with the button: its own blocks (as flowbot sent them),
        the status line and the buttons again."""
        row = log_of.message_at(self.store, {"channel": p.channel, "ts": p.ts})
        blocks = row.body.get("blocks") if row else None
        if row is None or not isinstance(blocks, list):
            self._ephemeral(p, status)
            return
        offer = _offer_in(blocks, p.alert_ids, silenced)
        self._web(
            "chat_update", channel=p.channel, ts=p.ts, text=str(row.body.get("text", ""))[:3000],
            blocks=sa.with_actions(blocks, offer, status),
        )  # fmt: skip

    def _ephemeral(self, p: sa.Press, text: str) -> None:
        self._web("chat_postEphemeral", channel=p.channel, user=p.user, text=text)

    def _reply(self, p: sa.Press, text: str) -> None:
        self._web("chat_postMessage", channel=p.channel, thread_ts=p.thread_ts, text=text)

    def _web(self, method: str, **kwargs: Any) -> None:
        try:
            getattr(self.web, method)(**kwargs)
        except Exception as exc:  # SlackApiError, connection errors: logged, not raised
            code = getattr(getattr(exc, "response", None), "get", lambda k: None)("error")
            log.warning("slack %s failed: %s", method, sa.clean(str(code or type(exc).__name__)))

    # -------------------------------------------------------------- /flowbot

    def _command(self, envelope: str, payload: Any) -> dict[str, Any]:
        """The ephemeral answer to a `/flowbot` command (sent with the acknowledgement)."""
        command = sa.parse_command(envelope, payload)
        if command is None:
            return {"response_type": "ephemeral", "text": sa.USAGE}
        try:
            text = self._run_command(command)
        except StoreError as exc:
            log.error("/flowbot %s: %s", command.verb, exc)
            text = "flowbot cannot read its database right now; try again later."
        return {"response_type": "ephemeral", "text": text}

    def _run_command(self, c: sa.Command) -> str:
        from flowbot.silences import rules_matching

        now = self.clock()
        action = f"command_{c.verb}"
        action_id = log_of.claim(self.store, c.envelope, user=c.user, action=action, now=now)
        if action_id is None:
            self.count(action, "replayed")
            return "Already done."

        def settle(outcome: str, detail: str = "") -> None:
            log_of.settle(self.store, action_id, outcome=outcome, detail=detail)
            self.count(action, outcome)

        rules = self.rules()
        if not self.allowed(c.user, rules.slack_actions.allow):
            settle("refused", "not allowed")
            return "You are not allowed to use /flowbot here."
        if c.verb == "help" or c.error:
            settle("usage", c.error)
            return (c.error + "\n" if c.error else "") + sa.USAGE
        if c.verb == "status":
            settle("done")
            return sa.status_text(self.store.firing_alerts(), now)
        if c.verb == "silences":
            settle("done")
            return sa.silences_text(self.store.silences(now))
        rule = None if c.rule == "*" else c.rule
        flow = None if c.flow == "*" else c.flow
        if rule is None and flow is None:
            settle("usage", "RULE and FLOW both *")
            return "A silence needs a RULE or a FLOW (not both `*`)."
        if rule is not None and not rules_matching(rule, [r.name for r in rules.rules]):
            settle("usage", "no such rule")
            return f"No rule matches {rule!r}: see `/flowbot status` for rule names."
        assert c.duration is not None
        until = now + c.duration
        reason = f"{c.reason} (from Slack by {c.user})"
        sid = self.store.add_silence(rule=rule, flow=flow, reason=reason, now=now, expires=until)
        settle("done", f"silence #{sid}")
        return f"Silence #{sid} until {utc_minute(until)}."


def _offer_in(
    blocks: Sequence[Mapping[str, Any]], ids: Sequence[int], silenced: bool | None
) -> sa.Offer:
    """The buttons a message showed, again (with Unsilence when `silenced`)."""
    retry, url, was_silenced = False, None, False
    for block in blocks:
        if block.get("block_id") != sa.ACTIONS_BLOCK:
            continue
        for element in block.get("elements") or ():
            action = str(element.get("action_id", ""))
            retry = retry or action == sa.PREFIX + "retry"
            was_silenced = was_silenced or action == sa.PREFIX + "unsilence"
            if action == sa.PREFIX + "open":
                url = str(element.get("url", "")) or None
    shown = was_silenced if silenced is None else silenced
    return sa.Offer(tuple(ids), retry=retry, aep_url=url, silenced=shown)


# ------------------------------------------------------------------ the connection


class SocketMode:
    """The Socket Mode connection of the daemon: opened in the background (again and
    again, with a growing pause, until Slack accepts), reconnected by slack-sdk after a
    drop, closed by `stop()`."""

    def __init__(self, app_token: str, web: Any, handler: Handler, ping_interval: float = 5):
        from slack_sdk.socket_mode.builtin.client import SocketModeClient

        self.client = SocketModeClient(
            app_token=app_token, web_client=web, ping_interval=ping_interval, concurrency=4,
            logger=logging.getLogger("flowbot.slack.socket"),
        )  # fmt: skip
        self.client.socket_mode_request_listeners.append(handler.on_request)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SocketMode:
        self._thread = threading.Thread(target=self._connect, name="flowbot-socket", daemon=True)
        self._thread.start()
        return self

    def _connect(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            try:
                self.client.connect()
                log.info("slack socket mode connected")
                return
            except Exception as exc:  # Slack down or the token refused: try again later
                reason = getattr(getattr(exc, "response", None), "get", lambda k: None)("error")
                log.warning(
                    "slack socket mode: could not connect (%s); again in %.0fs",
                    sa.clean(str(reason or type(exc).__name__)), pause,
                )  # fmt: skip
            self._stop.wait(pause)
            pause = min(pause * 2, RECONNECT_MAX)

    def is_connected(self) -> bool:
        return bool(self.client.is_connected())

    def stop(self) -> None:
        """Close the socket and stop slack-sdk's threads. The socket is shut first: its
        reader otherwise holds the connection until its 3-second receive times out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.client.auto_reconnect_enabled = False
        sock = getattr(self.client.current_session, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.client.close()


def web_client(token: str, base_url: str) -> Any:
    """slack-sdk's WebClient on `base_url` (the Slack API, or a look-alike in tests)."""
    from slack_sdk import WebClient

    return WebClient(token=token, base_url=base_url.rstrip("/") + "/", timeout=WEB_TIMEOUT)


def action_store(path: str) -> Store:
    """The Slack actions' own store connection, whose writes wait up to
    ACTION_BUSY_TIMEOUT for a cycle's write lock."""
    return Store(path, busy_timeout=ACTION_BUSY_TIMEOUT)


def start(settings: Any, rules: Callable[[], Any], client_for: Callable[[str], Any],
          clock: Callable[[], datetime], count: Count) -> tuple[SocketMode, Store] | None:  # fmt: skip
    """Socket Mode for the daemon when SLACK_APP_TOKEN is set (None otherwise): its own
    store connection, the handler and the connection, started."""
    app_token = settings.slack_app_token.get()
    if not app_token:
        return None
    store = action_store(settings.db)
    web = web_client(settings.slack_bot_token.get(), settings.slack_api_url)
    handler = Handler(store, web, rules, client_for, clock, count)
    return SocketMode(app_token, web, handler).start(), store
