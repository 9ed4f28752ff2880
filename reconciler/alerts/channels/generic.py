"""The generic webhook: a documented, versioned JSON body, signed with HMAC-SHA256.

Body (``"version": "1"``): ``type`` (``run``, ``resolved`` or ``test``), ``id`` (the outbox
message number, the same on every attempt), ``source``, ``run_id``, ``created_at``,
``possible_repeat``, ``counts`` by severity, ``items`` and ``resolved`` (each as in
``plan --json``: exact quantities, deltas and percents as decimal strings).

Headers: ``X-Reconciler-Timestamp`` (Unix seconds when sent), ``X-Reconciler-Delivery``
(the message id) and ``X-Reconciler-Signature: v1=<hex>``, where ``<hex>`` is
HMAC-SHA256 with the channel's secret over ``<timestamp>.`` followed by the exact body
bytes. A receiver recomputes it, compares in constant time, refuses a timestamp more than
5 minutes away from its clock and a delivery id it has already seen (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from reconciler.alerts.channels.text import SEVERITIES_DESC
from reconciler.alerts.slack import order_items
from reconciler.domain import PlanItem
from reconciler.reconcile.plan import item_json

BODY_VERSION = "1"
SIGNATURE_HEADER = "X-Reconciler-Signature"
TIMESTAMP_HEADER = "X-Reconciler-Timestamp"
DELIVERY_HEADER = "X-Reconciler-Delivery"
TOLERANCE_S = 300


def render_webhook_body(
    *,
    source: str,
    run_id: int | None,
    items: Sequence[PlanItem],
    resolved: Sequence[PlanItem],
    created_at: datetime,
    kind: str,
) -> dict[str, Any]:
    """The body without its ``id`` and ``possible_repeat`` (set when it is sent)."""
    by_severity = Counter(i.severity for i in items)
    return {
        "version": BODY_VERSION,
        "type": kind,
        "source": source,
        "run_id": run_id,
        "created_at": created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "counts": {s.value: by_severity[s] for s in SEVERITIES_DESC},
        "items": [item_json(i) for i in order_items(items)],
        "resolved": [item_json(i) for i in resolved],
    }


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Reconciler-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(
    secret: bytes, headers: dict[str, str], body: bytes, *, now: float, seen: set[str]
) -> str | None:
    """What a receiver does (and the test receiver runs): None if the request is genuine
    and new, else why it is refused."""
    try:
        timestamp = int(headers[TIMESTAMP_HEADER])
        signature = headers[SIGNATURE_HEADER]
        delivery = headers[DELIVERY_HEADER]
    except (KeyError, ValueError):
        return "missing or malformed signature headers"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return "bad signature"
    if abs(now - timestamp) > TOLERANCE_S:
        return "timestamp outside the tolerance (a replay?)"
    if delivery in seen:
        return "delivery already received (a replay)"
    seen.add(delivery)
    return None


def signed_request(
    payload: dict[str, Any], *, message_id: int, repeat: bool, secret: bytes, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    """The exact body bytes and headers of one attempt."""
    body = {**payload, "id": str(message_id), "possible_repeat": repeat}
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: str(message_id),
        SIGNATURE_HEADER: sign(secret, timestamp, data),
        "User-Agent": "reconciler-webhook/1",
    }
    return data, headers
