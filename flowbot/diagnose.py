"""The diagnose stage: the row-level errors of failed runs, in their messages.

Between fetch and decide, `read_batches` queues the batch of every finished run that
failed or lost records (`diagnosis.wants_diagnosis`) and reads the pending ones through
the Data Access API (`aep.diagnostics`), newest first and those alerts wait for before
any other, within `diagnostics.budget` requests and DIAGNOSE_SECONDS per cycle. A batch
is read once: its summary (or why there is none) is kept in the `diagnoses` table.
Nothing here can fail or hold back a cycle: any error is logged and the batch waits.

At decide time, `attach` gives each firing notice its run's diagnosis (final, or
"pending" when not read yet); `remember` notes the alerts announced with a pending one,
and `followups` later sends them the diagnosis as a reply in the alert's thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flowbot import diagnosis as dx
from flowbot.aep.diagnostics import (
    Budget,
    DataAccess,
    DataAccessDenied,
    DataAccessError,
    ErrorFile,
    OverBudget,
)
from flowbot.models import Message, Notice, Run
from flowbot.store import Store
from flowbot.store import diagnoses as table

log = logging.getLogger("flowbot.diagnose")

DIAGNOSE_SECONDS = 10.0  # per sandbox and cycle; then the alerts go, the rest waits
MAX_ATTEMPTS = 3  # cycles a batch is tried (timeouts, 5xx) before it is given up
KEEP = timedelta(days=30)  # Adobe keeps row errors this long; older batches are not read


def enabled(ruleset: Any) -> bool:
    return bool(getattr(getattr(ruleset, "diagnostics", None), "enabled", False))


# ---------------------------------------------------------------- reading


def read_batches(
    deps: Any,
    client: Any,
    sandbox: str,
    runs: Iterable[Run],
    now: datetime,
    *,
    seconds: float = DIAGNOSE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Queue the batches of `runs` that want a diagnosis and read what the budget
    allows; the number of Data Access requests made. Never raises."""
    ruleset, store = deps.ruleset, deps.store
    if not enabled(ruleset):
        return 0
    options = ruleset.diagnostics
    budget = Budget(options.budget, clock() + seconds, clock)
    try:
        table.queue(store, sandbox, _wanted(runs, now), now)
        rows = table.due(store, sandbox, MAX_ATTEMPTS, max(options.budget, 1))
        if rows and options.budget > 0:
            with DataAccess(client, deps.settings.export_url, budget) as reader:
                for row in rows:
                    if budget.exhausted or not read_one(
                        reader, store, row, now, options.show_values, sandbox
                    ):
                        break
        table.prune(store, now - KEEP - timedelta(days=1))
    except Exception as exc:  # diagnostics must never fail a cycle
        log.warning("diagnostics for sandbox %s: %s: %s", sandbox, type(exc).__name__, exc)
    return budget.used


def _wanted(runs: Iterable[Run], now: datetime) -> list[tuple[str, str, datetime | None]]:
    out = []
    for run in runs:
        if not (run.is_finished and dx.wants_diagnosis(run)):
            continue
        if run.started_at is not None and run.started_at < now - KEEP:
            continue
        batch = dx.batch_of(run)
        if batch:
            out.append((batch, run.id, run.started_at))
    return out


def read_one(
    reader: DataAccess,
    store: Store,
    row: table.DiagnosisRow,
    now: datetime,
    show_values: bool,
    sandbox: str,
) -> bool:
    """Read one batch as far as the budget goes; False when the budget ran out."""
    listing = row.files
    try:
        if listing is None:
            files, total, notes = reader.row_error_files(row.batch_id)
            listing = {"files": [{"name": f.name, "href": f.href} for f in files],
                       "total": total, "notes": notes}  # fmt: skip
            table.save(store, row, now, state=dx.PENDING, files=listing)
        wanted = [ErrorFile(str(f["name"]), str(f["href"])) for f in listing["files"]]
        parsed, notes = [], list(listing.get("notes", []))
        if len(wanted) > reader.budget.requests:  # could never be read in one cycle
            notes.append(f"{len(wanted) - reader.budget.requests} error files not read (budget)")
            wanted = wanted[: reader.budget.requests]
        if len(wanted) > reader.budget.requests - reader.budget.used:
            return False  # this batch's files are read in a later cycle, all at once
        for f in wanted:
            try:
                parsed.append(dx.parse_error_file(f.name, reader.read(f)))
            except DataAccessDenied as exc:
                notes.append(f"{f.name}: not readable ({exc})")
            except DataAccessError as exc:
                if "larger than" not in str(exc):
                    raise
                notes.append(f"{f.name}: {exc}")
        result = dx.summarise(
            row.batch_id, parsed, files_total=int(listing.get("total", len(wanted))),
            show_values=show_values, notes=notes,
        )  # fmt: skip
        table.save(store, row, now, state=dx.DONE, files=listing, summary=dx.to_json(result))
    except OverBudget:
        return False
    except DataAccessDenied as exc:
        result = dx.denied(row.batch_id, exc.status, sandbox)
        table.save(store, row, now, state=dx.DENIED, summary=dx.to_json(result))
    except DataAccessError as exc:
        attempts = row.attempts + 1
        if attempts < MAX_ATTEMPTS:
            table.save(store, row, now, state=dx.PENDING, attempts=attempts, files=listing)
            log.info("diagnostics: batch %s: %s; tried again next cycle", row.batch_id, exc)
        else:
            result = dx.failed(row.batch_id, str(exc))
            table.save(store, row, now, state=dx.FAILED, attempts=attempts,
                       summary=dx.to_json(result))  # fmt: skip
    return True


