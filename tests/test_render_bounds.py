"""Templates and records that would grow without bound: refused for that message only,
with the fallback body and one log line; `rules check` catches what it can."""

from __future__ import annotations

import json
import logging
import time
import tracemalloc
from dataclasses import replace

import pytest

from flowbot.models import RunError
from flowbot.notifiers.sample import sample_notices
from flowbot.render import check_templates, render
from flowbot.sandbox import MAX_OUTPUT, RENDER_SECONDS

BLOWUPS = [
    "{{ 'x' * 300000000 }}",
    "{{ 300000000 * 'x' }}",
    "{{ ['x'] * 300000000 }}",
    "{{ 'x'.ljust(300000000) }}",
    "{{ 'x'|center(300000000) }}",
    "{{ '%300000000d' % 1 }}",
    "{{ '%300000000d'|format(1) }}",
    "{{ '{:>300000000}'.format(1) }}",
    "{{ 2 ** 300000000 }}",
    "{{ ('y' * 200000)|replace('y', 'zz' * 1000) }}",
    "{{ ('y' * 200000).replace('', 'zz' * 1000) }}",
    "{{ ('-' * 200000).join(['a'] * 200000) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}"
    "{% endfor %}{{ ns.n }}",
    "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
]


def override(tmp_path, text: str):
    (tmp_path / "terminal").mkdir(exist_ok=True)
    (tmp_path / "terminal" / "firing.txt.j2").write_text(text)
    return tmp_path


@pytest.mark.parametrize("template", BLOWUPS)
def test_a_template_that_would_blow_up_falls_back_quickly_and_small(tmp_path, caplog, template):
    tracemalloc.start()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="flowbot.render"):
        body = render(
            sample_notices(), "firing", "terminal", templates_dir=override(tmp_path, template)
        )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - started < RENDER_SECONDS
    assert peak < 40 * MAX_OUTPUT  # a few copies of the bound, never the blow-up
    assert body["text"].startswith("[CRITICAL] too-many-bad-records firing: crm-daily-import")
    [record] = caplog.records
    assert "terminal/firing" in record.getMessage() and "sending a plain message" in (
        record.getMessage()
    )
    assert "SecurityError" in record.getMessage()


def test_a_template_that_loops_too_long_is_stopped_and_the_next_message_renders(tmp_path, caplog):
    slow = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="flowbot.render"):
        body = render(
            sample_notices(), "firing", "terminal", templates_dir=override(tmp_path, slow)
        )
    assert RENDER_SECONDS <= time.monotonic() - started < RENDER_SECONDS + 3
    assert body["text"].startswith("[CRITICAL] too-many-bad-records firing")
    assert "RenderTimeoutError" in caplog.text and "longer than 2s" in caplog.text
    after = render(sample_notices(), "firing", "terminal")  # the default: unaffected
    assert after["text"].startswith("== FIRING [CRITICAL]")


def test_normal_templates_stay_well_inside_the_bounds():
    started = time.monotonic()
    for _ in range(20):
        render(sample_notices("grouped"), "grouped", "email")
    assert time.monotonic() - started < RENDER_SECONDS


def test_rules_check_reports_a_blow_up_with_file_and_line(tmp_path):
    override(tmp_path, "fine\n{{ 'x' * 300000000 }}\n")
    [problem] = check_templates(tmp_path)
    assert problem.startswith(f"{tmp_path / 'terminal' / 'firing.txt.j2'}:2:")
    assert "bound" in problem


def test_a_file_record_of_10000_errors_stays_small_and_says_how_many_were_left_out():
    [notice] = sample_notices()
    errors = tuple(RunError(f"E-{i}", "m" * 5000, record_count=i) for i in range(10_000))
    run = replace(notice.finding.run, errors=errors, activities=())
    notice = replace(notice, finding=replace(notice.finding, run=run))
    record = render([notice], "firing", "file")
    size = len(json.dumps(record))
    assert size < 150_000, size
    assert record["errors_total"] == 10_000 and record["errors_more"] == 9_950
    assert record["errors"][0]["code"] == "E-0" and len(record["errors"]) == 50
    grouped = render([notice] * 300, "grouped", "file")
    assert len(grouped["alerts"]) == 100 and grouped["alerts_more"] == 200
