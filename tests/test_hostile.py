"""Hostile input: property tests that feed random and mutated Flow Service
payloads (Adobe's samples in flowbot/samples/) through parsing and evaluation, and
random or mangled rules.yaml documents through the loader. Parsing may only refuse with
ValueError, evaluation must judge whatever parsed without tripping its crash guard, and
every invalid rules file gets a ConfigError located at file:line.

Examples per property: a few dozen in `make test`, many more with FLOWBOT_SOAK=1."""

from __future__ import annotations

import copy
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import SOAK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbot.aep.parse import objects_in, parse_flow, parse_run
from flowbot.errors import ConfigError
from flowbot.evaluate import evaluate
from flowbot.rules import load_rules

SAMPLES = Path(__file__).resolve().parents[1] / "flowbot" / "samples"
EXAMPLES = 1000 if SOAK else 60
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
# Also selected by `make soak` (-m slow), where FLOWBOT_SOAK=1 raises the examples.
pytestmark = pytest.mark.slow

OBJECTS = [obj for path in sorted(SAMPLES.glob("*.json"))
           for obj in objects_in(json.loads(path.read_text()))]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63), st.floats(allow_nan=True),
    st.sampled_from(["", "-1", "1700000000000", "1700000000", "failed", "SUCCESS", "5%", "NaN"]),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def paths(obj, prefix=()):
    """Every key path inside a JSON value."""
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from paths(value, (*prefix, i))


@st.composite
def mutated(draw):
    """A sample object with a few of its values replaced, deleted or retyped."""
    obj = copy.deepcopy(draw(st.sampled_from(OBJECTS)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(list(paths(obj))))
        if not where:
            continue
        parent = obj
        for key in where[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[where[-1]]
        else:
            parent[where[-1]] = draw(json_values)
    return obj


payloads = st.one_of(mutated(), json_values, st.dictionaries(st.sampled_from(
    ["id", "flowId", "metrics", "activities", "etag", "name", "scheduleParams",
     "lastRunDetails", "state", "sandboxName"]), json_values))  # fmt: skip


class Guard(logging.Handler):
    """Collects error records of flowbot's loggers (the crash guard logs one per trip)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@PROFILE
@given(payloads)
def test_parsing_any_payload_gives_a_value_or_a_value_error(payload):
    for parse in (parse_run, parse_flow):
        try:
            parse(payload)
        except ValueError:
            pass


RULES = """
sandboxes: [prod]
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
rules:
  - {name: failed, type: status, status: [failed, inProgress]}
  - {name: records, type: failed_records, above: 5%, min_input: 10}
  - {name: flaky, type: failed_runs, above: 50%, window: 5}
  - {name: slow, type: duration, above: 1h}
  - {name: codes, type: error_code, codes: ["CONNECTOR-*", "INGEST-1212-400"]}
  - {name: missing, type: missing_run, schedule: flow, grace: 15m}
  - {name: hourly, type: missing_run, every: 1h}
"""


def test_evaluating_mutated_runs_and_flows_never_trips_the_crash_guard(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES)
    ruleset = load_rules(tmp_path / "rules.yaml")
    guard = Guard()
    logging.getLogger("flowbot").addHandler(guard)

    @PROFILE
    @given(st.lists(payloads, min_size=1, max_size=6), st.integers(-(10**7), 10**7))
    def judge(items, offset):
        runs, flows = [], []
        for item in items:
            for parse, bucket in ((parse_run, runs), (parse_flow, flows)):
                try:
                    bucket.append(parse(item))
                except ValueError:
                    pass
        history = {}
        for run in runs:
            history.setdefault(run.flow_id or "none", []).append(run)
        now = NOW + timedelta(seconds=offset)
        evaluation = evaluate(ruleset, flows, history, {r.id for r in runs}, now)
        assert evaluation.skipped == ()
        assert guard.records == [], guard.records[0].getMessage()

    try:
        judge()
    finally:
        logging.getLogger("flowbot").removeHandler(guard)


VALID = """\
sandboxes: [prod]
poll_every: 5m
lookback: 24h
channels:
  ops:
    slack: "#data-ops"
  audit:
    file: alerts.jsonl
defaults:
  channels: [ops]
  severity: warning
  repeat_after: 4h
rules:
  - name: run-failed
    type: status
    status: [failed]
  - name: bad-records
    type: failed_records
    above: 5%
    min_input: 100
    flows: {name: "crm-*"}
  - name: hourly
    type: missing_run
    every: 1h
    grace: 15m
    channels: [ops, audit]
"""
TOKENS = ["", " ", ":", "- ", "[", "]", "{", "}", "\t", "${X}", "5%", "-1", "2h", "nope",
          "status", "rules", "channels", "type", "&a", "*a", "!!python/object", "'", '"',
          "\n", "above", "1e999", "~", "0x10", "yes"]  # fmt: skip


@st.composite
def mangled_rules(draw):
    lines = VALID.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "insert", "replace", "append"]))
        if action == "drop":
            del lines[i]
        elif action == "insert":
            lines.insert(i, draw(st.sampled_from(TOKENS)) + draw(st.sampled_from(TOKENS)))
        elif action == "replace":
            words = lines[i].split(" ")
            j = draw(st.integers(0, len(words) - 1))
            words[j] = draw(st.sampled_from(TOKENS) | st.text(max_size=6))
            lines[i] = " ".join(words)
        else:
            lines[i] += draw(st.sampled_from(TOKENS))
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


rules_documents = st.one_of(mangled_rules(), st.text(max_size=200))


@PROFILE
@given(rules_documents)
def test_every_rules_document_loads_or_gets_a_located_error(tmp_path, text):
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_rules(path, environ={})
    except ConfigError as exc:
        located = re.compile(re.escape(str(path)) + r":\d+")
        assert exc.problems, str(exc)
        for problem in exc.problems:
            if "the file is empty" in problem:  # nothing to point at: the file is named
                assert str(path) in problem
                continue
            assert located.search(problem), problem
