"""What the daemon checks between cycles, decided without side effects beyond reading
files: the fingerprint of the watched files, the identity of the database file, the
key of a rejected rules change, and the one line an exception becomes."""

from __future__ import annotations

import hashlib
import os
import traceback
from pathlib import Path

from flowbot.errors import FlowbotError
from flowbot.settings import redact


def fingerprint(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of each file, and of every file under each directory."""
    out: list[tuple[str, int, int]] = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for each in files:
            try:
                st = each.stat()
            except OSError:
                out.append((str(each), -1, -1))
                continue
            out.append((str(each), st.st_mtime_ns, st.st_size))
    return tuple(out)


def rejection_key(path: str, problems: list[str]) -> str:
    """What identifies a rejected rules change: the file's bytes (or their absence)
    and the problems found. The same key again is not announced again."""
    digest = hashlib.sha256()
    try:
        digest.update(Path(path).read_bytes())
    except OSError as exc:
        digest.update(f"unreadable: {type(exc).__name__}".encode())
    digest.update("\n".join(problems).encode("utf-8", "replace"))
    return digest.hexdigest()


def identity(db: str) -> tuple[int, int] | None:
    """(device, inode) of the database file; None for ':memory:' or no file."""
    if db == ":memory:":
        return None
    try:
        st = os.stat(db)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def database_change(db: str, opened: tuple[int, int] | None) -> str | None:
    """Why the file at `db` is no longer the database opened as `opened`, or None."""
    if opened is None:
        return None
    now = identity(db)
    if now == opened:
        return None
    what = "deleted" if now is None else "replaced by another file"
    return (
        f"database {db} was {what} while flowbot run was using it; cycles stop here "
        "(nothing is recreated, so no alert is sent twice): restore the file, or restart "
        "flowbot run to begin again with an empty database"
    )


def describe(exc: BaseException, secrets: list[str]) -> str:
    """One line for an exception: its text for our own errors; for anything else its
    type, text and where it was raised (file:line), cut to 300 characters, redacted."""
    if isinstance(exc, FlowbotError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            text += f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})"
    text = " ".join(text.split())
    if len(text) > 300:
        text = text[:299] + "…"
    return redact(text, secrets)
