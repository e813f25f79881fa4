"""load_rules: the example file, defaults, selectors, durations, ratios, and every
class of error message (table-driven over tests/testdata/rules/*.yaml)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from flowbot.errors import ConfigError
from flowbot.models import Flow
from flowbot.rules import (
    Channel,
    Selector,
    load_rules,
    parse_duration,
    parse_ratio,
    ruleset_json_schema,
)

ROOT = Path(__file__).resolve().parent.parent
BAD = sorted((Path(__file__).parent / "testdata" / "rules").glob("*.yaml"))
SECRET = "hunter2-do-not-print"


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """\
channels:
  ops: {slack: "#ops"}
defaults: {channels: [ops]}
rules:
  - {name: failed, type: status, status: [failed]}
"""


def problems_of(path: Path | str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_rules(path, environ=environ or {})
    return caught.value.problems


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_file_gives_each_expected_message(path):
    expected = [
        line.removeprefix("# expect: ").replace("{file}", str(path))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("# expect: ")
    ]
    assert expected, f"{path} has no '# expect:' lines"
    started = time.monotonic()
    problems = problems_of(path, {"FLOWBOT_TEST_SECRET": SECRET})
    assert time.monotonic() - started < 1
    assert problems == expected
    assert not any(SECRET in p for p in problems)


def test_example_rules_file_loads_with_every_rule_type():
    ruleset = load_rules(ROOT / "rules.yaml", environ={})
    types = {rule.type for rule in ruleset.rules}
    assert types == {
        "status",
        "failed_records",
        "failed_runs",
        "missing_run",
        "duration",
        "error_code",
        "zero_records",
    }
    assert ruleset.warnings == ()
    assert ruleset.channels["audit"] == Channel("audit", "file", str(ROOT / "alerts.jsonl"))
    assert ruleset.channels["oncall"].target == ("oncall@example.com",)
    assert (
        (ROOT / "rules.yaml")
        .read_text()
        .startswith("# yaml-language-server: $schema=./rules.schema.json\n")
    )


def test_defaults_apply_unless_the_rule_says_otherwise(tmp_path):
    path = write(
        tmp_path,
        """\
channels: {a: {terminal: true}, b: {webhook: "https://hooks.example/x"}}
defaults: {channels: [a], severity: critical, repeat_after: 1h, send_resolved: false}
rules:
  - {name: one, type: zero_records}
  - {name: two, type: zero_records, channels: [b], severity: info, repeat_after: 2d,
     send_resolved: true, enabled: false, owner: "<@U123>"}
""",
    )
    ruleset = load_rules(path, environ={})
    one, two = ruleset.rules
    assert (one.channels, one.severity, one.repeat_after, one.send_resolved) == (
        ("a",),
        "critical",
        timedelta(hours=1),
        False,
    )
    assert (two.channels, two.severity, two.repeat_after, two.send_resolved) == (
        ("b",),
        "info",
        timedelta(days=2),
        True,
    )
    assert (two.enabled, two.owner) == (False, "<@U123>")
    assert ruleset.rule("two") is two and ruleset.rule("three") is None


def test_top_level_defaults(tmp_path):
    ruleset = load_rules(write(tmp_path, MINIMAL), environ={})
    assert ruleset.sandboxes == ("prod",)
    assert ruleset.poll_every == timedelta(minutes=5)
    assert ruleset.lookback == timedelta(hours=24)
    assert (ruleset.group_at, ruleset.timezone) == (10, "UTC")
    assert ruleset.retention == timedelta(days=30)
    assert ruleset.templates is None
    assert ruleset.monitoring.channels == () and ruleset.monitoring.after == timedelta(minutes=15)
    rule = ruleset.rules[0]
    assert (rule.severity, rule.repeat_after, rule.send_resolved, rule.enabled) == (
        "warning",
        timedelta(hours=4),
        True,
        True,
    )
    assert rule.is_run_level
    assert ruleset.source == tmp_path / "rules.yaml"


def test_paths_resolve_against_the_rules_file_directory(tmp_path):
    (tmp_path / "tpl" / "custom").mkdir(parents=True)
    path = write(
        tmp_path,
        """\
templates: tpl
monitoring: {channels: [log], after: 30m, heartbeat_url: "https://hc.example/ping/x"}
channels: {log: {file: out/alerts.jsonl}}
defaults: {channels: [log]}
rules:
  - {name: a, type: zero_records, template: tpl/custom}
