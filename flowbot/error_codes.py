"""What an Adobe error code means and what to try first: a small table, and a pure lookup.

Every entry names the Adobe page it comes from (`source`). Codes are matched exactly
first; then by the same code with another HTTP suffix (Adobe's catalogs and the real
answers disagree on the suffix: `INGEST-1212-500` finds `INGEST-1212-400`); then by
family (`CONNECTOR-`, `CTOR-`, `INGEST-`, `MAPPER-`, `FLOW-`). Case and surrounding
spaces are ignored. A code nothing matches has no help: messages show it as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EL = "https://experienceleague.adobe.com/en/docs/experience-platform/"
NOTIFICATIONS = _EL + "sources/notifications"
MONITOR_SOURCES = _EL + "dataflows/ui/monitor-sources"
ERROR_DIAGNOSTICS = _EL + "ingestion/quality/error-diagnostics"
MONITOR_API = _EL + "sources/api-tutorials/monitor"
DATA_PREP = _EL + "data-prep/troubleshooting-guide"
FLOW_SERVICE_ERRORS = _EL + "sources/errors/flow-service-errors"
ALERT_RULES = _EL + "observability/alerts/rules"

MAX_CODE = 100  # longer "codes" are not looked up


@dataclass(frozen=True, slots=True)
class ErrorHelp:
    """One entry: `code` is a whole code, or a family prefix ending in "-"."""

    code: str
    meaning: str
    first_step: str
    source: str

    @property
    def is_family(self) -> bool:
        return self.code.endswith("-")


ERROR_CODES: tuple[ErrorHelp, ...] = (
    # connector: the run-level errors of sources dataflows
    ErrorHelp(
        "CONNECTOR-1001-500",
        "Copying the data from the source failed (copy activity).",
        "Check that the source is reachable and its account's credentials still work "
        "(Sources > Accounts); the run's engine code (e.g. 2200) says more.",
        NOTIFICATIONS,
    ),
    ErrorHelp(
        "CONNECTOR-2001-500",
        "Processing the copied data into Platform failed: parsing, validation or "
        "transformation (promotion activity).",
        "Open the run in AEP and preview its error diagnostics; compare the failing "
        "columns with the mapping and the target schema.",
        NOTIFICATIONS,
    ),
    ErrorHelp(
        "CONNECTOR-3001-500",
        "The flow provider failed while creating the batch with the bulk ingest API.",
        "Retry the run; if it fails again, open a case with Adobe with the run id.",
        MONITOR_SOURCES,
    ),
    ErrorHelp(
        "CTOR-2001-500",
        "The legacy code of CONNECTOR-2001-500: processing the copied data into "
        "Platform failed (promotion activity).",
        "Open the run in AEP and preview its error diagnostics; compare the failing "
        "columns with the mapping and the target schema.",
        NOTIFICATIONS,
    ),
    ErrorHelp(
        "CONNECTOR-",
        "A sources connector error: copying from the source or processing into Platform.",
        "Open the run in AEP: its error summary names the step that failed.",
        MONITOR_SOURCES,
    ),
    ErrorHelp(
        "CTOR-",
        "A sources connector error (legacy code prefix).",
        "Open the run in AEP: its error summary names the step that failed.",
        NOTIFICATIONS,
    ),
    # ingestion: batch and row errors
    ErrorHelp(
        "INGEST-1212-400",
        "Some rows failed and the rest were ingested (partial ingestion).",
        "Read the row-level errors: `flowbot explain RUN_ID`, or Preview error "
        "diagnostics on the run in AEP.",
        ERROR_DIAGNOSTICS,
    ),
    ErrorHelp(
        "INGEST-1211-400",
        "Rows failed, but error diagnostics were off, so Adobe kept no row-level detail.",
        "Enable error diagnostics on the dataflow, then rerun it to see which rows fail.",
        ERROR_DIAGNOSTICS,
    ),
    ErrorHelp(
        "INGEST-1401-400",
        "A row is corrupted and cannot be read or parsed.",
        "Fix the row in the source file (quotes, delimiters, encoding) and send it again.",
        ERROR_DIAGNOSTICS,
    ),
    ErrorHelp(
        "INGEST-1555-400",
        "A required field is missing or null.",
        "Fill the field in the source, or map a default value to it.",
        ERROR_DIAGNOSTICS,
    ),
    ErrorHelp(
        "INGEST-1205-400",
        "A field does not exist in the target schema.",
        "Remove the field from the mapping, or add it to the dataset's schema.",
        NOTIFICATIONS,
    ),
    ErrorHelp(
        "INGEST-",
        "Batch ingestion rejected rows or the batch.",
        "Read the batch's errors: `flowbot explain RUN_ID`, or the run in AEP.",
        ERROR_DIAGNOSTICS,
    ),
    # mapper (Data Prep)
    ErrorHelp(
        "MAPPER-3700-400",
        "A Data Prep mapping failed on some rows; the column is left empty, and a row "
        "whose required field ends up empty is rejected.",
        "Check the mapping's calculated fields against the failing rows' values.",
        MONITOR_API,
    ),
    ErrorHelp(
        "MAPPER-",
        "A Data Prep (mapping) error.",
        "Check the dataflow's mapping against the source columns and the schema.",
        DATA_PREP,
    ),
    # Flow Service (API answers: in flowbot's own messages about monitoring)
    ErrorHelp(
        "FLOW-1102-500",
        "A Flow Service internal error.",
        "Nothing to change: flowbot retries; if it lasts, open a case with Adobe.",
        FLOW_SERVICE_ERRORS,
    ),
    ErrorHelp(
        "FLOW-1103-503",
        "The Flow Service is temporarily unavailable.",
        "Nothing to change: flowbot retries; if it lasts, check Adobe's status page.",
        FLOW_SERVICE_ERRORS,
    ),
    ErrorHelp(
        "FLOW-1104-504",
        "A gateway timeout in front of the Flow Service.",
        "Nothing to change: flowbot retries; if it lasts, open a case with Adobe.",
        FLOW_SERVICE_ERRORS,
    ),
    ErrorHelp(
        "FLOW-",
        "A Flow Service API error.",
        "Look the number up in Adobe's Flow Service error catalog.",
        FLOW_SERVICE_ERRORS,
    ),
    # engine codes that runs carry without a prefix
    ErrorHelp(
        "2200",
        "The copy could not reach the source in time (a network timeout).",
        "Check that the source host is up and allows Adobe's IP addresses, then rerun.",
        ALERT_RULES,
    ),
    ErrorHelp(
        "1401",
        "A row is corrupted and cannot be read.",
        "Fix the row in the source file and send it again.",
        ERROR_DIAGNOSTICS,
    ),
)

_EXACT = {e.code: e for e in ERROR_CODES if not e.is_family}
_FAMILIES = sorted((e for e in ERROR_CODES if e.is_family), key=lambda e: -len(e.code))
_SUFFIX = re.compile(r"^([A-Z_]+-\d+-)[0-9A-Z]+$")


def lookup(code: str) -> ErrorHelp | None:
    """The entry for `code` (see the module docstring), or None."""
    if not isinstance(code, str) or len(code) > MAX_CODE:
        return None
    key = code.strip().upper()
    if not key:
        return None
    if key in _EXACT:
        return _EXACT[key]
    same = _SUFFIX.match(key)
    if same:
        for entry in _EXACT.values():
            if entry.code.startswith(same.group(1)):
                return entry
    return next((e for e in _FAMILIES if key.startswith(e.code) and key != e.code), None)
