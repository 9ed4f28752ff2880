"""Faults: provider misbehaviour injected by endpoint, by rate or for the next N requests.

A fault is given as JSON, e.g. ``{"kind": "status", "status": 429, "retry_after": "date",
"endpoint": "fastly.service_usage_metrics", "count": 2}``. ``endpoint`` is a route name
(``fastly.usage_metrics``), a route-name prefix (``fastly``, ``akamai``), a path prefix
(``/billing/v3/``) or ``*`` (the default). ``rate`` (0..1, default 1) is drawn from a random
generator seeded by the scenario seed and the fault's id, so a run is repeatable; ``count``
caps how many times the fault fires (``count: 3`` with the default rate: the next three
matching requests). Kinds:

- ``status``: answer ``status`` (429, 500, 502, 503, or 202 for month-to-date) with a provider
  error body; a 429 carries ``Retry-After`` as seconds (``retry_after: "seconds"``, the
  default) or as an HTTP date (``"date"``), ``retry_after_s`` seconds ahead (default 1);
  another status carries it only when ``retry_after`` is given.
- ``latency``: wait ``latency_ms`` before answering normally.
- ``hang``: wait ``hang_s`` (default 3600) before answering; other requests are served
  meanwhile; a hung request is released (503) when the sandbox stops or is reset.
- ``html``: an HTML error page with status 200.
- ``truncate``: the JSON body is cut in half.
- ``repeat_cursor``: ``next_cursor`` equals the cursor that was sent (fires only on requests
  that carry a cursor).
- ``lie_total``: ``meta.total`` says ``total`` (default: half the real total).
- ``wrong_type``: the first record's quantity becomes ``value`` (default ``"abc"``; an
  object such as ``{"amount": 1}`` works too).
- ``nan``: the first record's quantity is the bare token ``NaN``.
- ``negative``: the first record's quantity is negated.
- ``unknown_status``: the first Akamai period's ``dataStatus`` becomes ``value`` (default
  ``"DATA_PRELIMINARY"``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    STATUS = "status"
    LATENCY = "latency"
    HANG = "hang"
    HTML = "html"
    TRUNCATE = "truncate"
    REPEAT_CURSOR = "repeat_cursor"
    LIE_TOTAL = "lie_total"
    WRONG_TYPE = "wrong_type"
    NAN = "nan"
    NEGATIVE = "negative"
    UNKNOWN_STATUS = "unknown_status"


BEFORE_HANDLER = {FaultKind.STATUS, FaultKind.LATENCY, FaultKind.HANG, FaultKind.HTML}
SHORT_CIRCUIT = {FaultKind.STATUS, FaultKind.HTML}
STATUSES = {202, 429, 500, 502, 503, 504}
_FIELDS = {
    "kind",
    "endpoint",
    "rate",
    "count",
    "status",
    "retry_after",
    "retry_after_s",
    "latency_ms",
    "hang_s",
    "value",
    "total",
}


@dataclass(slots=True)
class Fault:
    """One configured fault and how often it has fired."""

    id: int
    kind: FaultKind
    endpoint: str = "*"
    rate: float = 1.0
    count: int | None = None
    status: int = 503
    retry_after: str | None = None
    retry_after_s: int = 1
    latency_ms: int = 0
    hang_s: float = 3600.0
    value: Any = None
    total: int | None = None
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def matches(self, route: str, path: str) -> bool:
        endpoint = self.endpoint
        if endpoint in ("*", ""):
            return True
        if endpoint.startswith("/"):
            return path.startswith(endpoint)
        return route == endpoint or route.startswith(endpoint + ".")

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind.value, "endpoint": self.endpoint}
        out.update({"rate": self.rate, "count": self.count, "fired": self.fired})
        if self.kind is FaultKind.STATUS:
            out.update(status=self.status)
            if self.retry_after is not None:
                out.update(retry_after=self.retry_after, retry_after_s=self.retry_after_s)
        if self.kind is FaultKind.LATENCY:
            out["latency_ms"] = self.latency_ms
        if self.kind is FaultKind.HANG:
            out["hang_s"] = self.hang_s
        if self.value is not None:
            out["value"] = self.value
        if self.total is not None:
            out["total"] = self.total
        return out


def parse_fault(data: object, fault_id: int, seed: int) -> Fault:
    """Build a fault from its JSON form; raises ValueError naming the bad field."""
    if not isinstance(data, dict):
        raise ValueError("a fault must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
    try:
        kind = FaultKind(str(data.get("kind")))
    except ValueError:
        raise ValueError(f"fault kind must be one of {[k.value for k in FaultKind]}") from None
    fault = Fault(fault_id, kind, rng=random.Random(f"{seed}:fault:{fault_id}"))
    fault.endpoint = _typed(data, "endpoint", str, "*")
    fault.rate = float(_typed(data, "rate", (int, float), 1.0))
    if not 0 <= fault.rate <= 1:
        raise ValueError("fault 'rate' must be between 0 and 1")
    fault.count = _typed(data, "count", int, None)
    if fault.count is not None and fault.count < 1:
        raise ValueError("fault 'count' must be at least 1")
    fault.status = _typed(data, "status", int, 429 if kind is FaultKind.STATUS else 503)
    if kind is FaultKind.STATUS and fault.status not in STATUSES:
        raise ValueError(f"fault 'status' must be one of {sorted(STATUSES)}")
    default_style = "seconds" if kind is FaultKind.STATUS and fault.status == 429 else None
    fault.retry_after = _typed(data, "retry_after", str, default_style)
    if fault.retry_after not in ("seconds", "date", None):
        raise ValueError("fault 'retry_after' must be 'seconds' or 'date'")
    fault.retry_after_s = _typed(data, "retry_after_s", int, 1)
    fault.latency_ms = _typed(data, "latency_ms", int, 0)
    fault.hang_s = float(_typed(data, "hang_s", (int, float), 3600.0))
    fault.total = _typed(data, "total", int, None)
    fault.value = data.get("value")
    if kind is FaultKind.WRONG_TYPE and fault.value is None:
        fault.value = "abc"
    if kind is FaultKind.UNKNOWN_STATUS and fault.value is None:
        fault.value = "DATA_PRELIMINARY"
    return fault


def _typed(data: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = data.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"fault field '{name}' has the wrong type")
    return value


class FaultBook:
    """The configured faults; decides, request by request, which of them fire."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.faults: list[Fault] = []
        self._next_id = 1

    def add(self, specs: Sequence[object]) -> list[Fault]:
        added = []
        for spec in specs:
            added.append(parse_fault(spec, self._next_id, self.seed))
            self._next_id += 1
        self.faults.extend(added)
        return added

    def clear(self) -> None:
        self.faults.clear()

    def draw(self, route: str, path: str, *, has_cursor: bool) -> list[Fault]:
        """The faults firing for one request, in order; at most one answers in their stead."""
        fired = []
        for fault in self.faults:
            if fault.exhausted or not fault.matches(route, path):
                continue
            if fault.kind is FaultKind.REPEAT_CURSOR and not has_cursor:
                continue
            if fault.rate < 1 and fault.rng.random() >= fault.rate:
                continue
            fault.fired += 1
            fired.append(fault)
            if fault.kind in SHORT_CIRCUIT:
                break
        return fired


