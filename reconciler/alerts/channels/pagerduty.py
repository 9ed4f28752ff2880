"""PagerDuty Events API v2: one alert per critical fingerprint, resolved with it.

Each item is its own event (its own outbox row): ``trigger`` with ``dedup_key`` = the
item's fingerprint (a re-announcement updates the same alert), and ``resolve`` with the
same key when the finding resolves. The routing key is added only when the event is sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.alerts.channels.text import change, clip_plain, item_title
from reconciler.domain import PlanItem, Severity
from reconciler.reconcile.plan import item_json

MAX_SUMMARY_CHARS = 1024
SEVERITY = {Severity.CRITICAL: "critical", Severity.WARNING: "warning", Severity.INFO: "info"}


def trigger_event(item: PlanItem, *, at: datetime, report_url: str | None) -> dict[str, Any]:
    summary = f"{item_title(item)}: {change(item)} (source {item.source})"
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": item.fingerprint,
        "payload": {
            "summary": clip_plain(summary, MAX_SUMMARY_CHARS),
            "source": f"reconciler/{item.source}",
            "severity": SEVERITY[item.severity],
            "timestamp": at.isoformat(timespec="seconds"),
            "component": clip_plain(item.line_label, 255) or "all lines",
            "group": item.source,
            "class": item.kind,
            "custom_details": item_json(item),
        },
        "client": "reconciler",
    }
    if report_url:
        event["links"] = [{"href": report_url, "text": "reconciler review report"}]
    return event


def resolve_event(item: PlanItem) -> dict[str, Any]:
    return {"event_action": "resolve", "dedup_key": item.fingerprint}


def with_routing_key(event: dict[str, Any], routing_key: str) -> dict[str, Any]:
    return {"routing_key": routing_key, **event}
