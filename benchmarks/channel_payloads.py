"""Print what each alert channel would receive for the demo's run (the docs' examples).

    python -m benchmarks.channel_payloads > /tmp/payloads.md

Runs the demo into a temporary directory, takes the items of its final plan for the
``fastly`` source (critical ones first, at most four) and renders them with each channel's
own renderer, as the outbox would queue them.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.alerts.channels.email import render_email
from reconciler.alerts.channels.generic import render_webhook_body, signed_request
from reconciler.alerts.channels.pagerduty import trigger_event
from reconciler.alerts.channels.teams import render_card
from reconciler.alerts.slack import order_items
from reconciler.demo import run_demo
from reconciler.demo_directory import prepare_directory


def _block(title: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    fence = "text" if isinstance(value, str) else "json"
    return f"### {title}\n\n```{fence}\n{text}\n```\n"


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "demo"
        prepare_directory(directory)
        result = await run_demo(directory)
    items = order_items([i for i in result.plan.items if i.source == "fastly"])[:4]
    now = datetime(2026, 7, 31, 6, 0, tzinfo=UTC)
    common: dict[str, Any] = {
        "source": "fastly",
        "run_id": 62,
        "items": items,
        "resolved": [],
        "report_url": None,
        "max_items": 20,
        "see_all_hint": "reconciler plan --source fastly",
    }
    body = render_webhook_body(
        source="fastly", run_id=62, items=items, resolved=[], created_at=now, kind="run"
    )
    data, headers = signed_request(
        body, message_id=17, repeat=False, secret=b"example-secret", timestamp=1785477600
    )
    critical = [i for i in items if i.severity.value == "critical"] or items[:1]
    print(_block("Generic webhook: headers", headers))
    print(_block("Generic webhook: body", json.loads(data)))
    print(
        _block("PagerDuty: one trigger event", trigger_event(critical[0], at=now, report_url=None))
    )
    print(_block("Teams: the Adaptive Card message", render_card(**common)))
    mail = render_email(**common)
    print(_block("Email: subject", mail["subject"]))
    print(_block("Email: text part", mail["text"]))
    print(_block("Email: HTML part", mail["html"]))


if __name__ == "__main__":
    asyncio.run(main())
