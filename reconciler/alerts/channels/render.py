"""A run's outbox rows for one channel: what each channel's renderer makes of its items."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from reconciler.alerts.channels.email import render_email
from reconciler.alerts.channels.generic import render_webhook_body
from reconciler.alerts.channels.pagerduty import resolve_event, trigger_event
from reconciler.alerts.channels.selection import channel_route
from reconciler.alerts.channels.teams import render_card
from reconciler.domain import PlanItem
from reconciler.settings import ChannelSettings, Settings


def encode_payload(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def channel_outbox_rows(
    settings: Settings,
    channel: ChannelSettings,
    source: str,
    run_id: int,
    items: Sequence[PlanItem],
    resolved: Sequence[PlanItem],
    now: datetime,
) -> list[dict[str, Any]]:
    """The rows to queue (without times): one per run for webhook, Teams and email, one
    per event for PagerDuty (a trigger per item, a resolve per resolved item)."""
    if not items and not resolved:
        return []
    report_url = settings.alerts.slack.report_link_base
    kind = "run" if items else "resolved"

    def row(payload: dict[str, Any], row_kind: str = kind) -> dict[str, Any]:
        return {
            "source": source,
            "run_id": run_id,
            "kind": row_kind,
            "route": channel_route(channel.name),
            "payload": encode_payload(payload),
            "state": "pending",
            "attempts": 0,
        }

    if channel.type == "pagerduty":
        triggers = [row(trigger_event(i, at=now, report_url=report_url), "trigger") for i in items]
        return triggers + [row(resolve_event(i), "resolve") for i in resolved]
    if channel.type == "webhook":
        body = render_webhook_body(
            source=source, run_id=run_id, items=items, resolved=resolved, created_at=now, kind=kind
        )
        return [row(body)]
    common: dict[str, Any] = {
        "source": source,
        "run_id": run_id,
        "items": items,
        "resolved": resolved,
        "report_url": report_url,
        "max_items": settings.alerts.slack.max_items,
        "see_all_hint": f"reconciler plan --source {source}",
    }
    if channel.type == "teams":
        return [row(render_card(**common))]
    return [row(render_email(**common))]


def render_test(
    channel: ChannelSettings, *, hostname: str, version: str, now: datetime
) -> list[dict[str, Any]]:
    """The payloads of ``alerts test --channel``: clearly labelled, no finding behind them
    (PagerDuty: an info trigger and its resolve, so no incident stays open)."""
    text = f"[TEST] reconciler test message from {hostname} (version {version})"
    if channel.type == "pagerduty":
        key = f"reconciler-test-{hostname}"[:255]
        trigger = {
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {"summary": text, "source": f"reconciler/{hostname}", "severity": "info"},
            "client": "reconciler",
        }
        return [trigger, {"event_action": "resolve", "dedup_key": key}]
    if channel.type == "webhook":
        body = render_webhook_body(
            source="", run_id=None, items=(), resolved=(), created_at=now, kind="test"
        )
        return [{**body, "message": text}]
    if channel.type == "teams":
        card = render_card(
            source=hostname,
            run_id=None,
            items=(),
            resolved=(),
            report_url=None,
            max_items=1,
            see_all_hint="",
        )
        card["attachments"][0]["content"]["body"][0]["text"] = text
        return [card]
    return [{"subject": text, "text": text + "\nNo action is needed.\n", "html": f"<p>{text}</p>"}]
