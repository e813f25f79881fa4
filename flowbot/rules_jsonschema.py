"""The published JSON Schema of rules.yaml, generated from the models of `rules_schema`
(the one home of the file's shape) and committed as rules.schema.json.

Two things are added to what pydantic generates: every scalar may also be written with
`${NAME}` (a number or a boolean only as a whole `${NAME}`), and the cross-part rule that
a rule without channels needs defaults.channels. What JSON Schema cannot say is listed
in the schema's description (SCHEMA_CANNOT_SAY).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field
from pydantic.json_schema import GenerateJsonSchema

from flowbot.rules_schema import (
    SCHEMA_CANNOT_SAY,
    ChannelSpec,
    DefaultsSpec,
    DurationRule,
    ErrorCodeRule,
    FailedRecordsRule,
    FailedRunsRule,
    MissingRunRule,
    MonitoringSpec,
    RulesFile,
    StatusRule,
    ZeroRecordsRule,
    _extra,
    _given,
)
from flowbot.rules_values import BAD_ENV_REF, ENV_REF, ENV_WHOLE, format_duration

AnyRule = Annotated[
    StatusRule
    | FailedRecordsRule
    | FailedRunsRule
    | MissingRunRule
    | DurationRule
    | ErrorCodeRule
    | ZeroRecordsRule,
    Field(discriminator="type"),
]


class _RulesFileSchema(RulesFile):
    model_config = _extra(
        description=f"rules.yaml of flowbot. ${{NAME}} may stand in any value; {SCHEMA_CANNOT_SAY}.",
        # A rule without channels needs defaults.channels.
        if_={
            "not": {
                "required": ["defaults"],
                "properties": {"defaults": {"type": "object", **_given("channels")}},
            }
        },
        then={"properties": {"rules": {"items": _given("channels")}}},
    )

    channels: dict[str, ChannelSpec] = Field(default_factory=dict)
    defaults: DefaultsSpec | None = None
    monitoring: MonitoringSpec | None = None
    rules: list[AnyRule]


class _SchemaGenerator(GenerateJsonSchema):
    """Shows duration defaults the way rules.yaml writes them ('5m', not 'PT5M')."""

    def encode_default(self, dflt: Any) -> Any:
        if isinstance(dflt, timedelta):
            return format_duration(dflt)
        return super().encode_default(dflt)


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


def _rename(node: Any) -> Any:
    """pydantic takes not_/if_ for the keywords not/if (Python words)."""
    if isinstance(node, list):
        return [_rename(item) for item in node]
    if isinstance(node, dict):
        return {k.rstrip("_") if k in ("not_", "if_") else k: _rename(v) for k, v in node.items()}
    return node


def rules_file_json_schema() -> dict[str, Any]:
    """The JSON Schema of the whole file."""
    generated = _RulesFileSchema.model_json_schema(schema_generator=_SchemaGenerator)
    schema: dict[str, Any] = _allow_env(_rename(generated))
    schema["$defs"].update(_ENV_DEFS)
    schema["title"] = "flowbot rules.yaml"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