# ---------------------------------------------------------------- messages


def attach(outgoing: Sequence[Any], store: Store, ruleset: Any) -> list[Any]:
    """`outgoing` (alerts.Outgoing) with each firing notice given its run's diagnosis;
    storms ("grouped") are left as they are. On any error, `outgoing` as it was."""
    if not enabled(ruleset):
        return list(outgoing)
    try:
        return _attach(outgoing, store)
    except Exception as exc:  # a diagnosis must never hold back an alert
        log.warning("diagnostics: not attached: %s: %s", type(exc).__name__, exc)
        return list(outgoing)


def _attach(outgoing: Sequence[Any], store: Store) -> list[Any]:
    runs = [r for item in outgoing if item.event != "grouped" for n in item.notices
            if (r := _run_of(n)) is not None]  # fmt: skip
    rows = table.by_runs(store, [r.id for r in runs])
    out = []
    for item in outgoing:
        if item.event == "grouped":
            out.append(item)
            continue
        out.append(replace(item, notices=tuple(_with(n, rows) for n in item.notices)))
    return out


def _run_of(notice: Notice) -> Run | None:
    run = notice.finding.run if notice.finding else None
    if run is None or notice.rule_type == "missing_run" or notice.event == "resolved":
        return None
    return run if run.is_finished and dx.wants_diagnosis(run) else None


def _with(notice: Notice, rows: Mapping[str, table.DiagnosisRow]) -> Notice:
    run = _run_of(notice)
    if run is None:
        return notice
    row = rows.get(run.id)
    if row is None:
        batch = dx.batch_of(run)
        return replace(notice, diagnosis=dx.pending(batch)) if batch else notice
    if row.state == dx.PENDING or row.summary is None:
        return replace(notice, diagnosis=dx.pending(row.batch_id))
    found = dx.from_json(row.summary) or dx.failed(row.batch_id, "the stored summary is damaged")
    return replace(notice, diagnosis=found)


def remember(store: Store, outgoing: Sequence[Any], alert_ids: Mapping[Any, int]) -> None:
    """Note the alerts announced while their run's diagnosis was pending."""
    waits: dict[str, list[dict[str, Any]]] = {}
    for item in outgoing:
        if item.event != "firing":
            continue
        for notice, key in zip(item.notices, item.keys, strict=True):
            d = notice.diagnosis
            run = _run_of(notice)
            if d is None or d.final or run is None or key not in alert_ids:
                continue
            waits.setdefault(run.id, []).append(
                {"alert_id": alert_ids[key], "rule": notice.rule, "severity": notice.severity,
                 "flow": notice.flow.name or notice.flow.id, "run_id": run.id,
                 "sandbox": notice.sandbox or notice.flow.sandbox}
            )  # fmt: skip
    if waits:
        for run_id, row in table.by_runs(store, list(waits)).items():
            table.add_waiting(store, row, waits[run_id])


def followups(
    store: Store,
    ruleset: Any,
    sandbox: str,
    templates_dir: Path | None,
    outgoing: Sequence[Any] = (),
    alert_ids: Mapping[Any, int] | None = None,
) -> list[Message]:
    """The thread replies carrying diagnoses that became final since their alerts went;
    then the alerts of `outgoing` announced with a pending diagnosis are noted (see
    `remember`). Never raises: on an error, no reply this cycle."""
    if not enabled(ruleset):
        return []
    try:
        messages = _replies(store, ruleset, sandbox, templates_dir)
        remember(store, outgoing, alert_ids or {})
    except Exception as exc:  # a diagnosis must never hold back an alert
        log.warning("diagnostics: no thread replies: %s: %s", type(exc).__name__, exc)
        return []
    return messages


def _replies(store: Store, ruleset: Any, sandbox: str, templates_dir: Path | None) -> list[Message]:
    from flowbot.render import render_diagnosis

    messages = []
    for row in table.answered(store, sandbox):
        found = dx.from_json(row.summary or "") or dx.failed(row.batch_id, "no summary kept")
        for wait in row.waiting:
            rule = ruleset.rule(str(wait.get("rule")))
            alert_id = wait.get("alert_id")
            if rule is None or not isinstance(alert_id, int):
                continue
            title = (
                f"Row-level errors of run {wait.get('run_id')}: {wait.get('rule')} on "
                f"{wait.get('flow')} ({wait.get('sandbox')})"
            )
            for channel in rule.channels:
                kind = ruleset.channels[channel].kind
                body = render_diagnosis(found, kind, title=title, templates_dir=templates_dir)
                messages.append(Message(channel, kind, "diagnosis", body, alert_id))
        table.clear_waiting(store, row)
    return messages
