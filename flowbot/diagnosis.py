"""Pure: the row-level errors of a run's batch, summarised for a message.

Adobe keeps the rows a batch could not ingest in error files (the Data Access API's
`meta?path=row_errors` listing, e.g. `conversion_errors_0.json`, `parsing_errors_0.json`).
Each line of such a file is one rejected row (sample 19):

    {"_corrupt_record": "<the raw row>", "_errors": [{"code", "message"}], "_filename"}

`summarise` groups those rows by error kind (code, message, field or column path) and
counts them; `parse_error_file` reads one file's text, bounded. Record values may be
personal data: unless `show_values`, a kind's example names the file and row instead of
the row, and quoted text inside Adobe's messages (which can quote a value) is masked.
Nothing here talks to the world.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flowbot.models import Run
from flowbot.untrusted import cut, one_line

MAX_KINDS = 20  # error kinds kept per batch (the most frequent)
SHOWN_KINDS = 5  # kinds a message lists; the rest is "and N more kinds"
MAX_ROWS = 20_000  # rows parsed per file; the rest is counted as not read
MAX_MESSAGE = 200  # characters of a kind's message
MAX_VALUE = 80  # characters of a record value shown with show_values
MAX_PATH = 120  # characters of a field path
MAX_NOTES = 5  # notes kept per diagnosis ("a file was too large", ...)
MASK = "'…'"

# Final states: the batch is not read again. "pending": not read yet (budget, time).
DONE, DENIED, FAILED, PENDING = "done", "denied", "failed", "pending"

# Where an error entry may name its field or column.
PATH_KEYS = ("path", "fieldPath", "field", "column", "columnName", "xdmPath", "attribute")
# ... or its message: "field 'person.email'", "column \"birth_date\"".
_PATH_IN_MESSAGE = re.compile(
    r"\b(?:field|column|path|attribute)\s+['\"`]([^'\"`\s]{1,120})['\"`]", re.I
)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One kind of row error: how many rows had it, and one example."""

    code: str
    message: str
    path: str = ""
    rows: int = 0
    example: str = ""  # "parsing_errors_0.json, row 3", or the row cut short (show_values)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What flowbot learnt from a batch's row errors. `note` is one line for the
    operator when there is no summary (no access, an unreadable answer, not read yet);
    `notes` say what was left out of a summary (a file too large, a malformed line)."""

    batch_id: str
    state: str = PENDING
    kinds: tuple[ErrorKind, ...] = ()
    rows: int = 0  # error rows read, over every kind
    files_read: int = 0
    files_total: int = 0
    note: str = ""
    notes: tuple[str, ...] = ()
    values: bool = False  # examples carry record values (show_values was on)

    @property
    def final(self) -> bool:
        return self.state != PENDING


@dataclass
class FileRows:
    """One error file's rows as parsed: the records, and how many lines were not."""

    name: str
    records: list[Mapping[str, Any]] = field(default_factory=list)
    malformed: int = 0
    unread: int = 0  # rows past MAX_ROWS


# ---------------------------------------------------------------- which runs, which batch


def wants_diagnosis(run: Run) -> bool:
    """A failed run, or one that lost records, has row errors worth reading."""
    return run.state == "failed" or (run.failed_records or 0) > 0


def batch_of(run: Run) -> str | None:
    """The batch a run wrote: `targetInfo[].reference.ids` of type Batch in its
    activities, else the batch named in its `failedRecords` link; None when neither."""
    for activity in _list(run.raw.get("activities")):
        for target in _list(activity.get("targetInfo") if isinstance(activity, dict) else None):
            ref = target.get("reference") if isinstance(target, dict) else None
            if isinstance(ref, dict) and str(ref.get("type", "")).lower() == "batch":
                ids = [i for i in _list(ref.get("ids")) if isinstance(i, str) and _ok_id(i)]
                if ids:
                    return ids[0]
    for link in run.links:
        parts = urlsplit(link.url)
        segments = parts.path.rstrip("/").split("/")
        if "batches" in segments and segments.index("batches") + 1 < len(segments):
            candidate = segments[segments.index("batches") + 1]
            if "row_errors" in parse_qs(parts.query).get("path", [""])[0] and _ok_id(candidate):
                return candidate
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _ok_id(text: str) -> bool:
    return 0 < len(text) <= 128 and all(c.isalnum() or c in "-_." for c in text)


