"""The one-line summary of a cycle, the same in the daemon's log, `flowbot check` and
`flowbot demo`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowbot.outbox import Delivery
    from flowbot.pipeline import CycleReport


def summary_line(report: CycleReport, delivery: Delivery | None = None) -> str:
    """What a sandbox's cycle did, every figure named: "cycle prod: ok; runs 12 read, 3
    new; …; 0.50s", or "cycle prod: FAILED (why); …". `delivery`: what the send stage
    after it did; without it (`check` sends once after every sandbox) the line stops at
    the messages queued, and `delivery_line` says what was sent."""
    head = f"cycle {report.sandbox}: " + ("ok" if report.ok else f"FAILED ({report.error})")
    messages = f"messages {report.queued} queued"
    if delivery is not None:
        messages += f", {sent_figures(delivery)}"
    return (
        f"{head}; runs {report.runs_read} read, {report.runs_new} new; "
        f"{report.findings} findings; alerts {report.fired} fired, {report.repeated} repeated, "
        f"{report.resolved} resolved, {report.muted} muted; {messages}; "
        f"{report.api_requests} API requests; {report.seconds:.2f}s"
    )


def delivery_line(delivery: Delivery) -> str:
    """What a drain of the outbox did: "messages: 2 sent, 0 failed, 1 pending"."""
    return f"messages: {sent_figures(delivery)}"


def sent_figures(delivery: Delivery) -> str:
    return f"{delivery.sent} sent, {delivery.failed} failed, {delivery.pending} pending"
