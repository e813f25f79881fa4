"""Routing: the outgoing alerts of a cycle → the Messages queued for each channel.

Each outgoing item (a firing, repeat, resolution or group, from `alerts.py`) goes to
the channels of its rules; a channel gets the notices routed to it in one message,
rendered for its kind (`render.py`). A resolution is split by the thread its alerts
were announced in, so that it replies there. Messages about flowbot itself
(`meta_messages`) go to the monitoring channels.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flowbot import alerts
from flowbot.errors import reason_of
from flowbot.models import Message, Notice

if TYPE_CHECKING:
    from flowbot.rules import RuleSet
    from flowbot.store import Store


def route(
    outgoing: Sequence[alerts.Outgoing],
    ruleset: RuleSet,
    alert_ids: Mapping[tuple[str, str], int],
    templates_dir: Path | None,
    threads: Store | None = None,
    link_origins: Sequence[str] = (),
    on_skip: Callable[[str, str, str], None] | None = None,
) -> list[Message]:
    """Each outgoing message × the channels of its rules → rendered Messages; a channel
    gets the notices of the rules routed to it, in one message. Diagnostic URLs on
    `link_origins` (the configured API and export URLs) may be links. A message whose
    rendering raises is sent as the plain fallback text instead, and told to
    `on_skip("render", what, reason)`; when even that fails it is left out.

    A resolution is split by the thread its alerts were announced in on that channel
    (a storm's message, an incident's, their own; `threads` tells), replies there, and
    rewrites that first message only once no alert announced in it still fires.
    """
    messages = []
    for item in outgoing:
        for channel, pairs in _by_channel(item, ruleset):
            for batch, update in _by_thread(
                item, pairs, channel, alert_ids, threads, ruleset.group_at
            ):
                message = _message(
                    item, batch, channel, ruleset, alert_ids, templates_dir, update,
                    link_origins, on_skip,
                )  # fmt: skip
                if message is not None:
                    messages.append(message)
    return messages


Pair = tuple[Notice, tuple[str, str]]


def _by_channel(item: alerts.Outgoing, ruleset: RuleSet) -> list[tuple[str, list[Pair]]]:
    """The channels of the item's rules, in order, each with the notices routed to it."""
    out: dict[str, list[Pair]] = {}
    for notice, key in zip(item.notices, item.keys, strict=True):
        rule = ruleset.rule(notice.rule)  # None only if the rules changed under the notice
        for name in rule.channels if rule else ():
            out.setdefault(name, []).append((notice, key))
    return list(out.items())


def _by_thread(
    item: alerts.Outgoing,
    pairs: list[Pair],
    channel: str,
    alert_ids: Mapping[tuple[str, str], int],
    threads: Store | None,
    group_at: int,
) -> list[tuple[list[Pair], bool]]:
    """A resolution's notices in batches, each with whether its thread's first message
    may be rewritten as resolved (no alert announced in it still fires): by the message
    they were announced in on this channel; where none is known, `group_at` or more
    flows of one rule together (a storm), the rest by flow."""
    if item.event != "resolved":
        return [(pairs, True)]
    by_ref: dict[str, tuple[dict[str, str], list[Pair]]] = {}
    loose: list[Pair] = []
    for pair in pairs:
        ref = threads.thread(alert_ids.get(pair[1]), channel) if threads else None
        if ref is None:
            loose.append(pair)
        else:
            by_ref.setdefault(json.dumps(ref, sort_keys=True), (ref, []))[1].append(pair)
    batches = [
        (batch, threads is not None and threads.firing_in_thread(channel, ref) == 0)
        for ref, batch in by_ref.values()
    ]
    return batches + [(b, True) for b in _storms_or_flows(loose, max(group_at, 2))]


def _storms_or_flows(pairs: list[Pair], size: int) -> list[list[Pair]]:
    by_rule: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_rule.setdefault(pair[0].rule, []).append(pair)
    storms = [batch for batch in by_rule.values() if len(batch) >= size]
    by_flow: dict[str, list[Pair]] = {}
    for batch in by_rule.values():
        if len(batch) < size:
            for pair in batch:
                by_flow.setdefault(pair[0].flow.id, []).append(pair)
    return storms + list(by_flow.values())


def _message(
    item: alerts.Outgoing,
    batch: list[Pair],
    channel: str,
    ruleset: RuleSet,
    alert_ids: Mapping[tuple[str, str], int],
    templates_dir: Path | None,
    update: bool,
    link_origins: Sequence[str] = (),
    on_skip: Callable[[str, str, str], None] | None = None,
) -> Message | None:
    from flowbot.render import fallback_body, render

    notices = tuple(n for n, _ in batch)
    keys = [k for _, k in batch]
    kind = ruleset.channels[channel].kind
    what = f"{item.event} message of rule {notices[0].rule} for {_flows(notices)} to {channel}"

    def fell_back(reason: str) -> None:
        if on_skip:
            on_skip("render", what, f"{reason}; sent as plain text")

    lead_rule = ruleset.rule(notices[0].rule)
    try:
        body = render(
            notices,
            item.event,
            kind,
            templates_dir=templates_dir,
            rule_template=lead_rule.template if lead_rule else None,
            timezone=ruleset.timezone,
            link_origins=link_origins,
            aep_org=ruleset.aep_ui.org if ruleset.aep_ui else "",
            on_fallback=fell_back,
        )
    except Exception as exc:  # anything else about one message must not stop the cycle
        try:
            body = fallback_body(notices, item.event, kind)
        except Exception:
            if on_skip:
                on_skip("render", what, f"{reason_of(exc)}; not sent")
            return None
        if on_skip:
            on_skip("render", what, f"{reason_of(exc)}; sent as plain text")
    if not update:
        body.pop("update", None)  # other alerts of that first message still fire
    ids = tuple(alert_ids[k] for k in keys if k in alert_ids)
    lead = item.thread_key if item.thread_key in keys else keys[0]
    alert_id = None if item.event == "grouped" else alert_ids.get(lead)
    group = ids if len(ids) > 1 or alert_id is None else ()
    return Message(channel, kind, item.event, body, alert_id, group)


def meta_messages(
    ruleset: RuleSet, text: str, channels: Sequence[str] | None = None
) -> list[Message]:
    """A message about flowbot itself for each monitoring channel (or each of `channels`)."""
    from flowbot.render import render_meta

    out = []
    for name in ruleset.monitoring.channels if channels is None else channels:
        channel = ruleset.channels[name]
        out.append(Message(name, channel.kind, "meta", render_meta(text, channel.kind)))
    return out


def _flows(notices: Sequence[Notice]) -> str:
    ids = list(dict.fromkeys(n.flow.id for n in notices))
    more = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
    return f"flow {ids[0]}{more}"
