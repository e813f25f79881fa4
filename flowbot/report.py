"""The figures of a period, per sandbox: runs, failures, records lost, incidents opened
and resolved (with the time they took to resolve), flows still red and the flakiest
flows. `figures` is pure (what the store holds → Report); `gather` reads the store; the
`as_*` functions write a Report as text, Markdown, JSON or an HTML document.

Definitions, as the report and the digest print them:

- runs and failures: finished runs started in the period (failed = status "failed");
- records lost: the failed records of those runs; records in: their input records;
- incidents opened: alerts first seen in the period; resolved: alerts resolved in it,
  with the median and longest time from first seen to resolved;
- still red: flows with an alert firing at the end of the period;
- flakiest: flows whose finished runs flipped between success and failure most often
  in the period (at least one flip), at most FLAKY_TOP of them.

A sandbox is quiet when it had no failure, no incident opened or resolved, and nothing
is red: the report says so in one line.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from flowbot.times import utc_minute
from flowbot.untrusted import cut, one_line

if TYPE_CHECKING:
    from flowbot.store import AlertRow, Store
    from flowbot.store.views import RunFact

FLAKY_TOP = 5
RED_SHOWN = 20  # flows named under "still red" (the count is always whole)
NAME_MAX = 120  # characters of a flow name shown

FORMATS = ("text", "md", "json", "html")


@dataclass(frozen=True, slots=True)
class Flaky:
    name: str
    flips: int
    runs: int
    failures: int


@dataclass(frozen=True, slots=True)
class SandboxFigures:
    sandbox: str
    runs: int = 0
    failures: int = 0
    records_in: int = 0
    records_lost: int = 0
    opened: int = 0
    resolved: int = 0
    resolve_median: timedelta | None = None
    resolve_longest: timedelta | None = None
    still_red: tuple[str, ...] = ()
    red_count: int = 0
    flaky: tuple[Flaky, ...] = ()

    @property
    def quiet(self) -> bool:
        return not (self.failures or self.opened or self.resolved or self.red_count)


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime
    until: datetime
    sandboxes: tuple[SandboxFigures, ...]


# ------------------------------------------------------------------ deciding


def figures(
    *,
    since: datetime,
    until: datetime,
    sandboxes: Sequence[str],
    runs: Iterable[RunFact],
    alerts: Iterable[AlertRow],
    names: Mapping[str, str],
) -> Report:
    """The figures of [since, until) for each of `sandboxes` (in that order). `runs` are
    the finished runs of the period ordered by flow then start; `alerts` those opened or
    resolved in it and those still firing; `names` flow id → name."""
    by_sandbox: dict[str, dict[str, list[RunFact]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.started is not None and since <= run.started < until:
            by_sandbox[run.sandbox][run.flow_id].append(run)
    alerts_of: dict[str, list[AlertRow]] = defaultdict(list)
    for alert in alerts:
        alerts_of[alert.sandbox].append(alert)
    out = []
    for sandbox in sandboxes:
        out.append(
            _one(sandbox, by_sandbox.get(sandbox, {}), alerts_of[sandbox], names, since, until)
        )
    return Report(since, until, tuple(out))


def _one(
    sandbox: str,
    flows: Mapping[str, list[RunFact]],
    alerts: list[AlertRow],
    names: Mapping[str, str],
    since: datetime,
    until: datetime,
) -> SandboxFigures:
    def name(flow_id: str) -> str:
        return cut(one_line(names.get(flow_id) or flow_id), NAME_MAX)

    runs = failures = records_in = records_lost = 0
    flaky: list[Flaky] = []
    for flow_id, flow_runs in flows.items():
        ordered = sorted(flow_runs, key=lambda r: r.started or since)
        failed = sum(r.status == "failed" for r in ordered)
        runs += len(ordered)
        failures += failed
        records_in += sum(max(r.input_records or 0, 0) for r in ordered)
        records_lost += sum(max(r.failed_records or 0, 0) for r in ordered)
        statuses = [r.status for r in ordered]
        flips = sum(a != b for a, b in zip(statuses, statuses[1:], strict=False))
        if flips:
            flaky.append(Flaky(name(flow_id), flips, len(ordered), failed))
    flaky.sort(key=lambda f: (-f.flips, -f.failures, f.name))
    opened = [a for a in alerts if since <= a.first_seen < until]
    resolved = [a for a in alerts if a.resolved is not None and since <= a.resolved < until]
    took = sorted(a.resolved - a.first_seen for a in resolved if a.resolved is not None)
    red_flows = sorted(
        {name(a.flow_id) if a.flow_id in names else cut(one_line(a.flow_name or a.flow_id), NAME_MAX)
         for a in alerts if a.state == "firing"}
    )  # fmt: skip
    return SandboxFigures(
        sandbox=sandbox,
        runs=runs,
        failures=failures,
        records_in=records_in,
        records_lost=records_lost,
        opened=len(opened),
        resolved=len(resolved),
        resolve_median=timedelta(seconds=median(t.total_seconds() for t in took)) if took else None,
        resolve_longest=took[-1] if took else None,
        still_red=tuple(red_flows[:RED_SHOWN]),
        red_count=len(red_flows),
        flaky=tuple(flaky[:FLAKY_TOP]),
    )


def gather(
    store: Store, since: datetime, until: datetime, sandboxes: Sequence[str] | None
) -> Report:
    """The Report of [since, until) from what `store` holds (reads only)."""
    from flowbot.store import views

    names = {f.id: f.name for f in views.flows(store)}
    chosen = list(sandboxes) if sandboxes else views.sandboxes(store)
    return figures(
        since=since,
        until=until,
        sandboxes=chosen,
        runs=views.runs_between(store, since, until),
        alerts=views.alerts_touching(store, since),
        names=names,
    )


# ------------------------------------------------------------------ words


def span(delta: timedelta | None) -> str:
    """A duration in words: 45s, 12m, 1h 5m, 2d 3h ("-" for none)."""
    if delta is None:
        return "-"
    s = max(int(delta.total_seconds()), 0)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{s}s"


def title(report: Report) -> str:
    return f"flowbot report {utc_minute(report.since)} → {utc_minute(report.until)}"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def quiet_line(f: SandboxFigures) -> str:
    return f"{f.sandbox}: quiet — {plural(f.runs, 'run')}, no failures, no incidents"


def runs_line(f: SandboxFigures) -> str:
    rate = f" ({f.failures / f.runs:.1%})" if f.runs else ""
    return (
        f"{plural(f.runs, 'run')}, {f.failures:,} failed{rate}, "
        f"{f.records_lost:,} records lost of {f.records_in:,}"
    )


def incidents_line(f: SandboxFigures) -> str:
    line = f"{f.opened} opened, {f.resolved} resolved"
    if f.resolve_median is not None:
        line += f" (time to resolve: median {span(f.resolve_median)}, longest {span(f.resolve_longest)})"
    return line


def red_line(f: SandboxFigures) -> str:
    more = f" and {f.red_count - len(f.still_red)} more" if f.red_count > len(f.still_red) else ""
    return ", ".join(f.still_red) + more if f.red_count else "none"


def flaky_text(x: Flaky) -> str:
    return f"{x.name} ({plural(x.flips, 'flip')} in {plural(x.runs, 'run')}, {x.failures} failed)"


# ------------------------------------------------------------------ formats


def as_text(report: Report) -> str:
    lines = [title(report), ""]
    for f in report.sandboxes:
        if f.quiet:
            lines.append(quiet_line(f))
            continue
        lines.append(f"{f.sandbox}: {runs_line(f)}")
        lines.append(f"  incidents: {incidents_line(f)}")
        lines.append(f"  still red: {red_line(f)}")
        if f.flaky:
            lines.append("  flakiest: " + "; ".join(flaky_text(x) for x in f.flaky))
    if not report.sandboxes:
        lines.append("no sandboxes in the database yet")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell: no pipes, no markup, no HTML."""
    out = text.replace("\\", "\\\\")
    for ch in "|*_`[]<>#~":
        out = out.replace(ch, "\\" + ch)
    return out


