"""The simulator's Data Access API (`FLOWBOT_EXPORT_URL` = `<sim>/export`).

- `GET /export/batches/{id}/meta?path=row_errors` lists the batch's error files as
  Adobe does (sample 18: `{data: [{name, length, _links.self.href}], _page}`, the href
  being `…/meta?path=row_errors%2F<name>`);
- `GET /export/batches/{id}/meta?path=row_errors/<name>` answers the file: JSON Lines,
  one rejected row a line (`_corrupt_record`, `_errors[{code, message}]`, `_filename`,
  sample 19);
- `GET /export/batches/{id}/meta?path=input_files` lists input files (sample 20).

A batch is the one a run names in `targetInfo[].reference.ids`, visible in the run's
sandbox only (404 elsewhere, like an unknown batch or path). Its row errors are made
from the run's error counts (INGEST-1401 rows are parsing errors, others conversion
errors naming a field; at most ROWS_PER_KIND rows a kind), or given with
`put_row_errors`. Faults for the next requests to this API: `deny_next` (403/404),
`slow_next`, `malformed_next` (not JSON); `huge_next` answers the next error files
(not listings) with a body of that many bytes.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

ROWS_PER_KIND = 2000
CORRUPT = "Row is corrupted and cannot be read, please fix and resend."
MALFORMED = b'{"_corrupt_record": "oops", "_errors": [ <html>502 Bad Gateway</html>'
MESSAGES = {
    "3700": "Mapper Transform Error: the value '{value}' of field 'person.birthDate' "
    "cannot be converted to a date.",
    "1555": "A required field is either missing or has a value of null: "
    "field 'personalEmail.address'.",
}

Reply = tuple[int, Any, dict[str, str]]  # status, JSON body or raw bytes, headers


class DataAccessSim:
    """Row errors of the simulated batches, and the faults of the next requests."""

    def __init__(self, runs: Callable[[], Mapping[str, dict[str, Any]]]) -> None:
        self._runs = runs
        self._lock = threading.Lock()
        self._given: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._faults: deque[tuple[str, Any]] = deque()
        self._huge: deque[int] = deque()

    # -- what tests steer

    def put_row_errors(self, batch_id: str, files: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        """Serve these error files (name → rows) for `batch_id` instead of made-up ones."""
        with self._lock:
            self._given[batch_id] = {name: list(rows) for name, rows in files.items()}

    def deny_next(self, n: int, status: int = 403) -> None:
        self._queue("deny", status, n)

    def slow_next(self, n: int, seconds: float) -> None:
        self._queue("slow", seconds, n)

    def huge_next(self, n: int, size: int) -> None:
        with self._lock:
            self._huge.extend([size] * n)

    def malformed_next(self, n: int) -> None:
        self._queue("malformed", True, n)

    def _queue(self, kind: str, value: Any, n: int) -> None:
        with self._lock:
            self._faults.extend([(kind, value)] * n)

    # -- answering

    def handle(
        self,
        sandbox: str,
        parts: list[str],
        query: Mapping[str, list[str]],
        base: str,
        wait: Callable[[float], Any],
    ) -> Reply:
        """Answer `GET /export/<parts…>` for `sandbox`; `base` is the export URL."""
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault and fault[0] == "slow":
            wait(fault[1])
        if fault and fault[0] == "deny":
            return _denied(fault[1])
        if len(parts) != 3 or parts[0] != "batches" or parts[2] != "meta":
            return _denied(404)
        files = self._files(parts[1], sandbox)
        if files is None:
            return _denied(404)
        path = (query.get("path") or [""])[0]
        if fault and fault[0] == "malformed":
            return 200, MALFORMED, {}
        meta = f"{base}/batches/{quote(parts[1], safe='')}/meta"
        if path in ("row_errors", "row_errors/"):
            return 200, _listing(files, meta, "row_errors"), {}
        if path.startswith("row_errors/") and path[len("row_errors/") :] in files:
            with self._lock:
                huge = self._huge.popleft() if self._huge else 0
            if huge:
                line = json.dumps({"_corrupt_record": "x" * 200, "_errors": [{"code": "1401"}]})
                return 200, ((line + "\n").encode() * (huge // (len(line) + 1) + 1))[:huge], {}
            rows = files[path[len("row_errors/") :]]
            return 200, "".join(json.dumps(r) + "\n" for r in rows).encode(), {}
        if path == "input_files":
            inputs = {"fileMetaData1.json": [{"path": "F1.json"}]}
            return 200, _listing(inputs, meta, "input_files"), {}
        return _denied(404)

    def _files(self, batch_id: str, sandbox: str) -> dict[str, list[dict[str, Any]]] | None:
        run = next(
            (r for r in list(self._runs().values()) if batch_id in _batches(r)),
            None,
        )
        if run is None or run.get("sandboxName", "prod") != sandbox:
            return None
        with self._lock:
            given = self._given.get(batch_id)
        return given if given is not None else made_up_rows(run)


def _batches(run: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for activity in run.get("activities") or []:
        for target in activity.get("targetInfo") or []:
            ref = target.get("reference") or {}
            if str(ref.get("type", "")).lower() == "batch":
                out.extend(i for i in ref.get("ids") or [] if isinstance(i, str))
    return out


def made_up_rows(run: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Error files for a run: a row per failed record of each error kind with a
    recordCount (at most ROWS_PER_KIND), or the run's failedRecordCount as 1555 rows."""
    kinds: list[tuple[str, int]] = []
    for activity in run.get("activities") or []:
        extensions = (activity.get("statusSummary") or {}).get("extensions") or {}
        for err in extensions.get("errors") or []:
            if isinstance(err.get("recordCount"), int) and err["recordCount"] > 0:
                parts = str(err.get("code", "")).split("-")
                kinds.append((parts[1] if len(parts) > 1 else parts[0], err["recordCount"]))
    if not kinds:
        failed = ((run.get("metrics") or {}).get("recordSummary") or {}).get("failedRecordCount")
        if isinstance(failed, int) and failed > 0:
            kinds.append(("1555", failed))
    files: dict[str, list[dict[str, Any]]] = {}
    for code, count in kinds:
        name = "parsing_errors_0.json" if code == "1401" else "conversion_errors_0.json"
        rows = files.setdefault(name, [])
        for i in range(min(count, ROWS_PER_KIND)):
            rows.append(_row(code, i, name))
    return files