""",
    )
    ruleset = load_rules(path, environ={})
    assert ruleset.channels["log"].target == str(tmp_path / "out" / "alerts.jsonl")
    assert ruleset.templates == tmp_path / "tpl"
    assert ruleset.rules[0].template == tmp_path / "tpl" / "custom"
    assert ruleset.monitoring.after == timedelta(minutes=30)
    assert ruleset.monitoring.heartbeat_url == "https://hc.example/ping/x"


def test_a_missing_template_directory_is_an_error(tmp_path):
    path = write(
        tmp_path, MINIMAL.replace("status: [failed]}", "status: [failed], template: nope}")
    )
    [problem] = problems_of(path)
    assert problem.startswith("rules[0].template: template directory 'nope' does not exist")


def test_env_references_expand_and_undefined_ones_name_the_variable_only(tmp_path):
    path = write(
        tmp_path,
        """\
channels:
  ops: {slack: "${CHANNEL}"}
  hook: {webhook: "https://hooks.example/${TOKEN}"}
defaults: {channels: [ops, hook]}
rules: [{name: a, type: zero_records}]
""",
    )
    ruleset = load_rules(path, environ={"CHANNEL": "#from-env", "TOKEN": SECRET})
    assert ruleset.channels["ops"].target == "#from-env"
    assert ruleset.channels["hook"].target == f"https://hooks.example/{SECRET}"
    problems = problems_of(path, {"CHANNEL": "#ok", "OTHER": SECRET})
    assert problems == [
        f"environment variable TOKEN is not set; channels.hook.webhook uses it ({path}:3:19)"
    ]


def test_poll_every_below_a_minute_is_a_warning(tmp_path):
    ruleset = load_rules(write(tmp_path, "poll_every: 5s\n" + MINIMAL), environ={})
    assert ruleset.poll_every == timedelta(seconds=5)
    assert any("poll_every: 5s is below a minute" in w for w in ruleset.warnings)


def test_an_unknown_status_is_an_error_with_did_you_mean(tmp_path):
    path = write(tmp_path, MINIMAL.replace("[failed]", "[Success, failure]"))
    [problem] = problems_of(path)
    assert problem.startswith("rules[0].status[1]: 'failure' is not a run status; one of success")
    assert problem.endswith(f"did you mean 'failed'? ({path}:5:52)")


@pytest.mark.parametrize("status", ["failed", "FAILED", "Failed", "inProgress", "Processing"])
def test_statuses_of_sources_and_destinations_in_any_case(tmp_path, status):
    rule = load_rules(write(tmp_path, MINIMAL.replace("[failed]", f"[{status}]")), environ={})
    assert rule.rules[0].states == {status.lower()}


def test_an_unused_channel_is_a_warning(tmp_path):
    text = MINIMAL + "  - {name: b, type: zero_records}\n"
    text = text.replace('ops: {slack: "#ops"}', 'ops: {slack: "#ops"}\n  spare: {terminal: true}')
    ruleset = load_rules(write(tmp_path, text), environ={})
    assert any(
        w.startswith("channels.spare: defined but no rule sends to it") for w in ruleset.warnings
    )


def test_selector_matches_ids_globs_and_sandboxes_together():
    flow = Flow(id="f1", name="crm-daily", sandbox="prod")
    assert Selector().matches(flow)
    assert Selector(names=("crm-*",)).matches(flow)
    assert not Selector(names=("CRM-*",)).matches(flow)  # case-sensitive
    assert Selector(ids=("f0", "f1")).matches(flow)
    assert not Selector(ids=("f2",)).matches(flow)
    assert not Selector(names=("crm-*",), sandboxes=("dev",)).matches(flow)
    assert Selector(ids=("f1",), names=("*daily",), sandboxes=("prod",)).matches(flow)


def test_selector_accepts_a_string_or_a_list(tmp_path):
    text = MINIMAL.replace(
        "status: [failed]}", 'status: [failed], flows: {name: "crm-*", id: [a, b]}}'
    )
    rule = load_rules(write(tmp_path, text), environ={}).rules[0]
    assert rule.flows == Selector(ids=("a", "b"), names=("crm-*",))


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("rules:", "sandboxes: prod, dev\nrules:", "sandboxes: must be a list, like [prod, dev]"),
        ("status: [failed]", "status: failed", "rules[0].status: must be a list, like [failed]"),
        ("channels: [ops]", "channels: ops", "defaults.channels: must be a list, like [ops]"),
        ("type: status", "type: status, flows: {sandbox: 'prod, dev'}",
         "rules[0].flows.sandbox[0]: a sandbox name has letters, digits"),
    ],
)  # fmt: skip
def test_a_scalar_where_a_list_belongs_is_an_error(tmp_path, before, after, expected):
    problems = problems_of(write(tmp_path, MINIMAL.replace(before, after, 1)))
    assert [p[: len(expected)] for p in problems] == [expected]


def test_a_list_from_the_environment_is_written_as_a_list(tmp_path):
    text = 'sandboxes: ["${SANDBOX}"]\n' + MINIMAL.replace("[failed]", '["${STATUS}"]')
    ruleset = load_rules(write(tmp_path, text), environ={"SANDBOX": "dev", "STATUS": "Failed"})
    assert (ruleset.sandboxes, ruleset.rules[0].status) == (("dev",), ("Failed",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("4h", timedelta(hours=4)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["5", 5, "5 minutes", "m", "", "-5m", "5M", True])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5%", 0.05),
        ("0.05", 0.05),
        (0.05, 0.05),
        ("100%", 1.0),
        ("0%", 0.0),
        (1, 1.0),
        ("12.5 %", 0.125),
    ],
)
def test_parse_ratio(text, expected):
    assert parse_ratio(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["150%", "-1%", 5, 1.01, "five", "", True])
def test_parse_ratio_refuses(text):
    with pytest.raises(ValueError):
        parse_ratio(text)


def test_a_five_megabyte_file_fails_fast(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("rules: []\n" + "# padding\n" * 500_000, encoding="utf-8")
    started = time.monotonic()
    [problem] = problems_of(path)
    assert time.monotonic() - started < 1
    assert "is refused" in problem and "5,000,010 bytes" in problem


def test_an_alias_bomb_is_refused_within_a_second(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    path = write(tmp_path, "\n".join(lines) + "\nrules: []\n")
    started = time.monotonic()
    [problem] = problems_of(path)
    assert time.monotonic() - started < 1
    assert "alias bomb" in problem


def test_many_aliases_are_refused(tmp_path):
    text = "x: &x 1\nl: [" + ", ".join(["*x"] * 101) + "]\nrules: []\n"
    [problem] = problems_of(write(tmp_path, text))
    assert "more than 100 YAML aliases" in problem


def test_unknown_top_level_keys_are_errors_even_when_they_hold_anchors(tmp_path):
    text = 'x-crm: &crm {name: "crm-*"}\n' + MINIMAL
    [problem] = problems_of(write(tmp_path, text))
    assert problem.startswith("unknown key 'x-crm' in the top level")


def test_a_few_aliases_and_merge_keys_work(tmp_path):
    text = """\
