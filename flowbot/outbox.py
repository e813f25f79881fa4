"""The send stage: drain the outbox, each channel in its own worker, in queued order.

Every channel with something due gets one worker thread that does nothing but
`notifier.send`; this thread (the caller's) hands each channel its next message, and
records every outcome in the store itself, so the store is only ever used from one
thread. A hung or slow channel therefore holds back only its own messages: the others
go on, and once the budget is spent no new message is started; sends still in flight
get `grace` seconds more (their notifier's own deadline bounds them), after which they
are left behind and their messages stay pending (a later drain skips a channel whose
last send has not returned).

Each message is marked sent right after its channel accepted it, so a crash can repeat
at most the one message in flight per channel. A transient failure keeps the message and
every later one of that channel for a later attempt, after the channel's Retry-After or
our backoff, so messages arrive in order once the channel is back. An explicit retry
(`retry=True`, `check --once`) ignores our own backoff but still honours a Retry-After
that has not passed. A permanent failure is recorded and the channel moves on; when it
is a refusal of the channel itself (`NotifyError.problem`) the monitoring channels are
told once per channel and problem, and told again when the channel delivers again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flowbot.errors import NotifyError
from flowbot.models import Message
from flowbot.settings import redact
from flowbot.store import ChannelProblem, OutboxRow, Store
from flowbot.times import utc_minute

if TYPE_CHECKING:
    from flowbot.notifiers import Notifier

log = logging.getLogger("flowbot.outbox")

MAX_AGE = timedelta(hours=24)  # a message still undeliverable after this is recorded failed
GRACE = 65.0  # seconds a send in flight may finish after the budget (SMTP's deadline + 5)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min … capped at 15 minutes."""
    return timedelta(seconds=min(30 * 2 ** max(attempts, 0), 900))


def is_due(row: OutboxRow, now: datetime, *, retry: bool) -> bool:
    """Whether a pending message may be sent now: a Retry-After always holds; our own
    backoff holds unless this is an explicit retry."""
    if row.held_until is not None and row.held_until > now:
        return False
    return retry or row.next_attempt <= now


def announce_to(channel: str, monitoring: Sequence[str], every: Sequence[str]) -> list[str]:
    """Where to tell that `channel` refuses: the monitoring channels, or every other
    channel when the monitoring channels are only the one refusing."""
    if not monitoring:
        return []
    others = [name for name in monitoring if name != channel]
    return others or [name for name in every if name != channel]


@dataclass(frozen=True)
class Monitoring:
    """What the send stage needs to tell about a refusing channel: the monitoring
    channels, every channel, and how to render a meta message for named channels."""

    channels: Sequence[str]
    every: Sequence[str]
    messages: Callable[[str, Sequence[str]], list[Message]]


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


@dataclass
class _Outcome:
    channel: str
    row: OutboxRow
    thread: Mapping[str, str] | None
    ref: Mapping[str, str] | None = None
    error: BaseException | None = None


# Sends left behind after their grace, by notifier: that channel is skipped until they
# return, so one notifier never sends twice at once (values keep the notifier alive).
_left_behind: dict[int, tuple[Notifier | None, threading.Thread]] = {}
_left_lock = threading.Lock()


def _still_busy(notifier: Notifier) -> bool:
    with _left_lock:
        entry = _left_behind.get(id(notifier))
        if entry is None:
            return False
        if entry[1].is_alive():
            return True
        del _left_behind[id(notifier)]
        return False


def deliver(
    store: Store,
    notifiers: Mapping[str, Notifier],
    clock: Callable[[], datetime],
    *,
    secrets: Sequence[str] = (),
    budget: float = 60.0,
    grace: float = GRACE,
    retry: bool = False,
    monitoring: Monitoring | None = None,
    step: Callable[[str], None] = lambda name: None,
) -> Delivery:
    """Send what is due, every channel at once (see the module doc). `budget` bounds the
    seconds in which new messages are started; `retry` makes this an explicit retry."""
    return _Drain(store, notifiers, clock, secrets, retry, monitoring, step).run(budget, grace)