def _row(code: str, i: int, name: str) -> dict[str, Any]:
    if code == "1401":
        return {"_corrupt_record": f"{{missingQuotes: 'v{i}'}}",
                "_errors": [{"code": "1401", "message": CORRUPT}], "_filename": name}  # fmt: skip
    value = f"31/02/19{i % 100:02d}"
    record = {"email": f"person{i}@example.com", "birthDate": value,
              "street": f"{i} Rue de la Paix, 75002 Paris"}  # fmt: skip
    message = MESSAGES.get(code, MESSAGES["1555"]).format(value=value)
    return {"_corrupt_record": json.dumps(record), "_errors": [{"code": code, "message": message}],
            "_filename": name}  # fmt: skip


def _listing(files: Mapping[str, Any], meta: str, folder: str) -> dict[str, Any]:
    data = []
    for name, rows in files.items():
        size = sum(len(json.dumps(r)) + 1 for r in rows)
        href = f"{meta}?path={quote(f'{folder}/{name}', safe='')}"
        data.append({"name": name, "length": str(size), "_links": {"self": {"href": href}}})
    return {"data": data, "_page": {"limit": 100, "count": len(data)}}


def _denied(status: int) -> Reply:
    if status == 403:
        message = "You do not have sufficient permissions to perform the operation."
        return 403, {"title": "Forbidden", "status": 403, "detail": message}, {}
    return status, {"title": "Not Found", "status": status, "detail": "The path is not found."}, {}