# ---------------------------------------------------------------- parsing


def parse_error_file(name: str, body: bytes | bytearray) -> FileRows:
    """An error file's rows: JSON Lines (one row a line), or one JSON object or array.
    A line that is not a JSON object counts as malformed; at most MAX_ROWS are kept."""
    out = FileRows(name)
    text = bytes(body).decode("utf-8", "replace")
    whole = _json(text)
    if isinstance(whole, dict):
        items: Iterable[Any] = [whole]
    elif isinstance(whole, list):
        items = whole
    else:
        items = (_json(line) for line in text.splitlines() if line.strip())
    for item in items:
        if len(out.records) >= MAX_ROWS:
            out.unread += 1
        elif isinstance(item, dict):
            out.records.append(item)
        else:
            out.malformed += 1
    return out


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# ---------------------------------------------------------------- summarising


def summarise(
    batch_id: str,
    files: Sequence[FileRows],
    *,
    files_total: int,
    show_values: bool = False,
    notes: Sequence[str] = (),
) -> Diagnosis:
    """Group the rows of `files` by (code, message, path), most rows first, at most
    MAX_KINDS kinds; one example each (see the module docstring about values)."""
    counts: dict[tuple[str, str, str], int] = {}
    examples: dict[tuple[str, str, str], str] = {}
    rows = 0
    notes = list(notes)
    for f in files:
        for number, record in enumerate(f.records, start=1):
            rows += 1
            for key in {_kind_key(e, show_values) for e in _errors_of(record)}:
                counts[key] = counts.get(key, 0) + 1
                examples.setdefault(key, _example(f.name, number, record, show_values))
        if f.malformed:
            notes.append(f"{f.name}: {f.malformed} unreadable lines skipped")
        if f.unread:
            notes.append(f"{f.name}: only the first {MAX_ROWS:,} rows read")
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_KINDS]
    kinds = tuple(
        ErrorKind(code=k[0], message=k[1], path=k[2], rows=n, example=examples[k])
        for k, n in ranked
    )
    return Diagnosis(
        batch_id=batch_id,
        state=DONE,
        kinds=kinds,
        rows=rows,
        files_read=len(files),
        files_total=files_total,
        notes=tuple(cut(one_line(n), 200) for n in notes[:MAX_NOTES]),
        values=show_values,
    )