class _Drain:
    """One drain of the outbox; its methods run on the caller's thread only."""

    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, Notifier],
        clock: Callable[[], datetime],
        secrets: Sequence[str],
        retry: bool,
        monitoring: Monitoring | None,
        step: Callable[[str], None],
    ) -> None:
        self.store, self.notifiers, self.clock = store, notifiers, clock
        self.secrets, self.retry, self.monitoring, self.step = (
            list(secrets), retry, monitoring, step
        )  # fmt: skip
        self.report = Delivery()
        self.queues: dict[str, deque[OutboxRow]] = {}
        self.known: set[int] = set()
        self.stopped: set[str] = set()  # channels that wait for a later drain
        self.busy: dict[str, _Outcome] = {}
        self.results: queue.Queue[_Outcome] = queue.Queue()
        self.threads: dict[str, threading.Thread] = {}

    def run(self, budget: float, grace: float) -> Delivery:
        started = time.monotonic()
        self._add(self.store.pending())
        for channel in list(self.queues):
            self._next(channel)
        while self.busy:
            left = budget - (time.monotonic() - started)
            wait = left if left > 0 else grace + left
            try:
                outcome = self.results.get(timeout=max(wait, 0.0))
            except queue.Empty:
                if left > 0:
                    continue
                break
            self.busy.pop(outcome.channel, None)
            go_on = self._record(outcome)
            if go_on and time.monotonic() - started < budget:
                self._next(outcome.channel)
        for channel, outcome in self.busy.items():
            log.warning(
                "message %s to %s: the send did not return in time; it stays pending",
                outcome.row.id,
                channel,
            )
            with _left_lock:
                notifier = self.notifiers.get(channel)
                _left_behind[id(notifier)] = (notifier, self.threads[channel])
        self.report.pending = len(self.store.pending())
        return self.report

    def _add(self, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            if row.id in self.known or row.channel in self.stopped:
                continue
            self.known.add(row.id)
            self.queues.setdefault(row.channel, deque()).append(row)

    def _next(self, channel: str) -> None:
        """Start the next due message of `channel` in a worker, if any."""
        queue_ = self.queues.get(channel)
        while queue_:
            row = queue_[0]
            notifier = self.notifiers.get(channel)
            if notifier is None:
                queue_.popleft()
                self.store.mark_failed(row.id, f"channel {channel!r} is not defined in rules.yaml")
                log.error("message %s dropped: channel %r is not defined", row.id, channel)
                self.report.failed += 1
                self.report.count(channel, "failed")
                continue
            if not is_due(row, self.clock(), retry=self.retry) or _still_busy(notifier):
                self.stopped.add(channel)  # later messages of the channel wait too (order)
                break
            queue_.popleft()
            outcome = _Outcome(channel, row, self.store.thread(row.alert_id, channel))
            self.step(f"send:{row.id}")
            self.busy[channel] = outcome
            worker = threading.Thread(
                target=_send, args=(notifier, outcome, self.results), daemon=True,
                name=f"send:{channel}",
            )  # fmt: skip
            self.threads[channel] = worker
            worker.start()
            return
        self.queues.pop(channel, None)

    def _record(self, outcome: _Outcome) -> bool:
        """Record one outcome; False when its channel must wait for a later drain."""
        row, channel, now = outcome.row, outcome.channel, self.clock()
        exc = outcome.error
        if exc is None:
            self.step(f"delivered:{row.id}")  # sent, not yet recorded: a crash repeats it
            self._sent(outcome, now)
            return True
        if not isinstance(exc, NotifyError):  # a notifier's own bug: this message only
            log.error("message %s to %s: unexpected %s", row.id, channel, type(exc).__name__)
            exc = NotifyError(f"channel {channel}: {type(exc).__name__}: {exc}")
        error = redact(str(exc), self.secrets)[:1000]
        if exc.permanent or now - row.created >= MAX_AGE:
            self.store.mark_failed(row.id, error)
            log.error("message %s to %s failed for good: %s", row.id, channel, error)
            self.report.failed += 1
            self.report.count(channel, "failed")
            if exc.permanent and exc.problem:
                self._refused(channel, exc.problem, error, now)
            return True
        held = now + timedelta(seconds=exc.retry_after) if exc.retry_after is not None else None
        wait = held - now if held is not None else backoff(row.attempts)
        self.store.mark_retry(row.id, error, now + wait, held_until=held)
        log.warning(
            "message %s to %s deferred %ds: %s", row.id, channel, wait.total_seconds(), error
        )
        self.report.deferred += 1
        self.report.count(channel, "deferred")
        self.stopped.add(channel)
        self.queues.pop(channel, None)
        return False

    def _sent(self, outcome: _Outcome, now: datetime) -> None:
        row, channel, ref = outcome.row, outcome.channel, outcome.ref
        self.store.mark_sent(row.id, now, ref)
        self.step(f"sent:{row.id}")
        if ref:
            # Every alert the message speaks for (a storm, an incident) follows one thread:
            # the one it replied in, or this message when it started one. Known threads stay.
            speaks_for = {*self.store.group_of(row.id)}
            if row.alert_id is not None:
                speaks_for.add(row.alert_id)
            for alert_id in speaks_for:
                self.store.set_thread(alert_id, channel, outcome.thread or ref)
        log.info("message %s (%s) sent to %s", row.id, row.event, channel)
        self.report.sent += 1
        self.report.count(channel, "sent")
        known = self.store.channel_problem(channel)
        if known is not None:
            self.store.clear_channel_problem(channel)
            log.warning("channel %s delivers again (it refused: %s)", channel, known.problem)
            self._tell(
                f"flowbot channel {channel} delivers again: it refused messages since "
                f"{utc_minute(known.since)} ({known.problem}). Messages refused meanwhile were "
                "not sent; `flowbot history` lists them.",
                known.announced_to,
                now,
            )

    def _refused(self, channel: str, problem: str, error: str, now: datetime) -> None:
        """Tell the monitoring channels, once per channel and problem."""
        known = self.store.channel_problem(channel)
        if known is not None and known.problem == problem:
            return
        targets: list[str] = []
        if self.monitoring is not None:
            targets = announce_to(channel, self.monitoring.channels, self.monitoring.every)
        self.store.set_channel_problem(ChannelProblem(channel, problem, error, now, tuple(targets)))
        log.error("channel %s refuses messages (%s); told: %s", channel, problem, targets or "-")
        self._tell(
            f"flowbot channel {channel} refuses messages ({problem}): {error}. "
            f"Every message for {channel} fails until this is fixed; flowbot says so here "
            "when it delivers again.",
            targets,
            now,
        )

    def _tell(self, text: str, channels: Sequence[str], now: datetime) -> None:
        if self.monitoring is None or not channels:
            return
        wanted = [name for name in channels if name in self.notifiers]
        messages = self.monitoring.messages(text, wanted)
        if not messages:
            return
        self.store.enqueue(messages, now)
        self._add([r for name in wanted for r in self.store.pending(name)])
        for name in wanted:
            if name not in self.busy and name in self.queues:
                self._next(name)


def _send(notifier: Notifier, outcome: _Outcome, results: queue.Queue[_Outcome]) -> None:
    """A worker: one send, its outcome handed back (never raises)."""
    row = outcome.row
    message = Message(outcome.channel, row.kind, row.event, row.body, row.alert_id)
    try:
        outcome.ref = notifier.send(message, outcome.thread)
    except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread as is)
        outcome.error = exc
    results.put(outcome)
