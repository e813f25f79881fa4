"""Acting from Slack, pure: the buttons flowbot puts on a firing message, what a button
press or a `/flowbot` command asks for, who may do it, and what acknowledgement means
for the next repeats. Nothing here talks to Slack, Adobe or the store; the Socket Mode
wiring (slack_socket.py) reads, calls these, and carries out what they decide.

Buttons are built here only, never from text of an API: every `value` is a list of
alert ids flowbot generated ("12" or "12,13"), every `action_id` one of ACTIONS.
An answer from Slack is hostile until parsed: `parse_press` and `parse_command` keep
only ids of the expected shape and drop the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from flowbot.models import Message, Run
from flowbot.times import utc_minute

SILENCES = {"silence_1h": timedelta(hours=1), "silence_4h": timedelta(hours=4),
            "silence_1d": timedelta(days=1)}  # fmt: skip
ACTIONS = ("ack", *SILENCES, "unsilence", "retry")
PREFIX = "flowbot_"  # every action_id of ours starts so
ACTIONS_BLOCK = "flowbot_actions"
STATUS_BLOCK = "flowbot_status"
MAX_IDS = 50  # alert ids in one button value
LABELS = {"ack": "Acknowledge", "silence_1h": "Silence 1h", "silence_4h": "Silence 4h",
          "silence_1d": "Silence 1d", "unsilence": "Unsilence", "retry": "Retry run"}  # fmt: skip

_USER = re.compile(r"[UW][A-Z0-9]{2,20}")
_GROUP = re.compile(r"S[A-Z0-9]{2,20}")
_CHANNEL = re.compile(r"[CDG][A-Z0-9]{2,20}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,8}")
_IDS = re.compile(rf"[0-9]{{1,12}}(,[0-9]{{1,12}}){{0,{MAX_IDS - 1}}}")
_ENVELOPE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


# ------------------------------------------------------------------ buttons


@dataclass(frozen=True, slots=True)
class Offer:
    """What the buttons of one message may offer."""

    alert_ids: tuple[int, ...]
    retry: bool = False  # the lead rule has `actions: [retry]` and its run may be retried
    aep_url: str | None = None  # "Open in AEP"
    silenced: bool = False  # show Unsilence


def value_of(alert_ids: Sequence[int]) -> str:
    return ",".join(str(int(i)) for i in alert_ids[:MAX_IDS])


def actions_block(offer: Offer) -> dict[str, Any]:
    """The Block Kit `actions` block of a firing message."""
    value = value_of(offer.alert_ids)

    def button(action: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "button",
            "action_id": PREFIX + action,
            "text": {"type": "plain_text", "text": LABELS[action]},
            "value": value,
            **extra,
        }

    elements = [button("ack", style="primary")]
    elements += [button(name) for name in SILENCES]
    if offer.silenced:
        elements.append(button("unsilence"))
    if offer.retry:
        elements.append(
            button(
                "retry",
                style="danger",
                confirm={
                    "title": {"type": "plain_text", "text": "Retry the failed run?"},
                    "text": {
                        "type": "mrkdwn",
                        "text": "Adobe starts a new run of this dataflow (RE_TRIGGER). "
                        "Its outcome resolves or keeps this alert.",
                    },
                    "confirm": {"type": "plain_text", "text": "Retry"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                },
            )
        )
    if offer.aep_url and offer.aep_url.startswith("https://"):
        elements.append(
            {
                "type": "button",
                "action_id": PREFIX + "open",
                "text": {"type": "plain_text", "text": "Open in AEP"},
                "url": offer.aep_url[:3000],
            }
        )
    return {"type": "actions", "block_id": ACTIONS_BLOCK, "elements": elements}


def with_actions(
    blocks: Sequence[Mapping[str, Any]], offer: Offer | None, status: str | None = None
) -> list[dict[str, Any]]:
    """`blocks` (flowbot's own) without any earlier buttons or status line, then the
    status line (a context: who acknowledged, silenced...) and the buttons."""
    kept = [dict(b) for b in blocks if b.get("block_id") not in (ACTIONS_BLOCK, STATUS_BLOCK)]
    limit = 50 - (1 if status else 0) - (1 if offer else 0)
    kept = kept[:limit]
    if status:
        kept.append(
            {"type": "context", "block_id": STATUS_BLOCK,
             "elements": [{"type": "mrkdwn", "text": status[:3000]}]}
        )  # fmt: skip
    if offer:
        kept.append(actions_block(offer))
    return kept


def add_buttons(message: Message, offer: Offer) -> Message:
    """A Slack message with the buttons appended (other kinds unchanged)."""
    if message.kind != "slack" or not message.body.get("blocks"):
        return message
    body = dict(message.body)
    body["blocks"] = with_actions(body["blocks"], offer)
    return replace(message, body=body)


def may_retry(run: Run | None, batch_source: bool) -> bool:
    """Adobe retries failed runs of batch sources only."""
    return run is not None and batch_source and run.state == "failed"


# ------------------------------------------------------------------ acknowledgement


def signature(run: Run | None) -> str:
    """What "the same error" means for an acknowledgement: the run's leading error code
    (empty when it has none)."""
    errors = run.all_errors if run else ()
    return errors[0].code if errors else ""


def quiet_acknowledged(
    changes: Sequence[Any], acks: Mapping[int, Any]
) -> tuple[list[Any], set[int]]:
    """An acknowledged alert repeats no more while its error stays the one acknowledged:
    those repeats lose their notice. Returns the changes and the alert ids whose error
    changed (their acknowledgement ends: the repeat goes out)."""
    out, ended = [], set()
    for change in changes:
        ack = acks.get(change.alert_id) if change.alert_id is not None else None
        notice = change.notice
        if ack is None or notice is None or notice.event != "repeat":
            out.append(change)
            continue
        current = signature(notice.finding.run if notice.finding else None)
        if current == ack.signature:
            fields = {k: v for k, v in change.fields.items() if k != "last_notified"}
            out.append(replace(change, notice=None, fields=fields))
        else:
            ended.add(change.alert_id)
            out.append(change)
    return out, ended


# ------------------------------------------------------------------ who may act


def allowed(user: str, ids: Iterable[str], groups: Mapping[str, frozenset[str]]) -> bool:
    """True when `user` is one of `ids` or a member of a user group among them
    (`groups`: group id → its members, as Slack said)."""
    for entry in ids:
        if entry == user or user in groups.get(entry, frozenset()):
            return True
    return False


def group_ids(ids: Iterable[str]) -> list[str]:
    return [i for i in ids if _GROUP.fullmatch(i)]


# ------------------------------------------------------------------ what Slack sent


@dataclass(frozen=True, slots=True)
class Press:
    """A button press, as far as flowbot trusts it."""

    envelope: str
    user: str
    action: str  # one of ACTIONS
    alert_ids: tuple[int, ...]
    channel: str
    ts: str  # the message with the button
    thread_ts: str  # the thread to reply in (the message itself when not in a thread)


def _str(data: Any, *path: str) -> str:
    for key in path:
        if not isinstance(data, Mapping):
            return ""
        data = data.get(key)
    return data if isinstance(data, str) else ""


def parse_press(envelope: str, payload: Any) -> Press | None:
    """A `block_actions` payload → Press, or None when it is not one of our buttons or
    any part does not have the shape Slack gives it."""
    if not isinstance(payload, Mapping) or payload.get("type") != "block_actions":
        return None
    acts = payload.get("actions")
    if not isinstance(acts, list) or len(acts) != 1 or not isinstance(acts[0], Mapping):
        return None
    action = _str(acts[0], "action_id").removeprefix(PREFIX)
    value = _str(acts[0], "value")
    user = _str(payload, "user", "id")
    channel = _str(payload, "container", "channel_id") or _str(payload, "channel", "id")
    ts = _str(payload, "container", "message_ts") or _str(payload, "message", "ts")
    thread = _str(payload, "container", "thread_ts") or _str(payload, "message", "thread_ts")
    if not (
        action in ACTIONS
        and _IDS.fullmatch(value)
        and _USER.fullmatch(user)
        and _CHANNEL.fullmatch(channel)
        and _TS.fullmatch(ts)
        and _ENVELOPE.fullmatch(envelope)
    ):
        return None
    thread = thread if _TS.fullmatch(thread) else ts
    ids = tuple(dict.fromkeys(int(v) for v in value.split(",")))
    return Press(envelope, user, action, ids, channel, ts, thread)


@dataclass(frozen=True, slots=True)
class Command:
    """A `/flowbot` command: what it asks and its arguments, or `error` to say."""

    envelope: str
    user: str
    channel: str
    verb: Literal["status", "silences", "silence", "help"]
    rule: str = ""
    flow: str = ""
    duration: timedelta | None = None
    reason: str = ""
    error: str = ""


USAGE = (
    "Usage: `/flowbot status` (firing alerts) · `/flowbot silences` · "
    "`/flowbot silence RULE FLOW DURATION REASON` (e.g. `silence run-failed orders-daily 4h "
    "maintenance`; `*` for any rule or flow, DURATION at most 7d)"
)
MAX_SILENCE = timedelta(days=7)
_WORD = re.compile(r"[A-Za-z0-9_.*?\[\]:/@-]{1,200}")


def parse_command(envelope: str, payload: Any) -> Command | None:
    """A slash command payload → Command; None when it is not ours or not well formed."""
    from flowbot.rules_values import parse_duration

    if not isinstance(payload, Mapping) or _str(payload, "command") != "/flowbot":
        return None
    user, channel = _str(payload, "user_id"), _str(payload, "channel_id")
    if not (_USER.fullmatch(user) and _ENVELOPE.fullmatch(envelope)):
        return None
    channel = channel if _CHANNEL.fullmatch(channel) else ""
    words = _str(payload, "text")[:1000].split()
    verb = words[0].lower() if words else "help"
    base = Command(envelope, user, channel, "help")
    if verb in ("status", "silences") and len(words) == 1:
        return replace(base, verb=verb)  # type: ignore[arg-type]
    if verb != "silence":
        return base
    if len(words) < 5:
        return replace(base, error="silence needs RULE FLOW DURATION REASON")
    rule, flow, span = words[1], words[2], words[3]
    if not (_WORD.fullmatch(rule) and _WORD.fullmatch(flow)):
        return replace(base, error="RULE and FLOW are names, ids or globs")
    try:
        duration = parse_duration(span)
    except (ValueError, TypeError):
        return replace(base, error=f"not a duration: {span[:20]!r} (e.g. 30m, 4h, 1d)")
    if not timedelta(0) < duration <= MAX_SILENCE:
        return replace(base, error="DURATION must be more than 0 and at most 7d")
    reason = " ".join(words[4:])[:300]
    return replace(base, verb="silence", rule=rule, flow=flow, duration=duration, reason=reason)


def clean(text: str, limit: int = 300) -> str:
    """Text from outside (Adobe's refusal, an id) made safe for a Slack message: printable,
    Slack's control characters escaped, at most `limit` characters."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text[: limit * 2])
    escaped = printable.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped[:limit]


MAX_LINES = 30  # lines of a /flowbot answer


def status_text(firing: Sequence[Any], now: datetime) -> str:
    """`/flowbot status`: the firing alerts, newest first."""
    if not firing:
        return "No alert is firing."
    rows = sorted(firing, key=lambda a: a.first_seen, reverse=True)
    lines = [f"{len(rows)} alert(s) firing:"]
    for a in rows[:MAX_LINES]:
        muted = " (muted)" if a.muted else ""
        lines.append(
            f"• #{a.id} *{clean(a.rule, 80)}* · {clean(a.flow_name or a.flow_id, 120)} "
            f"({clean(a.sandbox, 40)}){muted} · since {utc_minute(a.first_seen)} · {a.count}×"
        )
    if len(rows) > MAX_LINES:
        lines.append(f"… and {len(rows) - MAX_LINES} more (`flowbot history` on the host)")
    return "\n".join(lines)


def silences_text(silences: Sequence[Any]) -> str:
    """`/flowbot silences`: the active silences."""
    if not silences:
        return "No silence is active."
    lines = [f"{len(silences)} silence(s) active:"]
    for s in silences[:MAX_LINES]:
        lines.append(
            f"• #{s.id} rule {clean(s.rule or '*', 80)} · flow {clean(s.flow or '*', 120)} · "
            f"until {utc_minute(s.expires)} · {clean(s.reason, 200)}"
        )
    if len(silences) > MAX_LINES:
        lines.append(f"… and {len(silences) - MAX_LINES} more (`flowbot silence list`)")
    return "\n".join(lines)
