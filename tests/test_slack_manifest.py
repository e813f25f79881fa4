"""The Slack app manifest of the docs asks for exactly the scopes the code needs: each
Web API method flowbot calls with the bot token needs one of the manifest's bot scopes,
and every scope there is used."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Web API method → the bot scope it needs (Slack's method reference).
SCOPE_OF = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "usergroups.users.list": "usergroups:read",
    "views.open": None,  # needs no scope beyond a trigger id
}


def manifest() -> dict:
    for block in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "oauth_config" in data:
            return data
    raise AssertionError("no Slack app manifest in README.md")


def methods_called() -> set[str]:
    """Web API methods named in the code: "chat.postMessage" strings and slack-sdk
    method calls such as `chat_update(`."""
    found: set[str] = set()
    for path in (ROOT / "flowbot").rglob("*.py"):
        text = path.read_text()
        found |= {m for m in SCOPE_OF if f'"{m}"' in text}
        found |= {m for m in SCOPE_OF if re.search(rf"\b{m.replace('.', '_')}\b", text)}
    return found


def test_manifest_scopes_are_exactly_what_the_code_calls() -> None:
    data = manifest()
    scopes = set(data["oauth_config"]["scopes"]["bot"])
    called = methods_called()
    assert {"chat.postMessage", "chat.update", "chat.postEphemeral"} <= called
    needed = {SCOPE_OF[m] for m in called if SCOPE_OF[m]} | {"commands"}
    assert scopes == needed


def test_manifest_turns_on_socket_mode_interactivity_and_the_command() -> None:
    data = manifest()
    assert data["settings"]["socket_mode_enabled"] is True
    assert data["settings"]["interactivity"]["is_enabled"] is True
    assert [c["command"] for c in data["features"]["slash_commands"]] == ["/flowbot"]
    assert "connections:write" in (ROOT / "README.md").read_text()