channels: {ops: {terminal: true}}
defaults: {channels: [ops]}
rules:
  - &base {name: a, type: failed_records, above: 5%, flows: &crm {name: "crm-*"}}
  - {<<: *base, name: b, above: 10%}
  - {name: c, type: zero_records, flows: *crm}
"""
    a, b, c = load_rules(write(tmp_path, text), environ={}).rules
    assert (a.above, b.above) == (0.05, 0.10)
    assert b.flows == c.flows == Selector(names=("crm-*",))


def test_a_file_that_is_not_utf8_or_missing(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"rules: []\n# caf\xe9\n")
    [problem] = problems_of(path)
    assert "not UTF-8 text" in problem
    [problem] = problems_of(tmp_path / "nope.yaml")
    assert problem.endswith("nope.yaml: no such file")


def test_all_problems_are_reported_at_once_with_a_count(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_rules(BAD[0], environ={})
    assert str(caught.value) == f"{BAD[0]}: {len(caught.value.problems)} problems"
    assert len(caught.value.problems) > 1


def test_committed_schema_equals_the_generated_one():
    import json

    committed = json.loads((ROOT / "rules.schema.json").read_text(encoding="utf-8"))
    assert committed == ruleset_json_schema()
    rule_types = {
        ref["$ref"].split("/")[-1] for ref in committed["properties"]["rules"]["items"]["oneOf"]
    }
    assert len(rule_types) == 7
    assert committed["additionalProperties"] is False


def test_a_yaml_boolean_where_text_is_expected_suggests_quotes(tmp_path):
    [problem] = problems_of(write(tmp_path, MINIMAL.replace("name: failed", "name: off")))
    assert problem.startswith("rules[0].name: must be text, got False (YAML reads yes/no/on/off")


V02 = """\
late_arrival: 30m
aep_ui: {org: mycompany}
diagnostics: {enabled: true, show_values: false, budget: 5}
inhibit:
  - {source: failed, target: [empty]}
