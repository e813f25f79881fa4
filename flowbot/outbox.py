"""The send stage: drain the outbox, channel by channel, in the order messages were queued.

Each message is marked sent right after its channel accepted it, so a crash can repeat
at most the one message in flight. A transient failure (NotifyError.permanent False)
keeps the message and every later one of that channel for a later attempt, with
backoff or the channel's Retry-After, so messages arrive in order once the channel is
back; other channels go on. A permanent failure is recorded and the channel moves on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flowbot.errors import NotifyError
from flowbot.models import Message
from flowbot.settings import redact
from flowbot.store import OutboxRow, Store

log = logging.getLogger("flowbot.outbox")

MAX_AGE = timedelta(hours=24)  # a message still undeliverable after this is recorded failed


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min … capped at 15 minutes."""
    return timedelta(seconds=min(30 * 2 ** max(attempts, 0), 900))


@dataclass
class Delivery:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    pending: int = 0
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, channel: str, outcome: str) -> None:
        per = self.by_channel.setdefault(channel, {})
        per[outcome] = per.get(outcome, 0) + 1


def deliver(
    store: Store,
    notifiers: Mapping[str, object],
    clock: Callable[[], datetime],
    *,
    secrets: Sequence[str] = (),
    budget: float = 60.0,
    step: Callable[[str], None] = lambda name: None,
) -> Delivery:
    """Send what is due, one message per channel in turn, so that a slow or paced channel
    does not hold back the others. `budget` bounds the seconds spent (the rest waits)."""
    report = Delivery()
    started = time.monotonic()
    queues: dict[str, deque[OutboxRow]] = {}
    for row in store.pending():
        queues.setdefault(row.channel, deque()).append(row)
    while queues and time.monotonic() - started <= budget:
        for channel in list(queues):
            queue = queues[channel]
            go_on = _send_one(
                store, notifiers.get(channel), queue.popleft(), clock, secrets, step, report
            )
            if not go_on or not queue:
                del queues[channel]
    report.pending = len(store.pending())
    return report


def _send_one(
    store: Store,
    notifier: object | None,
    row: OutboxRow,
    clock: Callable[[], datetime],
    secrets: Sequence[str],
    step: Callable[[str], None],
    report: Delivery,
) -> bool:
    """Send one message and record the outcome; False when its channel must wait."""
    channel, now = row.channel, clock()
    if notifier is None:
        store.mark_failed(row.id, f"channel {channel!r} is not defined in rules.yaml")
        log.error("message %s dropped: channel %r is not defined", row.id, channel)
        report.failed += 1
        report.count(channel, "failed")
        return True
    if row.next_attempt > now:
        return False  # waiting for a retry: later messages of the channel wait too (order)
    thread = store.thread(row.alert_id, channel)
    message = Message(channel, row.kind, row.event, row.body, row.alert_id)  # type: ignore[arg-type]
    step(f"send:{row.id}")
    try:
        ref = notifier.send(message, thread)  # type: ignore[attr-defined]
        step(f"delivered:{row.id}")  # sent, not yet recorded: a crash here repeats it
    except NotifyError as exc:
        error = redact(str(exc), list(secrets))
        if exc.permanent or now - row.created >= MAX_AGE:
            store.mark_failed(row.id, error)
            log.error("message %s to %s failed for good: %s", row.id, channel, error)
            report.failed += 1
            report.count(channel, "failed")
            return True
        wait = timedelta(seconds=exc.retry_after) if exc.retry_after else backoff(row.attempts)
        store.mark_retry(row.id, error, now + wait)
        log.warning(
            "message %s to %s deferred %ds: %s", row.id, channel, wait.total_seconds(), error
        )
        report.deferred += 1
        report.count(channel, "deferred")
        return False
    store.mark_sent(row.id, clock(), ref)
    step(f"sent:{row.id}")
    if ref:
        # Every alert the message speaks for (a storm, an incident) follows one thread:
        # the one it replied in, or this message when it started one. Known threads stay.
        for alert_id in {row.alert_id, *store.group_of(row.id)} - {None}:
            store.set_thread(alert_id, channel, thread or ref)  # type: ignore[arg-type]
    log.info("message %s (%s) sent to %s", row.id, row.event, channel)
    report.sent += 1
    report.count(channel, "sent")
    return True
