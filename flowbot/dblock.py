"""One sender per database: an exclusive flock on `<db>.lock`, held by `flowbot run`
for its whole life and by `flowbot check` for its one cycle and delivery.

The lock file holds "<pid> <command>" of its holder, so that whoever is refused can
say who holds it. The kernel drops the lock when the holder exits, even on kill -9.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from flowbot.errors import FlowbotError


class AlreadyRunning(FlowbotError):
    """Another flowbot process holds the lock of this database."""


def refusal(db: str, command: str, holder_pid: str, holder: str) -> str:
    """The one line that says why `command` may not use `db` now."""
    if holder == "run" and command == "check":
        return (
            f"flowbot run (pid {holder_pid}) is already watching {db}; it will send; "
            "stop it or use another FLOWBOT_DB"
        )
    if holder == "run":
        return (
            f"another flowbot run (pid {holder_pid}) is already using {db}; "
            "stop it first (two daemons on one database would send every alert twice)"
        )
    return (
        f"flowbot {holder or 'check'} (pid {holder_pid}) is already using {db}; "
        "try again when it has finished"
    )


def acquire_lock(db: str, command: str = "run") -> IO[str]:
    """Hold an exclusive flock on `<db>.lock` for as long as the returned file stays
    open. Raises AlreadyRunning (with `refusal`'s line) when another process holds it."""
    path = Path(db + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        pid, _, holder = handle.read(200).strip().partition(" ")
        handle.close()
        raise AlreadyRunning(refusal(db, command, pid or "?", holder.strip())) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {command}\n")
    handle.flush()
    return handle
