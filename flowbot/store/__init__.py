"""SQLite memory through sqlite-utils (the only package that imports it, knows table
names or writes SQL): `database.Store` with its intent-named methods, `schema` (the
migrations) and `rows` (the values rows become)."""

from flowbot.store.database import Store
from flowbot.store.rows import (
    AlertRow,
    ChannelProblem,
    OutboxRow,
    Silence,
    Watermark,
    from_ms,
    to_ms,
)

__all__ = [
    "AlertRow",
    "ChannelProblem",
    "OutboxRow",
    "Silence",
    "Store",
    "Watermark",
    "from_ms",
    "to_ms",
]