def as_markdown(report: Report) -> str:
    lines = [f"# {_md(title(report))}", ""]
    if not report.sandboxes:
        return "\n".join([*lines, "No sandboxes in the database yet.", ""])
    lines += [
        "| sandbox | runs | failed | records lost | incidents opened | resolved "
        "| time to resolve (median) | longest | still red |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in report.sandboxes:
        lines.append(
            f"| {_md(f.sandbox)} | {f.runs:,} | {f.failures:,} | {f.records_lost:,} "
            f"| {f.opened} | {f.resolved} | {span(f.resolve_median)} "
            f"| {span(f.resolve_longest)} | {f.red_count} |"
        )
    for f in report.sandboxes:
        lines += ["", f"## {_md(f.sandbox)}", ""]
        if f.quiet:
            lines.append(_md(quiet_line(f)))
            continue
        lines.append(f"- Still red: {_md(red_line(f))}")
        lines.append("- Flakiest: " + ("; ".join(_md(flaky_text(x)) for x in f.flaky) or "none"))
    return "\n".join(lines) + "\n"


def as_dict(report: Report) -> dict[str, Any]:
    def seconds(d: timedelta | None) -> int | None:
        return None if d is None else int(d.total_seconds())

    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "sandboxes": [
            {
                "sandbox": f.sandbox,
                "quiet": f.quiet,
                "runs": f.runs,
                "failures": f.failures,
                "records_in": f.records_in,
                "records_lost": f.records_lost,
                "incidents_opened": f.opened,
                "incidents_resolved": f.resolved,
                "resolve_median_seconds": seconds(f.resolve_median),
                "resolve_longest_seconds": seconds(f.resolve_longest),
                "still_red": list(f.still_red),
                "still_red_count": f.red_count,
                "flakiest": [
                    {"flow": x.name, "flips": x.flips, "runs": x.runs, "failures": x.failures}
                    for x in f.flaky
                ],
            }
            for f in report.sandboxes
        ],
    }


