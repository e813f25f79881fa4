"""`flowbot demo`: the whole product in half a minute, without credentials or network.

It starts the simulator on 127.0.0.1 with the demo world (`demo_scenario`), a
temporary SQLite database and the example `rules.yaml` (shipped in the package as
`flowbot/examples/rules.yaml`), runs two real cycles on an injected clock, and shows
what each Slack channel and each email address would receive. Channels are replaced
by a `PreviewNotifier` that records the rendered message instead of sending it; the
message is printed from the same body (Block Kit, or subject and text) that the real
notifier would post.

Between the two cycles five minutes pass and a few good runs arrive, so the second
cycle shows what resolves and that nothing repeats.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import click

from flowbot.models import Message
from flowbot.summary import delivery_line, summary_line

EXAMPLE_RULES = "examples/rules.yaml"
GAP = timedelta(minutes=5)  # between the two cycles

Echo = Callable[[str], None]


def example_rules() -> Path:
    """The example rules.yaml shipped with the package (a copy of the repository's)."""
    return Path(str(resources.files("flowbot").joinpath(EXAMPLE_RULES)))


# ---------------------------------------------------------------- the preview channel


@dataclass(frozen=True, slots=True)
class Preview:
    """One message a channel would have sent: where, what, and whether in a thread."""

    channel: str
    kind: str
    target: str
    event: str
    body: Mapping[str, Any]
    thread: Mapping[str, str] | None


@dataclass
class PreviewNotifier:
    """A Notifier that keeps messages instead of sending them, and hands out thread
    references the way Slack (channel + ts) and email (Message-ID) would."""

    name: str
    kind: str
    target: str
    sent: list[Preview] = field(default_factory=list)

    def send(self, message: Message, thread: Mapping[str, str] | None) -> Mapping[str, str] | None:
        """Record the message; return a made-up reference so later messages thread."""
        self.sent.append(
            Preview(self.name, self.kind, self.target, message.event, message.body, thread)
        )
        if self.kind == "slack":
            return {"channel": self.target, "ts": f"1700000000.{len(self.sent):06d}"}
        if self.kind == "email":
            return {"message_id": f"<demo-{len(self.sent)}@flowbot.invalid>"}
        return None


def preview_notifiers(channels: Mapping[str, Any]) -> dict[str, PreviewNotifier]:
    """A PreviewNotifier for every channel of the rules, by channel name."""
    out = {}
    for name, channel in channels.items():
        target = channel.target
        shown = ", ".join(target) if isinstance(target, tuple) else str(target)
        out[name] = PreviewNotifier(name, channel.kind, shown)
    return out


# ---------------------------------------------------------------- showing messages

_LINK = re.compile(r"<([^|<>]+)\|([^<>]+)>")


class Links:
    """Numbers the links of one message, so a line reads `failedRecords[2]` and the
    addresses follow as footnotes instead of burying the text."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def mark(self, match: re.Match[str]) -> str:
        url, label = match.group(1), match.group(2)
        if url not in self.urls:
            self.urls.append(url)
        return f"{label}[{self.urls.index(url) + 1}]"

    def footnotes(self) -> list[str]:
        return [click.style(f"[{i}] {url}", dim=True) for i, url in enumerate(self.urls, 1)]


EMOJI = {
    ":red_circle:": "🔴",
    ":large_orange_circle:": "🟠",
    ":large_blue_circle:": "🔵",
    ":white_check_mark:": "✅",
    ":warning:": "⚠️",
}


def plain_mrkdwn(text: str, links: Links) -> str:
    """Slack mrkdwn as a terminal shows it: `<url|label>` becomes `label[n]` (the
    address in footnote n), a few emoji codes become the emoji, and the escaped
    `& < >` read as themselves again."""
    text = _LINK.sub(links.mark, text)
    for code, emoji in EMOJI.items():
        text = text.replace(code, emoji)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def slack_lines(body: Mapping[str, Any]) -> list[str]:
    """A Block Kit body (header, section with text or fields, context, divider) as
    terminal lines, styled: the header bold, context dim, links as footnotes."""
    links = Links()
    lines: list[str] = []
    for block in body.get("blocks") or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(click.style(plain_mrkdwn(str(block["text"]["text"]), links), bold=True))
        elif kind == "section":
            if block.get("text"):
                lines.extend(plain_mrkdwn(str(block["text"]["text"]), links).splitlines())
            for item in block.get("fields") or []:
                lines.append(plain_mrkdwn(str(item.get("text", "")), links))
        elif kind == "context":
            for item in block.get("elements") or []:
                text = plain_mrkdwn(str(item.get("text", "")), links)
                lines.append(click.style(text, dim=True))
        elif kind == "divider":
            lines.append(click.style("─" * 40, dim=True))
    if not lines:
        lines.append(plain_mrkdwn(str(body.get("text", "")), links))
    return lines + links.footnotes()


def email_lines(body: Mapping[str, Any]) -> list[str]:
    """An email body as terminal lines: the subject, then the text part."""
    subject = click.style(f"Subject: {body.get('subject', '')}", bold=True)
    return [subject, "", *str(body.get("text", "")).rstrip().splitlines()]


EVENT_COLOURS = {
    "firing": "red",
    "grouped": "red",
    "repeat": "yellow",
    "resolved": "green",
    "meta": "magenta",
}


def show_preview(preview: Preview, echo: Echo) -> None:
    """Print one message in a box headed by its channel and event."""
    where = {"slack": "Slack", "email": "email to"}.get(preview.kind, preview.kind)
    threaded = " · in the alert's thread" if preview.thread else ""
    if preview.kind == "slack" and preview.event == "resolved" and preview.thread:
        threaded += ", first message updated"
    title = f"{where} {preview.target} ({preview.channel}) · {preview.event}{threaded}"
    echo(click.style(f"┌─ {title}", fg=EVENT_COLOURS.get(preview.event, "cyan"), bold=True))
    lines = email_lines(preview.body) if preview.kind == "email" else slack_lines(preview.body)
    for line in lines:
        echo(f"│ {line}".rstrip())
    echo("└─")
    echo("")


# ---------------------------------------------------------------- the demo


class Clock:
    """The demo's time: starts at `at`, moves only when told."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def good_run(flow_name: str, started_at: datetime, records: int) -> dict[str, Any]:
    """A successful run payload of a demo flow."""
    from flowbot.sim.payloads import make_run
    from flowbot.sim.scenario import flow_id

    return make_run(
        flow_id(flow_name),
        started_at=started_at,
        completed_at=started_at + timedelta(minutes=3),
        input_records=records,
    )


def run_demo(
    echo: Echo,
    history: Callable[[Path], None],
    *,
    now: datetime | None = None,
    rules_path: Path | None = None,
) -> int:
    """Run the demo, printing through `echo`; `history(db)` prints what `flowbot history`
    shows for the demo database. Returns the number of messages shown."""
    from flowbot.pipeline import build_deps, run_once
    from flowbot.rules import load_rules
    from flowbot.sim.scenario import demo_scenario
    from flowbot.sim.server import Simulator
    from flowbot.store import Store

    start = (now or datetime.now(UTC)).replace(microsecond=0)
    clock = Clock(start)
    rules_path = rules_path or example_rules()
    ruleset = load_rules(rules_path)
    scenario = demo_scenario(start)
    shown = 0
    with tempfile.TemporaryDirectory(prefix="flowbot-demo-") as tmp, Simulator(scenario) as sim:
        db = Path(tmp) / "flowbot.db"
        settings = sim.settings(db=str(db))
        store = Store(db)
        try:
            store.migrate()
            deps = build_deps(settings, ruleset, clock=clock, store=store)
            notifiers = preview_notifiers(ruleset.channels)
            deps.notifiers = notifiers
            _intro(echo, scenario, sim.url, rules_path, ruleset)

            shown += _cycle(echo, 1, deps, notifiers, run_once)

            clock.at = start + GAP
            arrivals = [
                (
                    "crm-contacts-sync",
                    good_run("crm-contacts-sync", start + timedelta(minutes=1), 5000),
                ),
                (
                    "web-events-hourly",
                    good_run("web-events-hourly", start + timedelta(minutes=2), 1200),
                ),
            ]
            echo(click.style(f"… {GAP.seconds // 60} minutes later, new runs arrive:", bold=True))
            for name, run in arrivals:
                sim.put_run(run)
                echo(f"  • a good run of {name} ({run['id'][:8]}…)")
            echo("")
            shown += _cycle(echo, 2, deps, notifiers, run_once)
        finally:
            store.close()
        echo(click.style("═══ flowbot history (the demo database)", bold=True))
        history(db)
    echo("")
    echo(
        "That was the simulator. To watch your own sandboxes, see README.md: "
        "Adobe credentials, SLACK_BOT_TOKEN, SMTP_HOST, then `flowbot run`."
    )
    return shown


def _intro(echo: Echo, scenario: Any, url: str, rules_path: Path, ruleset: Any) -> None:
    echo(click.style("flowbot demo", bold=True) + " · no credentials, no network")
    echo(
        f"  simulator: {len(scenario.flows)} dataflows, {len(scenario.runs)} runs at {url}\n"
        f"  rules:     {rules_path} ({len(ruleset.rules)} rules, "
        f"{len(ruleset.channels)} channels)\n"
        "  channels:  messages are shown here instead of being sent"
    )
    echo("")


def _cycle(
    echo: Echo,
    number: int,
    deps: Any,
    notifiers: Mapping[str, PreviewNotifier],
    run_once: Callable[[Any], Any],
) -> int:
    before = {name: len(n.sent) for name, n in notifiers.items()}
    firing_before = {a.id for a in deps.store.firing_alerts()}
    at = deps.clock().strftime("%H:%M UTC")
    echo(click.style(f"═══ cycle {number} at {at}", bold=True))
    reports, delivery = run_once(deps)
    for r in reports:
        line = summary_line(r)
        echo(line if r.ok else click.style(line, fg="red"))
    echo(delivery_line(delivery))
    echo("")
    new: list[Preview] = []
    for name, notifier in notifiers.items():
        new.extend(notifier.sent[before[name] :])
    shown = [p for p in new if p.kind in ("slack", "email")]
    for preview in _ordered(shown):
        show_preview(preview, echo)
    others = [p for p in new if p.kind not in ("slack", "email")]
    for p in others:
        echo(click.style(f"  ({p.channel}, a {p.kind} channel: one {p.event} record)", dim=True))
    still = firing_before & {a.id for a in deps.store.firing_alerts()}
    if still:
        echo(
            f"  {len(still)} alerts still firing from the last cycle: not sent again "
            "(a new failure goes to their thread at most every repeat_after)"
        )
    if others or still:
        echo("")
    return len(new)


def _ordered(previews: Sequence[Preview]) -> list[Preview]:
    """Slack channels first, then email, each in sending order."""
    return sorted(previews, key=lambda p: (p.kind != "slack", p.channel))