@dataclass(slots=True)
class PayloadView:
    """Where a response keeps what data faults change: records, meta and periods."""

    records: list[dict[str, Any]]
    quantity_key: str
    meta: dict[str, Any] | None = None
    periods: list[dict[str, Any]] | None = None
    cursor: str = ""


def apply_data_faults(faults: Sequence[Fault], view: PayloadView) -> None:
    """Change the payload behind ``view`` in place as the fired data faults say."""
    for fault in faults:
        first = view.records[0] if view.records else None
        key = view.quantity_key
        if fault.kind is FaultKind.REPEAT_CURSOR and view.meta is not None:
            view.meta["next_cursor"] = view.cursor
        elif fault.kind is FaultKind.LIE_TOTAL and view.meta is not None:
            real = int(view.meta.get("total") or 0)
            view.meta["total"] = fault.total if fault.total is not None else real // 2
        elif fault.kind is FaultKind.WRONG_TYPE and first is not None:
            first[key] = fault.value
        elif fault.kind is FaultKind.NAN and first is not None:
            first[key] = Decimal("NaN")
        elif fault.kind is FaultKind.NEGATIVE and first is not None:
            value = first[key]
            if isinstance(value, int | Decimal) and not isinstance(value, bool) and value != 0:
                first[key] = -abs(Decimal(value))
            else:
                first[key] = Decimal(-1)
        elif fault.kind is FaultKind.UNKNOWN_STATUS and view.periods:
            view.periods[0]["dataStatus"] = fault.value


def truncated(faults: Sequence[Fault], body: bytes) -> bytes:
    if any(f.kind is FaultKind.TRUNCATE for f in faults):
        return body[: len(body) // 2]
    return body