def as_json(report: Report) -> str:
    return json.dumps(as_dict(report), indent=2, ensure_ascii=False) + "\n"


def html_table(report: Report) -> Markup:
    """The figures as one HTML table (every value escaped): the report's body and the
    email digest's."""
    head = (
        '<tr><th scope="col">Sandbox</th><th scope="col">Runs</th>'
        '<th scope="col">Failed</th><th scope="col">Records lost</th>'
        '<th scope="col">Incidents opened</th><th scope="col">Resolved</th>'
        '<th scope="col">Time to resolve (median / longest)</th>'
        '<th scope="col">Still red</th><th scope="col">Flakiest</th></tr>'
    )
    rows = []
    for f in report.sandboxes:
        if f.quiet:
            rows.append(
                Markup('<tr><th scope="row">{}</th><td colspan="8">{}</td></tr>').format(
                    f.sandbox, quiet_line(f).split(": ", 1)[1]
                )
            )
            continue
        rows.append(
            Markup(
                '<tr><th scope="row">{}</th><td>{:,}</td><td>{:,}</td><td>{:,}</td><td>{}</td>'
                "<td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td></tr>"
            ).format(
                f.sandbox, f.runs, f.failures, f.records_lost, f.opened, f.resolved,
                span(f.resolve_median), span(f.resolve_longest), red_line(f),
                "; ".join(flaky_text(x) for x in f.flaky) or "none",
            )
        )  # fmt: skip
    return Markup('<table border="1" cellpadding="4" cellspacing="0">') + Markup(
        "<thead>{}</thead><tbody>{}</tbody></table>"
    ).format(Markup(head), Markup("").join(rows))


def as_html(report: Report) -> str:
    return str(
        Markup(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>{}</title></head>\n<body><h1>{}</h1>\n{}\n</body></html>\n"
        ).format(title(report), title(report), html_table(report))
    )


def render(report: Report, fmt: str) -> str:
    if fmt == "text":
        return as_text(report)
    if fmt == "md":
        return as_markdown(report)
    if fmt == "json":
        return as_json(report)
    if fmt == "html":
        return as_html(report)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
