"""`flowbot report`: the figures of a seeded store, in each format (goldens), and the
command itself on a real database file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from seeded_store import HOSTILE, NOW, seed

from flowbot import report

GOLDEN = Path(__file__).parent / "golden" / "report"
UPDATE = os.environ.get("FLOWBOT_UPDATE_GOLDEN") == "1"


@pytest.fixture
def week(tmp_path):
    store = seed(tmp_path / "flowbot.db")
    try:
        yield report.gather(store, NOW - timedelta(days=7), NOW, None)
    finally:
        store.close()


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_the_figures_count_what_the_store_holds(week):
    by = {f.sandbox: f for f in week.sandboxes}
    prod, dev = by["prod"], by["dev"]
    assert (prod.runs, prod.failures) == (10, 4)  # the run 9 days ago is out of the period
    assert prod.records_lost == 40 + 500 + 10 + 5
    assert (prod.opened, prod.resolved) == (2, 1)
    assert prod.resolve_median == timedelta(hours=10)
    assert prod.still_red == (HOSTILE,)
    assert [f.name for f in prod.flaky] == ["web-events", HOSTILE]
    assert prod.flaky[0].flips == 4
    assert dev.quiet and not prod.quiet


def test_a_shorter_period_counts_less(tmp_path):
    store = seed(tmp_path / "flowbot.db")
    try:
        day = report.gather(store, NOW - timedelta(days=1), NOW, ["prod"])
    finally:
        store.close()
    (prod,) = day.sandboxes
    assert (prod.runs, prod.failures, prod.opened, prod.resolved) == (6, 3, 1, 0)


@pytest.mark.parametrize("fmt", report.FORMATS)
def test_each_format_matches_its_golden(week, fmt):
    ext = {"text": "txt"}.get(fmt, fmt)
    golden(f"week.{ext}", report.render(week, fmt))


def test_untrusted_names_are_escaped_in_markdown_and_html(week):
    md = report.render(week, "md")
    assert "<script>" not in md and "\\<script\\>" in md and "crm\\|" in md
    html = report.render(week, "html")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_json_is_machine_readable(week):
    data = json.loads(report.render(week, "json"))
    prod = next(s for s in data["sandboxes"] if s["sandbox"] == "prod")
    assert prod["records_lost"] == 555 and prod["resolve_median_seconds"] == 36000


def _flowbot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbot", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_the_command_reads_a_database_and_writes_a_file(tmp_path):
    seed(tmp_path / "flowbot.db").close()
    out = tmp_path / "week.html"
    done = _flowbot("report", "--since", "3650d", "--format", "html", "--db",
                    str(tmp_path / "flowbot.db"), "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "<table" in out.read_text() and "web-events" in out.read_text()
    done = _flowbot("report", "--db", str(tmp_path / "flowbot.db"), "--format", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["sandboxes"]


def test_a_missing_database_is_one_line_and_not_created(tmp_path):
    done = _flowbot("report", "--db", str(tmp_path / "nope.db"))
    assert done.returncode == 2
    assert "no database at" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "nope.db").exists()
