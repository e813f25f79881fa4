"""The simulator's data behind the HTTP layer: indexed flows and runs, listing and paging.

Listing a query filters and sorts once; the sorted ids are kept as a snapshot, and each
page's continuation token names that snapshot and an offset. The token also carries the
whole query (sandbox, filters, order, limit), so a token whose snapshot was evicted
still works: the query runs again. Paging 100,000 runs costs one filter, not one per page.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import threading
from collections import OrderedDict
from typing import Any

from flowbot.sim import query
from flowbot.sim.scenario import Scenario

KINDS = ("flows", "runs")
SNAPSHOTS_KEPT = 64
Params = dict[str, list[str]]  # a query string, parsed (World.list shadows `list` inside)


def _first(params: Params, key: str) -> str | None:
    """The first value of `key` in a parsed query string, or None."""
    return next(iter(params.get(key) or ()), None)


class ListError(Exception):
    """A request the Flow Service would refuse with a 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode_token(state: dict[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise ListError("FLOW-1434-400", "Invalid continuation token.") from exc
    if not isinstance(state, dict):
        raise ListError("FLOW-1434-400", "Invalid continuation token.")
    return state


class World:
    """Flows and runs of a scenario, indexed by sandbox and flow; thread-safe."""

    def __init__(
        self, scenario: Scenario, page_size: int = 100, default_page: int | None = None
    ) -> None:
        self.scenario = scenario
        self.page_size = page_size  # the largest page, whatever `limit` asks
        self.default_page = min(default_page or page_size, page_size)  # without `limit`
        self.lock = threading.RLock()
        self.in_sandbox: dict[str, dict[str, dict[str, None]]] = {k: {} for k in KINDS}
        self.runs_by_flow: dict[str, dict[str, None]] = {}
        self.snapshots: OrderedDict[str, list[str]] = OrderedDict()
        self.counter = itertools.count(1)
        self.encoded: dict[str, tuple[dict[str, Any], bytes]] = {}
        for flow in scenario.flows.values():
            self._index("flows", flow)
        for run in scenario.runs.values():
            self._index("runs", run)

    @property
    def sandboxes(self) -> set[str]:
        return self.scenario.sandboxes

    def _items(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.scenario.flows if kind == "flows" else self.scenario.runs

    def _index(self, kind: str, item: dict[str, Any]) -> None:
        for members in self.in_sandbox[kind].values():
            members.pop(item["id"], None)
        sandbox = item.get("sandboxName", "prod")
        self.in_sandbox[kind].setdefault(sandbox, {})[item["id"]] = None
        if kind == "runs":
            flow = str(item.get("flowId", "")).lower()
            self.runs_by_flow.setdefault(flow, {})[item["id"]] = None

    def put_flow(self, flow: dict[str, Any]) -> None:
        """Add or replace a flow."""
        with self.lock:
            self.encoded.pop(flow["id"], None)
            self.scenario.put_flow(flow)
            self._index("flows", self.scenario.flows[flow["id"]])

    def put_run(self, run: dict[str, Any]) -> None:
        """Add or replace a run (its flow's lastRunDetails follows)."""
        with self.lock:
            old = self.scenario.runs.get(run["id"])
            if old is not None:
                self.runs_by_flow.get(str(old.get("flowId", "")).lower(), {}).pop(run["id"], None)
            self.encoded.pop(run["id"], None)
            self.encoded.pop(str(run.get("flowId")), None)
            self.scenario.put_run(run)
            self._index("runs", run)

    def get(self, kind: str, sandbox: str, item_id: str) -> dict[str, Any] | None:
        """One flow or run visible in `sandbox`, or None."""
        with self.lock:
            if item_id not in self.in_sandbox[kind].get(sandbox, {}):
                return None
            return self._items(kind)[item_id]

    def _candidates(self, kind: str, sandbox: str, filters: list[query.Filter]) -> list[str]:
        visible = self.in_sandbox[kind].get(sandbox, {})
        for flt in filters:
            if kind == "runs" and flt.path == ("flowId",) and flt.op == "==":
                ids: dict[str, None] = {}
                for value in flt.values:
                    ids.update(self.runs_by_flow.get(value.lower(), {}))
                return [item_id for item_id in ids if item_id in visible]
        return list(visible)

    def _run_query(self, kind: str, sandbox: str, state: dict[str, Any]) -> tuple[str, list[str]]:
        try:
            filters = [query.parse_filter(text) for text in state["f"]]
            path, descending = query.parse_orderby(state["o"])
        except query.QueryError as exc:
            raise ListError(exc.code, exc.message) from exc
        items = self._items(kind)
        candidates = [items[i] for i in self._candidates(kind, sandbox, filters)]
        ids = query.order(query.select(candidates, filters), path, descending)
        snapshot = str(next(self.counter))
        self.snapshots[snapshot] = ids
        while len(self.snapshots) > SNAPSHOTS_KEPT:
            self.snapshots.popitem(last=False)
        return snapshot, ids

    def list(self, kind: str, sandbox: str, params: Params) -> dict[str, Any]:
        """Answer `GET /flows` or `GET /runs` with these query parameters.

        Gives `{"count": N}` for `count=true`, else `{"items": [...], "_links": {...}}`
        with `_links.next.href` (relative) while more pages remain. Raises ListError.
        """
        with self.lock:
            token = (params.get("continuationToken") or [""])[0]
            if token:
                state = decode_token(token)
                if state.get("k") != kind or state.get("s") != sandbox:
                    raise ListError("FLOW-1434-400", "Invalid continuation token.")
                ids = self.snapshots.get(str(state.get("q")))
                if ids is None:
                    state["q"], ids = self._run_query(kind, sandbox, state)
                    self.snapshots.move_to_end(state["q"])
                else:
                    self.snapshots.move_to_end(str(state["q"]))
            else:
                state = self._new_state(kind, sandbox, params)
                if state.get("count"):
                    _, ids = self._run_query(kind, sandbox, state)
                    return {"count": len(ids)}
                state["q"], ids = self._run_query(kind, sandbox, state)
            offset, limit = int(state.get("n", 0)), int(state["l"])
            items = self._items(kind)
            page = [items[i] for i in ids[offset : offset + limit] if i in items]
            links: dict[str, Any] = {}
            if offset + limit < len(ids):
                following = encode_token({**state, "n": offset + limit})
                links["next"] = {"href": f"/{kind}?continuationToken={following}"}
            return {"items": page, "_links": links}

    def encode(self, body: dict[str, Any]) -> bytes:
        """`body` as JSON; each item's JSON is kept until put_run/put_flow replaces it.

        Paging 100,000 runs then serialises each run once, not once per listing.
        """
        if "items" not in body:
            return json.dumps(body).encode()
        parts = []
        with self.lock:
            for item in body["items"]:
                cached = self.encoded.get(item["id"])
                if cached is None or cached[0] is not item:
                    cached = (item, json.dumps(item).encode())
                    self.encoded[item["id"]] = cached
                parts.append(cached[1])
        rest = json.dumps({k: v for k, v in body.items() if k != "items"}).encode()
        return b'{"items": [' + b", ".join(parts) + b"], " + rest[1:]

    def _new_state(self, kind: str, sandbox: str, params: Params) -> dict[str, Any]:
        count = (params.get("count") or ["false"])[0].lower() == "true"
        raw_limit = _first(params, "limit")
        if count and raw_limit is not None:
            raise ListError("FLOW-1401-400", "limit and count cannot be used together.")
        limit = self.default_page
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError as exc:
                raise ListError("FLOW-1430-400", f"Invalid limit '{raw_limit}'.") from exc
            if limit < 1:
                raise ListError("FLOW-1430-400", f"Invalid limit '{raw_limit}'.")
        orderby = _first(params, "orderby")
        return {
            "k": kind,
            "s": sandbox,
            "f": list(params.get("property", [])),
            "o": orderby,
            "l": min(limit, self.page_size),
            "n": 0,
            "count": count,
        }
