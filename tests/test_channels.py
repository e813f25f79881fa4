"""Every channel kind of flowbot.channels is complete in every place that names kinds:
the rules.yaml shape, the loader, the notifier factory, rendering, the CLI's choices and
the README. Adding a kind to the registry without one of them fails here, naming it."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from flowbot.channels import KIND_NAMES, KINDS, ChannelKind
from flowbot.cli import cli
from flowbot.errors import ConfigError
from flowbot.notifiers import build_notifier
from flowbot.notifiers.sample import sample_notices
from flowbot.render import DEFAULT_TEMPLATES, EVENTS, render, render_meta
from flowbot.rules import load_rules
from flowbot.rules_schema import ChannelSpec
from flowbot.settings import Settings
from flowbot.spec import fields as spec_fields

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SCHEMA = json.loads((ROOT / "rules.schema.json").read_text(encoding="utf-8"))

# The files a kind's templates folder holds, by body shape (render.py reads these).
TEMPLATE_FILES = {
    "slack": [f"{e}.md.j2" for e in EVENTS] + ["update.md.j2"],
    "email": [f"{e}.{part}.j2" for e in EVENTS for part in ("subject", "txt", "html")],
    "text": [f"{e}.txt.j2" for e in EVENTS],
}
KIND = pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))


def rules_with(kind: ChannelKind, folder: Path) -> Path:
    path = folder / "rules.yaml"
    data = {
        "sandboxes": ["prod"],
        "channels": {"out": {kind.name: kind.example}},
        "rules": [{"name": "r", "type": "status", "status": ["failed"], "channels": ["out"]}],
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_rules_shape_has_one_key_per_kind_and_no_other():
    assert tuple(spec_fields(ChannelSpec)) == KIND_NAMES
    channel_schema = SCHEMA["$defs"]["ChannelSpec"]
    assert tuple(channel_schema["properties"]) == KIND_NAMES
    assert ", ".join(KIND_NAMES) in channel_schema["description"]


@KIND
def test_the_loader_detects_each_kind_from_its_example(kind, tmp_path):
    [channel] = load_rules(rules_with(kind, tmp_path)).channels.values()
    assert channel.kind == kind.name
    if kind.target == "addresses":
        assert channel.target == (kind.example,)
    elif kind.target == "path":
        assert channel.target == str(tmp_path / str(kind.example))
    elif kind.target == "flag":
        assert channel.target == ""
    else:
        assert channel.target == kind.example


def test_a_channel_with_two_kinds_names_every_kind_in_its_error(tmp_path):
    path = tmp_path / "rules.yaml"
    data = {
        "sandboxes": ["prod"],
        "channels": {"out": {k.name: k.example for k in list(KINDS.values())[:2]}},
        "rules": [{"name": "r", "type": "status", "status": ["failed"], "channels": ["out"]}],
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert f"exactly one of {', '.join(KIND_NAMES)}" in "\n".join(caught.value.problems)


@KIND
def test_each_kind_builds_a_notifier_from_its_own_module(kind, tmp_path):
    [channel] = load_rules(rules_with(kind, tmp_path)).channels.values()
    notifier = build_notifier(channel, Settings(), stdout=io.StringIO())
    module, _ = kind.builder.split(":")
    assert type(notifier).__module__ == module
    assert callable(getattr(notifier, "send", None))


@KIND
def test_each_kind_renders_every_event_from_its_templates(kind):
    if kind.body == "record":
        assert kind.templates is None
    else:
        assert kind.templates is not None
        folder = DEFAULT_TEMPLATES / kind.templates
        missing = [f for f in TEMPLATE_FILES[kind.body] if not (folder / f).is_file()]
        assert not missing, f"{kind.name}: no {missing} in {folder}"
    fallbacks: list[str] = []
    for event in EVENTS:
        body = render(sample_notices(event), event, kind.name, on_fallback=fallbacks.append)
        assert body
    assert fallbacks == []
    assert render_meta("flowbot itself", kind.name)


@KIND
def test_each_kind_is_a_choice_of_notify_preview(kind):
    result = CliRunner().invoke(cli, ["notify", "preview", "--help"])
    assert kind.name in result.output


@KIND
def test_each_kind_is_in_the_readme_as_a_channel_key(kind):
    assert re.search(rf"^\s+{re.escape(kind.name)}: ", README, re.MULTILINE), (
        f"README.md shows no channel written `{kind.name}: …`"
    )
