"""Microsoft Teams through a Workflows webhook: one Adaptive Card per run, with what the
Slack message says (title, counts, the most important items, resolved ones, the link).

Within Teams' limits: Adaptive Card 1.4 (what Workflows cards render everywhere), and the
whole request under 28 KB; items that do not fit are summarized as "…and N more".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.alerts.channels.text import change, clip_plain, counts, item_title, label, title
from reconciler.alerts.slack import order_items
from reconciler.domain import PlanItem

MAX_REQUEST_BYTES = 28_000
CARD_VERSION = "1.4"
_COLOR = {"critical": "Attention", "warning": "Warning", "info": "Accent"}


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _item_block(item: PlanItem) -> dict[str, Any]:
    lines = [change(item)]
    if item.message:
        lines.append(clip_plain(item.message.strip(), 500))
    return {
        "type": "Container",
        "separator": True,
        "items": [
            _text(item_title(item), weight="Bolder", color=_COLOR[item.severity.value]),
            _text("\n\n".join(lines), isSubtle=True),
        ],
    }


def _message(body: list[dict[str, Any]], report_url: str | None) -> dict[str, Any]:
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
    }
    if report_url:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open the report", "url": report_url}
        ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def render_card(
    *,
    source: str,
    run_id: int | None,
    items: Sequence[PlanItem],
    resolved: Sequence[PlanItem],
    report_url: str | None,
    max_items: int,
    see_all_hint: str,
) -> dict[str, Any]:
    ordered = order_items(items)
    head = [_text(title(source, run_id, not items), weight="Bolder", size="Medium")]
    if ordered:
        head.append(_text(counts(ordered)))
    resolved_block = (
        [_text(f"Resolved ({len(resolved)}): " + "; ".join(label(i) for i in resolved[:20]))]
        if resolved
        else []
    )
    shown = min(len(ordered), max_items)
    while True:
        hidden = len(ordered) - shown
        more = [_text(f"…and {hidden} more: run `{see_all_hint}`", isSubtle=True)] if hidden else []
        blocks = head + [_item_block(i) for i in ordered[:shown]] + resolved_block + more
        message = _message(blocks, report_url)
        size = len(json.dumps(message, ensure_ascii=False).encode())
        if size <= MAX_REQUEST_BYTES or shown == 0:
            return message
        shown -= 1
