"""Every rule type has all its places (CONTRIBUTING.md, "Adding a rule type"): its class
in the `Rule` union, its spec in RULE_MODELS and the published schema, an
example in README.md that loads as that class, a judge in evaluate.py and a preview
sample in notifiers/sample.py. A type with a place missing fails here, by name.

The README's "One example per type" block is the fixture: each type is exercised
through the rule the README shows for it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Literal, get_args

import pytest

from flowbot.evaluate import check_run, evaluate
from flowbot.notifiers.sample import failed_run, sample_finding, sample_flow, sample_run
from flowbot.rule_types import RULE_TYPES, Rule, RunLevelRule, RunRule
from flowbot.rules import RuleSet, load_rules, ruleset_json_schema
from flowbot.rules_parts import Selector
from flowbot.rules_schema import RULE_MODELS
from flowbot.spec import hints

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(RULE_TYPES)


def readme_examples() -> str:
    """The YAML of README.md's "One example per type" block."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"One example per type:\s*```yaml\n(.*?)```", readme, re.S)
    assert found, 'README.md has no "One example per type:" yaml block'
    return found.group(1)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> tuple[RuleSet, dict[str, Rule]]:
    """README's example rules, loaded; and the first rule of each type."""
    path = tmp_path_factory.mktemp("readme") / "rules.yaml"
    head = "channels: {ops: {terminal: true}}\ndefaults: {channels: [ops]}\n"
    path.write_text(head + readme_examples(), encoding="utf-8")
    ruleset = load_rules(path)
    first: dict[str, Rule] = {}
    for rule in ruleset.rules:
        first.setdefault(rule.type, rule)
    return ruleset, first


def test_the_union_and_the_schema_models_name_the_same_types():
    assert len(get_args(Rule)) == len(RULE_TYPES) >= 7
    assert set(RULE_MODELS) == set(RULE_TYPES)
    run_level = {cls for cls in get_args(Rule) if issubclass(cls, RunRule)}
    assert run_level == set(get_args(RunLevelRule))


@pytest.mark.parametrize("name", NAMES)
def test_every_rule_type_has_a_schema_model_in_the_published_schema(name):
    model = RULE_MODELS[name]
    assert hints(model)["type"] == Literal[name]
    items = ruleset_json_schema()["properties"]["rules"]["items"]
    assert {"$ref": f"#/$defs/{model.__name__}"} in items["oneOf"]
    assert items["discriminator"]["mapping"][name] == f"#/$defs/{model.__name__}"


@pytest.mark.parametrize("name", NAMES)
def test_every_rule_type_has_a_readme_example_that_loads_as_its_class(name, examples):
    _, first = examples
    assert name in first, f"README.md shows no example of type {name}"
    rule = first[name]
    assert type(rule) is RULE_TYPES[name] and rule.type == name


@pytest.mark.parametrize("name", NAMES)
def test_every_rule_type_has_a_judge(name, examples):
    ruleset, first = examples
    rule = first[name]
    flow = sample_flow()
    bad, good = failed_run(), sample_run()
    runs = [replace(bad, id=f"{bad.id[:-2]}{i:02d}") for i in range(12)] + [good]
    now = (bad.completed_at or bad.started_at) + timedelta(minutes=5)
    judged = replace(
        ruleset, rules=(replace(rule, flows=Selector()),), lookback=timedelta(days=36500)
    )
    evaluation = evaluate(judged, [flow], {flow.id: runs}, {r.id for r in runs}, now)
    assert evaluation.skipped == (), f"no judge for {name}: {evaluation.skipped}"
    assert evaluation.findings or evaluation.clear or evaluation.recovered


@pytest.mark.parametrize("name", NAMES)
def test_every_rule_type_has_a_preview_sample_the_evaluator_agrees_with(name, examples):
    _, first = examples
    rule = first[name]
    finding, now = sample_finding(rule)
    assert (finding.rule, finding.rule_type) == (rule.name, name)
    assert not finding.reason.startswith("sample alert for rule"), f"no preview sample for {name}"
    if isinstance(rule, RunRule):
        assert finding.run is not None
        assert check_run(rule, finding.run, now) is not None
