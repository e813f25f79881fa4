"""The published JSON Schema of rules.yaml, generated from the specs of `rules_schema`
(the one home of the file's shape) and committed as rules.schema.json.

Two things are added to what the specs describe: every scalar may also be written with
`${NAME}` (a number or a boolean only as a whole `${NAME}`), and the cross-part rule that
a rule without channels needs defaults.channels. What JSON Schema cannot say is listed
in the schema's description (SCHEMA_CANNOT_SAY).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flowbot.rules_schema import (
    RULE_MODELS,
    SCHEMA_CANNOT_SAY,
    ChannelSpec,
    DefaultsSpec,
    MonitoringSpec,
    RulesFile,
    _given,
)
from flowbot.rules_values import BAD_ENV_REF, ENV_REF, ENV_WHOLE, format_duration
from flowbot.spec import JsonSchema

# A rule without channels needs defaults.channels.
_NEEDS_DEFAULT_CHANNELS = {
    "if": {
        "not": {
            "required": ["defaults"],
            "properties": {"defaults": {"type": "object", **_given("channels")}},
        }
    },
    "then": {"properties": {"rules": {"items": _given("channels")}}},
}


def _encode_default(value: Any) -> Any:
    """Duration defaults the way rules.yaml writes them ('5m', not 'PT5M')."""
    return format_duration(value) if isinstance(value, timedelta) else value


def _file_schema() -> dict[str, Any]:
    """The top level: RulesFile, with the parts it leaves to their own specs (channels,
    defaults, monitoring, rules) described by those specs."""
    generator = JsonSchema(_encode_default)
    schema = generator.object(RulesFile)
    schema["description"] = (
        f"rules.yaml of flowbot. ${{NAME}} may stand in any value; {SCHEMA_CANNOT_SAY}."
    )
    props = schema["properties"]
    props["channels"] = {
        "type": "object",
        "additionalProperties": generator.ref(ChannelSpec),
    }
    props["defaults"] = {"anyOf": [generator.ref(DefaultsSpec), {"type": "null"}], "default": None}
    props["monitoring"] = {
        "anyOf": [generator.ref(MonitoringSpec), {"type": "null"}],
        "default": None,
    }
    models = list(RULE_MODELS.values())
    props["rules"] = {
        "type": "array",
        "items": {
            "oneOf": [generator.ref(m) for m in models],
            "discriminator": {
                "propertyName": "type",
                "mapping": {t: f"#/$defs/{m.__name__}" for t, m in RULE_MODELS.items()},
            },
        },
    }
    schema.update(_NEEDS_DEFAULT_CHANNELS)
    schema["$defs"] = dict(sorted(generator.defs.items()))
    return schema


_ENV_DEFS = {
    "EnvText": {
        "type": "string",
        "pattern": ENV_REF,
        "description": "text with ${NAME}: the variable's value is checked by rules check",
    },
    "EnvWhole": {
        "type": "string",
        "pattern": ENV_WHOLE,
        "description": "a number or true/false from the environment, written ${NAME} alone",
    },
}
_NO_BAD_REF = {"not": {"type": "string", "pattern": BAD_ENV_REF}}


def _allow_env(node: Any, key: str | None = None) -> Any:
    """Every scalar of the schema may also be written with ${NAME} (a number or boolean
    only as a whole ${NAME}); a rule's type is always written out."""
    if isinstance(node, list):
        return [_allow_env(item) for item in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if kind in ("string", "integer", "number", "boolean") and key != "rule-type":
        textual = kind == "string"
        ref = "#/$defs/EnvText" if textual else "#/$defs/EnvWhole"
        wrapped: dict[str, Any] = {"anyOf": [node, {"$ref": ref}]}
        if textual:
            wrapped |= _NO_BAD_REF
        return wrapped
    out = {}
    for name, value in node.items():
        if name == "properties":
            out[name] = {
                prop: _allow_env(sub, "rule-type" if prop == "type" and "const" in sub else None)
                for prop, sub in value.items()
            }
        elif name in ("$defs",):
            out[name] = {d: _allow_env(sub) for d, sub in value.items()}
        elif name in ("items", "anyOf", "oneOf", "allOf", "additionalProperties", "not"):
            out[name] = _allow_env(value)
        else:
            out[name] = value
    return out


def rules_file_json_schema() -> dict[str, Any]:
    """The JSON Schema of the whole file."""
    schema: dict[str, Any] = _allow_env(_file_schema())
    schema["$defs"].update(_ENV_DEFS)
    schema["title"] = "flowbot rules.yaml"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
