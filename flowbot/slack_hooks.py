"""Where Slack actions meet the cycle (called by pipeline._decide, inside its
transaction): buttons on the Slack messages about to be queued, and acknowledged alerts
kept quiet.

Both are no-ops without SLACK_APP_TOKEN: no buttons (nobody could press them), and no
acknowledgement can have been made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowbot import slack_actions as sa
from flowbot.models import Message
from flowbot.store import Store
from flowbot.store import actions as log_of

BUTTON_EVENTS = frozenset({"firing", "repeat"})


def offer_buttons(
    messages: Sequence[Message], ruleset: Any, store: Store, settings: Any
) -> list[Message]:
    """The messages, each Slack message of one incident (firing or repeat) with its
    buttons: Acknowledge, Silence, Unsilence when a silence covers it, Retry when its
    lead rule asks for it and its run may be retried, Open in AEP."""
    if not settings.slack_app_token.get():
        return list(messages)
    return [_with_buttons(m, ruleset, store) for m in messages]


def _with_buttons(message: Message, ruleset: Any, store: Store) -> Message:
    from flowbot.aep.parse import parse_run
    from flowbot.context import aep_url

    if message.kind != "slack" or message.event not in BUTTON_EVENTS or message.alert_id is None:
        return message
    ids = message.group or (message.alert_id,)
    lead = log_of.alert(store, message.alert_id)
    if lead is None:
        return message
    flow = log_of.flow(store, lead.flow_id)
    rule = ruleset.rule(lead.rule)
    retry = False
    if rule is not None and "retry" in rule.actions and lead.last_run_id:
        raw = log_of.run_raw(store, lead.last_run_id)
        try:
            run = parse_run(raw) if raw else None
        except (ValueError, TypeError, AttributeError, RecursionError):
            run = None
        retry = sa.may_retry(run, flow is not None and flow.schedule is not None)
    url = str(aep_url(flow, lead.sandbox)) if flow is not None else None
    return sa.add_buttons(message, sa.Offer(tuple(ids), retry=retry, aep_url=url))


def quiet_acknowledged(store: Store, changes: Sequence[Any]) -> list[Any]:
    """The changes with the repeats of acknowledged alerts silenced (same error as
    acknowledged); an alert whose error changed loses its acknowledgement."""
    ids = [c.alert_id for c in changes if c.alert_id is not None]
    acks = log_of.acks(store, ids)
    if not acks:
        return list(changes)
    out, ended = sa.quiet_acknowledged(changes, acks)
    log_of.unacknowledge(store, ended)
    return out