slack_actions: {allow: [U012ABCDEF, S0123GROUP], retry: [U012ABCDEF]}
digest: {cron: "0 8 * * 1-5", timezone: Europe/Paris, channels: [ops]}
"""


def test_the_0_2_keys_reach_the_ruleset(tmp_path):
    from flowbot.rules import AepUi, Diagnostics, Digest, Inhibit, SlackActions

    text = V02 + MINIMAL.replace(
        "status: [failed]}",
        "status: [failed], runbook: 'https://wiki.example.com/f', actions: [retry]}",
    )
    ruleset = load_rules(write(tmp_path, text + "  - {name: empty, type: zero_records}\n"), {})
    assert ruleset.late_arrival == timedelta(minutes=30)
    assert ruleset.aep_ui == AepUi("mycompany")
    assert ruleset.diagnostics == Diagnostics(enabled=True, show_values=False, budget=5)
    assert ruleset.inhibit == (Inhibit("failed", ("empty",)),)
    assert ruleset.slack_actions == SlackActions(("U012ABCDEF", "S0123GROUP"), ("U012ABCDEF",))
    assert ruleset.digest == Digest("0 8 * * 1-5", "Europe/Paris", ("ops",))
    rule = ruleset.rules[0]
    assert (rule.runbook, rule.actions) == ("https://wiki.example.com/f", ("retry",))


def test_a_0_1_file_gets_the_0_2_defaults(tmp_path):
    ruleset = load_rules(write(tmp_path, MINIMAL), environ={})
    assert ruleset.late_arrival == timedelta(hours=1)
    assert (ruleset.aep_ui, ruleset.digest, ruleset.inhibit) == (None, None, ())
    assert not ruleset.diagnostics.enabled and ruleset.diagnostics.budget == 20
    assert ruleset.slack_actions.allow == () and ruleset.rules[0].runbook is None


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("inhibit: [{source: failed, target: [faild]}]\n",
         "inhibit[0].target[0]: no rule named 'faild'; did you mean 'failed'?"),
        ("inhibit: [{source: failed, target: [failed]}]\n",
         "inhibit[0]: rule 'failed' cannot inhibit itself"),
        ("digest: {cron: '0 0 30 2 *', channels: [ops]}\n",
         "digest.cron: cron expression '0 0 30 2 *' never fires (no such date)"),
        ("digest: {cron: '0 8 * * *', channels: [opps]}\n",
         "digest.channels[0]: channel 'opps' is not defined under channels"),
        ("slack_actions: {retry: [bob]}\n",
         "slack_actions.retry[0]: not a Slack user (U…, W…) or user-group (S…) id: 'bob'"),
        ("lookback: 99999999999999d\n",
         "lookback: 99999999999999d is longer than the longest duration flowbot takes (3650d"),
    ],
)  # fmt: skip
def test_0_2_keys_and_bounds_are_checked(tmp_path, yaml_text, expected):
    [problem] = problems_of(write(tmp_path, yaml_text + MINIMAL))
    assert problem.startswith(expected)


def test_a_cron_that_never_fires_is_refused(tmp_path):
    text = MINIMAL + "  - {name: m, type: missing_run, cron: '0 0 30 2 *'}\n"
    [problem] = problems_of(write(tmp_path, text))
    assert problem.startswith("rules[1].cron: cron expression '0 0 30 2 *' never fires")
    leap = MINIMAL + "  - {name: m, type: missing_run, cron: '0 0 29 2 *'}\n"
    assert load_rules(write(tmp_path, leap), environ={}).rules[1].cron == "0 0 29 2 *"


def test_numbers_and_booleans_from_the_environment_but_not_quoted_in_the_file(tmp_path):
    text = "group_at: ${N}\npoll_every: ${P}\n" + MINIMAL.replace(
        "status: [failed]}", "status: [failed], enabled: '${ON}'}"
    )
    ruleset = load_rules(write(tmp_path, text), {"N": "3", "P": "2m", "ON": "no"})
    assert (ruleset.group_at, ruleset.poll_every) == (3, timedelta(minutes=2))
    assert ruleset.rules[0].enabled is False
    quoted = write(tmp_path, 'group_at: "3"\n' + MINIMAL)
    assert problems_of(quoted)[0].startswith("group_at: must be a whole number, got '3'")


def test_a_rule_type_is_never_taken_from_the_environment(tmp_path):
    text = MINIMAL.replace("type: status", "type: '${T}'")
    [problem] = problems_of(write(tmp_path, text), {"T": "status"})
    assert problem.startswith("rules[0].type: a rule's type is written out")


def test_a_control_character_after_non_ascii_text_is_placed_on_its_own_line(tmp_path):
    text = "# " + "日本語" * 30 + "\nx: \x01\n" + MINIMAL
    [problem] = problems_of(write(tmp_path, text))
    assert problem.endswith(":2:4: invalid YAML: control characters are not allowed")