def _errors_of(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    errors: list[Mapping[str, Any]] = [
        e for e in _list(record.get("_errors")) if isinstance(e, dict)
    ]
    return errors or [{"code": "", "message": "(no error given)"}]


def _kind_key(error: Mapping[str, Any], show_values: bool) -> tuple[str, str, str]:
    code = cut(one_line(str(error.get("code") or "")), 40)
    message = one_line(str(error.get("message") or error.get("description") or ""))
    path = next((str(error[k]) for k in PATH_KEYS if isinstance(error.get(k), str)), "")
    found = _PATH_IN_MESSAGE.search(message)
    if not path and found:
        path = found.group(1)
    if not show_values:
        message = _mask(message, found)
    return code, cut(message, MAX_MESSAGE), cut(one_line(path), MAX_PATH)


def _mask(message: str, path: re.Match[str] | None) -> str:
    """Quoted text in a message (it may quote a value) replaced by '…', except the
    field path the message names."""
    keep = path.span(0) if path else (-1, -1)

    def sub(m: re.Match[str]) -> str:
        inside = keep[0] <= m.start() and m.end() <= keep[1]
        return m.group(0) if inside else MASK

    return _QUOTED.sub(sub, message)


def _example(name: str, number: int, record: Mapping[str, Any], show_values: bool) -> str:
    where = f"{one_line(name)[:60]}, row {number}"
    if not show_values:
        return where
    raw = record.get("_corrupt_record")
    if raw is None:
        raw = {k: v for k, v in record.items() if not str(k).startswith("_")} or ""
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    return cut(one_line(text), MAX_VALUE) or where


def denied(batch_id: str, status: int, sandbox: str) -> Diagnosis:
    """The diagnosis of a batch whose row errors flowbot may not read (403, 404)."""
    why = "refused access (403)" if status == 403 else "found no row errors to give (404)"
    return Diagnosis(
        batch_id=batch_id,
        state=DENIED,
        note=(
            f"no access to row errors: the Data Access API {why}; it needs the "
            f"View Datasets permission (Data Management) in sandbox {sandbox} for "
            "flowbot's API credentials, and Adobe keeps row errors for 30 days"
        ),
    )


def failed(batch_id: str, problem: str) -> Diagnosis:
    return Diagnosis(
        batch_id=batch_id,
        state=FAILED,
        note=f"row errors could not be read: {cut(one_line(problem), 200)}",
    )


def pending(batch_id: str) -> Diagnosis:
    return Diagnosis(
        batch_id=batch_id,
        state=PENDING,
        note="row errors not read yet; the diagnosis follows in this thread",
    )


# ---------------------------------------------------------------- storage and templates


def to_json(d: Diagnosis) -> str:
    return json.dumps(
        {
            "batch_id": d.batch_id,
            "state": d.state,
            "kinds": [
                {"code": k.code, "message": k.message, "path": k.path, "rows": k.rows,
                 "example": k.example}
                for k in d.kinds
            ],
            "rows": d.rows,
            "files_read": d.files_read,
            "files_total": d.files_total,
            "note": d.note,
            "notes": list(d.notes),
            "values": d.values,
        }
    )  # fmt: skip


def from_json(text: str) -> Diagnosis | None:
    """A stored diagnosis; None when the text is not one (a damaged row)."""
    data = _json(text)
    if not isinstance(data, dict):
        return None
    try:
        kinds = tuple(
            ErrorKind(
                code=str(k["code"]), message=str(k["message"]), path=str(k.get("path", "")),
                rows=int(k["rows"]), example=str(k.get("example", "")),
            )
            for k in _list(data.get("kinds"))[:MAX_KINDS]
        )  # fmt: skip
        return Diagnosis(
            batch_id=str(data["batch_id"]),
            state=str(data["state"]),
            kinds=kinds,
            rows=int(data.get("rows", 0)),
            files_read=int(data.get("files_read", 0)),
            files_total=int(data.get("files_total", 0)),
            note=str(data.get("note", "")),
            notes=tuple(str(n) for n in _list(data.get("notes"))[:MAX_NOTES]),
            values=bool(data.get("values", False)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def template_values(d: Diagnosis | None) -> dict[str, Any] | None:
    """What templates see as `diagnosis` (None when there is none): `state`, `note`,
    `kinds` (the first SHOWN_KINDS: code, message, path, rows, example), `kinds_more`,
    `rows`, `files_read`, `files_total`, `notes`, `values`."""
    if d is None:
        return None
    shown = d.kinds[:SHOWN_KINDS]
    return {
        "batch_id": d.batch_id,
        "state": d.state,
        "note": d.note,
        "kinds": [
            {"code": k.code, "message": k.message, "path": k.path, "rows": k.rows,
             "example": k.example}
            for k in shown
        ],
        "kinds_more": max(len(d.kinds) - len(shown), 0),
        "rows_more": sum(k.rows for k in d.kinds[len(shown):]),
        "rows": d.rows,
        "files_read": d.files_read,
        "files_total": d.files_total,
        "notes": list(d.notes),
        "values": d.values,
    }  # fmt: skip
