"""The daemon's counters and gauges, written in the Prometheus text format 0.0.4.

Small enough to write by hand: a dict of samples per metric family, a lock, and
`render()`. The daemon updates it after each cycle; the health server reads it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str  # counter, gauge or summary
    help: str


FAMILIES = (
    Family("flowbot_cycles_total", "counter", "Cycles run, by sandbox and result (ok, failed, error)."),
    Family("flowbot_cycle_duration_seconds", "summary", "Seconds a cycle took (read, decide, queue and send)."),
    Family("flowbot_runs_read_total", "counter", "Runs read from the Flow Service."),
    Family("flowbot_findings_total", "counter", "Rule findings (a rule matched a run or a flow)."),
    Family("flowbot_items_skipped_total", "counter", "Items a cycle left out (a run, flow, rule, alert or message), by stage."),
    Family("flowbot_alerts", "gauge", "Alerts in the store, by state."),
    Family("flowbot_messages_total", "counter", "Messages sent, failed or deferred, by channel."),
    Family("flowbot_outbox_depth", "gauge", "Messages waiting in the outbox."),
    Family("flowbot_api_requests_total", "counter", "Flow Service answers by HTTP status ('error': no answer)."),
    Family("flowbot_token_refreshes_total", "counter", "IMS access tokens fetched."),
    Family("flowbot_slack_actions_total", "counter", "Actions from Slack (buttons, /flowbot), by action and outcome (done, refused, resolved, replayed, failed...)."),
    Family("flowbot_last_success_timestamp_seconds", "gauge", "Unix time of the last good cycle, by sandbox."),
)  # fmt: skip
KNOWN = {f.name for f in FAMILIES}


class Metrics:
    """Thread-safe samples: `inc` for counters, `set` for gauges, `observe` for summaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, dict[Labels, float]] = {}

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        self._add(name, _labels(labels), value)

    def set(self, name: str, value: float, **labels: str) -> None:
        self._check(name)
        with self._lock:
            self._samples.setdefault(name, {})[_labels(labels)] = float(value)

    def replace(self, name: str, values: Mapping[str, float], label: str) -> None:
        """Set a labelled gauge to exactly `values` (labels not in it disappear)."""
        self._check(name)
        with self._lock:
            self._samples[name] = {((label, key),): float(v) for key, v in values.items()}

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = _labels(labels)
        self._add(name + "_sum", key, seconds)
        self._add(name + "_count", key, 1)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 when never set): for tests and the summary."""
        with self._lock:
            return self._samples.get(name, {}).get(_labels(labels), 0.0)

    def render(self) -> str:
        """Every family with HELP and TYPE lines, samples sorted by labels."""
        with self._lock:
            samples = {name: dict(values) for name, values in self._samples.items()}
        lines: list[str] = []
        for family in FAMILIES:
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.type}")
            names = [family.name]
            if family.type == "summary":
                names = [family.name + "_sum", family.name + "_count"]
            for name in names:
                for key, value in sorted(samples.get(name, {}).items()):
                    lines.append(f"{name}{_format_labels(key)} {_format_value(value)}")
        return "\n".join(lines) + "\n"

    def _add(self, name: str, key: Labels, value: float) -> None:
        self._check(name.removesuffix("_sum").removesuffix("_count"))
        with self._lock:
            values = self._samples.setdefault(name, {})
            values[key] = values.get(key, 0.0) + value

    def _check(self, name: str) -> None:
        if name not in KNOWN:
            raise KeyError(f"unknown metric {name!r}")


def _labels(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _format_labels(key: Labels) -> str:
    if not key:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
