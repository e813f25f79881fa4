"""rules.schema.json accepts exactly what `rules check` accepts, wherever JSON Schema can
say it: many generated files (a seeded mix of valid and mutated rules files) get the
same verdict from jsonschema and from load_rules. What the schema cannot say is named
in its description, and each such case is shown to pass the schema and fail the check."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from flowbot.errors import ConfigError
from flowbot.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "rules.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

BASE: dict[str, Any] = {
    "sandboxes": ["prod"],
    "poll_every": "5m",
    "channels": {"ops": {"slack": "#ops"}, "mail": {"email": ["a@example.com"]}},
    "defaults": {"channels": ["ops"], "severity": "warning"},
    "rules": [
        {"name": "a", "type": "status", "status": ["failed"]},
        {"name": "b", "type": "failed_records", "above": "5%", "min_input": 10},
        {"name": "c", "type": "missing_run", "every": "1h", "grace": "15m"},
        {"name": "d", "type": "failed_runs", "above": "50%", "window": 10},
        {"name": "e", "type": "duration", "above": "2h", "channels": ["ops", "mail"]},
        {"name": "f", "type": "error_code", "codes": ["MAPPER-*"]},
        {"name": "g", "type": "zero_records", "flows": {"name": "crm-*"}},
    ],
}
ENV = {
    "POLL": "5m", "N": "10", "ON": "true", "SEV": "critical", "R": "5%", "B": "5",
    "NAME": "from-env", "RB": "https://wiki.example.com/x", "M": "3", "CH": "#ops", "ST": "Failed",
}  # fmt: skip


def rule(rule_name: str, /, **changes: Any):
    def apply(data: dict[str, Any]) -> None:
        rules = data.get("rules") or []
        target = next((r for r in rules if r.get("name") == rule_name), None)
        if target is None:  # an earlier mutation renamed or dropped it
            return
        for key, value in changes.items():
            if value is DROP:
                target.pop(key, None)
            else:
                target[key] = value

    return apply


def top(**changes: Any):
    def apply(data: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is DROP:
                data.pop(key, None)
            else:
                data[key] = value

    return apply


def channel(name: str, spec: Any):
    def apply(data: dict[str, Any]) -> None:
        data["channels"][name] = spec

    return apply


DROP = object()

# Mutations JSON Schema can judge: each may make the file valid or invalid.
MUTATIONS = [
    top(poll_every="${POLL}"), top(poll_every="${P-1}"),
    top(group_at="${N}"), top(group_at="1${N}"), top(group_at="10"), top(group_at=0),
    top(group_at=10.0), top(group_at=True), top(group_at=100_001),
    rule("a", enabled="yes"), rule("a", enabled="${ON}"), rule("a", enabled=1),
    rule("a", enabled=False), channel("both", {"slack": "#x", "file": "x.jsonl"}),
    channel("t", {"terminal": True}), channel("t", {"terminal": False}),
    channel("t", {"terminal": "${ON}"}), channel("t", {}), channel("n", {"slack": None}),
    channel("m", {"email": "x@example.com"}), channel("m", {"email": []}),
    channel("m", {"email": "x@example.com, y@example.com"}), channel("h", {"webhook": "ftp://x"}),
    channel("h", {"webhook": "https://hooks.example/${CH}"}), channel("s", {"slack": "#a b"}),
    channel("s", {"slack": "${CH}"}), channel("s", {"slack": ""}), channel("f", {"file": " "}),
    rule("f", codes=[]), rule("f", codes="MAPPER-*"), rule("a", repeat_after="0s"),
    rule("a", repeat_after="1.5h"), rule("a", repeat_after="0.0001ms"),
    rule("b", above="150%"), rule("b", above="100%"), rule("b", above="0.05"),
    rule("b", above=0.5), rule("b", above=5), rule("b", above="${R}"), rule("b", above="5"),
    rule("b", above="12.5 %"), rule("b", above=".5"), rule("b", above="five"),
    rule("c", cron="0 * * * *"), rule("c", every=DROP, cron="0 * * * *"),
    rule("c", every=DROP, cron="0 * * * *", timezone="UTC"), rule("c", timezone="UTC"),
    rule("c", every=DROP), rule("c", every=DROP, schedule="flow"), rule("c", grace="0s"),
    rule("c", every=None, schedule="flow"), rule("d", in_a_row=3), rule("d", above=DROP),
    rule("d", above=DROP, window=DROP, in_a_row=3), rule("d", above=None, in_a_row=2),
    rule("d", window=0), rule("d", window="${N}"),
    rule("a", status=["failure"]), rule("a", status="failed"), rule("a", status=[]),
    rule("a", status=["Failed", "inProgress", "WAITING"]), rule("a", status=["${ST}"]),
    top(sandboxes="prod, dev"), top(sandboxes=["prod", "dev"]), top(sandboxes=[]),
    top(sandboxes=["prod dev"]), rule("g", flows={"sandbox": "prod, dev"}),
    rule("g", flows={"sandbox": "dev", "id": ["a", "b"]}), rule("g", flows={"id": "a,b"}),
    rule("g", flows=None), rule("g", flows={"nam": "x"}),
    rule("a", severity="${SEV}"), rule("a", severity="fatal"), rule("a", severity=None),
    top(late_arrival="0s"), top(late_arrival="30m"), top(late_arrival=30),
    top(diagnostics={"enabled": True, "budget": 5}), top(diagnostics={"budget": 2000}),
    top(diagnostics={"budget": "${B}", "show_values": "${ON}"}), top(diagnostics={"x": 1}),
    top(aep_ui={"org": "mycompany"}), top(aep_ui={"org": "my company"}), top(aep_ui={}),
    top(slack_actions={"allow": ["U012ABCDEF", "S0123GROUP"], "retry": ["U012ABCDEF"]}),
    top(slack_actions={"retry": ["bob"]}), top(slack_actions={"allow": "U012ABCDEF"}),
    top(digest={"cron": "0 8 * * 1-5", "timezone": "UTC", "channels": ["ops"]}),
    top(digest={"cron": "0 8 * * 1-5"}), top(digest={"cron": "0 8 * * *", "channels": "ops"}),
    top(inhibit=[{"source": "a", "target": ["b", "f"]}]), top(inhibit=[{"source": "a"}]),
    top(inhibit=[{"source": "a", "target": []}]), top(inhibit=[{"source": "a", "target": "b"}]),
    rule("a", runbook="https://wiki.example.com/run-failed"), rule("a", runbook="ftp://x"),
    rule("a", runbook="${RB}"), rule("a", runbook="javascript:alert(1)"),
    rule("a", actions=["retry"]), rule("a", actions=["nope"]), rule("a", actions="retry"),
    rule("a", name=" a2"), rule("a", name="${NAME}"), rule("a", name="x" * 201),
    rule("a", name=""), rule("a", owner="${1BAD}"), rule("a", owner="<@U1> ${NAME}"),
    top(unknown_key=1), rule("a", treshold=5), rule("a", type="statuss"),
    top(defaults={"channels": []}), top(defaults=DROP), top(defaults={"severity": "info"}),
    top(defaults=None), top(defaults={"channels": "ops"}), rule("a", channels=[]),
    rule("a", channels="ops"), rule("a", channels=None), rule("b", min_input=-1),
    rule("b", min_input="${M}"), rule("b", min_input="3"), top(retention="1h30m"),
    top(lookback="5"), top(lookback="0s"), rule("e", above="0.5s"), rule("e", above="5%"),
    top(poll_every="${N}m"), top(rules=[]), top(rules=DROP), top(channels=None),
    top(monitoring={"channels": ["ops"], "after": "30m"}), top(monitoring={"after": "0m"}),
    top(timezone="UTC"), top(templates=None), top(sandboxes="${CH}"),
]  # fmt: skip


def verdicts(tmp_path: Path, data: dict[str, Any]) -> tuple[bool, bool, str]:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_rules(path, environ=ENV)
        checked, problems = True, ""
    except ConfigError as exc:
        checked, problems = False, "; ".join(exc.problems or [str(exc)])
    schema_ok = VALIDATOR.is_valid(yaml.safe_load(text))
    return checked, schema_ok, f"{text}\ncheck: {problems or 'ok'}"


def test_the_base_file_is_valid_for_both(tmp_path):
    checked, schema_ok, shown = verdicts(tmp_path, BASE)
    assert checked and schema_ok, shown


@pytest.mark.parametrize("index", range(len(MUTATIONS)))
def test_each_mutation_gets_the_same_verdict(tmp_path, index):
    data = copy.deepcopy(BASE)
    MUTATIONS[index](data)
    checked, schema_ok, shown = verdicts(tmp_path, data)
    assert checked == schema_ok, shown


def test_200_seeded_mixes_get_the_same_verdict(tmp_path):
    generator = random.Random(20240501)
    outcomes = {True: 0, False: 0}
    for _ in range(200):
        data = copy.deepcopy(BASE)
        for mutation in generator.sample(MUTATIONS, generator.randint(1, 4)):
            mutation(data)
        checked, schema_ok, shown = verdicts(tmp_path, data)
        assert checked == schema_ok, shown
        outcomes[checked] += 1
    assert min(outcomes.values()) > 20, outcomes  # both verdicts well represented


# What JSON Schema cannot say: the schema accepts, rules check refuses, the schema's
# description names it.
CANNOT_SAY = [
    (rule("a", channels=["nowhere"]), "channel names"),
    (top(defaults={"channels": ["nowhere"]}), "channel names"),
    (top(digest={"cron": "0 8 * * *", "channels": ["nowhere"]}), "digest"),
    (rule("b", name="a"), "rule names are unique"),
    (top(inhibit=[{"source": "a", "target": ["nosuch"]}]), "inhibit names existing rules"),
    (top(inhibit=[{"source": "a", "target": ["a"]}]), "no rule inhibits itself"),
    (rule("a", template="no-such-dir"), "template directories exist"),
    (top(timezone="Europe/Pariss"), "time zones are IANA names"),
    (rule("c", every=DROP, cron="0 0 30 2 *"), "cron expressions are valid and fire"),
    (rule("c", every=DROP, cron="61 * * * *"), "cron expressions are valid"),
    (top(lookback="99999999999999d"), "durations are at most 3650d"),
    (top(poll_every="${UNSET}"), "is set in the environment"),
    (top(group_at="${SEV}"), "its value is valid"),
]


@pytest.mark.parametrize("index", range(len(CANNOT_SAY)))
def test_what_the_schema_cannot_say_is_named_in_its_description(tmp_path, index):
    mutation, words = CANNOT_SAY[index]
    data = copy.deepcopy(BASE)
    mutation(data)
    checked, schema_ok, shown = verdicts(tmp_path, data)
    assert schema_ok and not checked, shown
    assert words in SCHEMA["description"]
