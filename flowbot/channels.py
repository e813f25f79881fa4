"""The channel kinds: the one list of what a rules.yaml channel can be.

Everything else about kinds comes from `KINDS`: the loader's "exactly one of …" check
and its kind detection (`rules_schema.ChannelSpec`), the notifier factory
(`notifiers.build_notifier` imports `builder` when a channel of that kind is built),
rendering (`render` picks the body shape and the template folder), and the choices of
`flowbot notify preview --kind`. `tests/test_channels.py` fails when a kind lacks its
`ChannelSpec` key, its builder, its templates or its README mention.

This module imports nothing of flowbot, so anything may import it (the CLI, for one,
reads the kinds without loading a notifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How a kind's message body is built (render.py):
#   slack   Block Kit from `<templates>/{event}.md.j2` ({"text", "blocks"}, "update")
#   email   `<templates>/{event}.subject.j2`, `.txt.j2`, `.html.j2`
#   text    plain text from `<templates>/{event}.txt.j2`
#   record  a structured JSON-able dict (context.file_body), no template
Body = Literal["slack", "email", "text", "record"]

# How the rules.yaml value becomes the channel's target (rules_schema.ChannelSpec):
#   text       the string as written
#   addresses  a tuple of strings (one value or a list)
#   path       a path resolved against the folder of rules.yaml
#   flag       `true`; the target is ""
Target = Literal["text", "addresses", "path", "flag"]


@dataclass(frozen=True, slots=True)
class ChannelKind:
    """One kind of channel: its rules.yaml key, how its target reads, how its messages
    are rendered (`templates`: the folder under templates/, None for "record"), where
    its notifier is built ("module:function", imported lazily; the function takes the
    channel and a `notifiers.NotifierDeps`), and an example value for rules.yaml."""

    name: str
    target: Target
    body: Body
    templates: str | None
    builder: str
    example: str | bool


KINDS: dict[str, ChannelKind] = {
    kind.name: kind
    for kind in (
        ChannelKind(
            "slack",
            target="text",
            body="slack",
            templates="slack",
            builder="flowbot.notifiers.slack:slack_from_channel",
            example="#data-ops",
        ),
        ChannelKind(
            "webhook",
            target="text",
            body="slack",
            templates="slack",
            builder="flowbot.notifiers.slack:webhook_from_channel",
            example="https://hooks.slack.com/services/T000/B000/XXXX",
        ),
        ChannelKind(
            "email",
            target="addresses",
            body="email",
            templates="email",
            builder="flowbot.notifiers.email:from_channel",
            example="data-ops@example.com",
        ),
        ChannelKind(
            "file",
            target="path",
            body="record",
            templates=None,
            builder="flowbot.notifiers.file:from_channel",
            example="alerts.jsonl",
        ),
        ChannelKind(
            "terminal",
            target="flag",
            body="text",
            templates="terminal",
            builder="flowbot.notifiers.terminal:from_channel",
            example=True,
        ),
    )
}

KIND_NAMES: tuple[str, ...] = tuple(KINDS)


def channel_kind(name: str) -> ChannelKind:
    """The kind called `name`; ValueError naming the known kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(
            f"unknown channel kind {name!r} (known: {', '.join(KIND_NAMES)})"
        ) from None
