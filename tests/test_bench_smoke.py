"""A smoke run of `python -m bench` on tiny sizes: every benchmark runs end to end and
the §7 table and both result files are written (the real figures come from `make bench`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "BENCH_LIST_RUNS": "300", "BENCH_LIST_FLOWS": "30", "BENCH_FLOWS": "60",
    "BENCH_NEW_RUNS": "6", "BENCH_STORED": "60", "BENCH_STORED_LARGE": "600",
    "BENCH_REPEAT": "2", "BENCH_NAIVE_REPEAT": "1", "BENCH_LATENCY_SAMPLES": "1",
    "BENCH_POLL_SECONDS": "1", "BENCH_STARTUP_RUNS": "2", "BENCH_MEMORY_CYCLES": "12", "BENCH_GROWTH": "60",
    "BENCH_DAEMON_CYCLES": "30",
}  # fmt: skip


def test_the_bench_runs_on_tiny_sizes_and_writes_every_row(tmp_path):
    env = {**os.environ, **TINY, "BENCH_WORK": str(tmp_path / "work")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    figures = [row["figure"] for row in results["table"]]
    assert len(figures) == 13, figures  # 3 of growth, 2 of start-up
    [grown] = results["growth"]["sizes"]
    assert grown["flows"] == 60 and grown["first"]["hwm_mb"] > 0 and grown["quiet"]["code"] == 0
    cycle = results["cycle"]["stored"]
    assert set(cycle) == {"60", "600"}
    assert cycle["600"]["stored_runs_after"] >= 600 + 6
    assert cycle["60"]["runs_new"] == 6 and cycle["60"]["requests"] <= 10
    assert results["cycle"]["naive"]["requests"] == 60
    assert results["memory"]["failed_cycles"] == 0
    daemon = results["daemon_memory"]
    assert list(daemon["rss_mb_after_cycles"]) == ["10", "30"] and daemon["failed_cycles"] == 0
    assert any(f.startswith("RSS of `flowbot run` after 30 cycles") for f in figures)
    md = (tmp_path / "results.md").read_text()
    assert "| figure | flowbot |" in md and "kill -9" in md
    assert "| after cycles | RSS |" in md and "/proc/<pid>/status" in md
