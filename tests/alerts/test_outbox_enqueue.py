"""Queuing a run's alerts with its findings: grouping, escaping, dedup, acknowledgement,
resolved notices and routes, end to end through the real store and the Slack stand-in."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.alerts.delivery import DeliveryReport, deliver_due
from reconciler.alerts.hook import outbox_hook
from reconciler.alerts.outbox import announcements_t, outbox_t
from reconciler.alerts.status import outbox_status, render_status
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.domain import FindingKind, ItemCategory, PlanItem, Severity
from reconciler.reconcile.expectations import Evaluated
from reconciler.sandbox.slack import SlackStandIn
from reconciler.settings import Settings
from reconciler.store import findings as items_store
from reconciler.store.findings import ItemUpdates, drift_values_hash
from tests.alerts.helpers import HOSTILE, make_item, strings, unescaped
from tests.alerts.outbox_support import (
    T0,
    WEBHOOK_ENV,
    FakeTime,
    alert_settings,
    enqueue_outcome,
    header,
    outbox_rows,
    outcome_for,
    record_run,
)


async def deliver(
    engine: AsyncEngine,
    settings: Settings,
    slack: SlackStandIn,
    session: aiohttp.ClientSession,
    environ: dict[str, str] | None = None,
) -> DeliveryReport:
    client = SlackWebhookClient(session, timeout_s=5)
    env = {WEBHOOK_ENV: slack.webhook_url()} if environ is None else environ
    async with asyncio.timeout(30):
        return await deliver_due(
            engine, settings, client, now=T0, environ=env, pacer=FakeTime().pacer()
        )


def numbered(index: int, severity: Severity) -> PlanItem:
    """Item ``index``: its delta grows with the index, its label names it."""
    item = make_item(
        severity=severity, fingerprint=f"fp-{index:04d}", before="1000", after=str(1000 + index)
    )
    return dataclasses.replace(item, product_name=f"Product {index:04d}")


def severity_of(index: int) -> Severity:
    if index < 20:
        return Severity.CRITICAL
    return Severity.WARNING if index < 220 else Severity.INFO


@pytest.mark.parametrize(
    ("min_severity", "total", "counts"),
    [
        ("info", 500, "20 critical, 200 warning, 280 info"),
        ("warning", 220, "20 critical, 200 warning"),
    ],
)
async def test_500_findings_make_one_grouped_ordered_truncated_message(
    engine: AsyncEngine,
    slack: SlackStandIn,
    session: aiohttp.ClientSession,
    min_severity: str,
    total: int,
    counts: str,
) -> None:
    settings = alert_settings(min_severity=min_severity, max_items=40)
    items = [numbered(i, severity_of(i)) for i in range(500)]
    _, queued = await record_run(engine, settings, items, run_id=7)
    assert queued == 1
    [row] = await outbox_rows(engine)
    assert (row.kind, row.route, row.state, row.attempts, row.run_id) == (
        "run",
        "default",
        "pending",
        0,
        7,
    )

    report = await deliver(engine, settings, slack, session)

    assert (report.sent, report.failed, slack.rejected) == (1, 0, [])
    [message] = slack.received["default"]
    blocks = message["blocks"]
    assert len(blocks) == 44
    assert header(message) == "reconciler · prod · run 7"
    assert blocks[1]["text"]["text"].startswith(f"*{total} items*")
    assert blocks[2] == {"type": "divider"}
    shown = [b["text"]["text"] for b in blocks[3:43]]
    # Critical first, then the warnings with the largest change.
    assert all(s.startswith(":red_circle: *Product 00") for s in shown[:20])
    expected = [f"Product {i:04d}" for i in (*range(19, -1, -1), *range(219, 199, -1))]
    assert [s.split("*")[1].split(" / ")[0] for s in shown] == expected
    assert blocks[43] == {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": f"…and {total - 40} more — run `reconciler plan --source prod`",
                "verbatim": True,
            }
        ],
    }
    assert message["text"].startswith(f"reconciler: prod run 7: {total} items ({counts})\n")
    assert message["text"].endswith(f"…and {total - 5} more")
    assert (await outbox_rows(engine))[0].state == "sent"


async def test_hostile_names_are_escaped_end_to_end(
    engine: AsyncEngine, slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    settings = alert_settings()
    hostile = [
        dataclasses.replace(
            make_item(fingerprint=f"fp-{i}", unit="<b>&"),
            kind="<!here>",
            account=text,
            product=text,
            product_name=text,
            usage_type=text,
            region=text,
            service=text,
            message=f"grew {text}",
        )
        for i, text in enumerate(HOSTILE)
    ]
    await record_run(engine, settings, hostile, run_id=1)
    await deliver(engine, settings, slack, session)

    [message] = slack.received["default"]
    assert slack.rejected == []
    problems = {s: unescaped(s) for s in strings(message) if unescaped(s)}
    assert problems == {}
    body = str(message)
    assert "&lt;!channel&gt;" in body
    assert "&lt;https://evil|click&gt;" in body
    assert "&lt;!here&gt;" in body


async def test_same_values_are_announced_once_new_values_and_higher_severity_again(
    engine: AsyncEngine, slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    settings = alert_settings()
    first = make_item(fingerprint="fp-a", before="100", after="150")
    assert (await record_run(engine, settings, [first], run_id=1))[1] == 1
    # The same values in the next run: not raised again, nothing to say.
    assert (await record_run(engine, settings, [first], run_id=2))[1] == 0
    # Even if a run lists it again with the same values, it is not announced twice.
    again = ItemUpdates([first], [], {"fp-a": drift_values_hash(first)})
    assert await enqueue_outcome(engine, settings, outcome_for("prod", 3, again)) == 0

    changed = make_item(fingerprint="fp-a", before="100", after="200")
    assert (await record_run(engine, settings, [changed], run_id=4))[1] == 1
    same_hash = drift_values_hash(changed)
    rose = dataclasses.replace(changed, severity=Severity.CRITICAL)
    raised = ItemUpdates([rose], [], {"fp-a": same_hash})
    assert await enqueue_outcome(engine, settings, outcome_for("prod", 5, raised)) == 1
    fell = ItemUpdates([changed], [], {"fp-a": same_hash})
    assert await enqueue_outcome(engine, settings, outcome_for("prod", 6, fell)) == 0

    await deliver(engine, settings, slack, session)
    received = slack.received["default"]
    assert [header(m) for m in received] == [f"reconciler · prod · run {n}" for n in (1, 4, 5)]
    assert "100 GB → 150 GB" in received[0]["blocks"][3]["text"]["text"]
    assert "100 GB → 200 GB" in received[1]["blocks"][3]["text"]["text"]
    assert ":red_circle:" in received[2]["blocks"][3]["text"]["text"]
    async with engine.connect() as conn:
        announced = (await conn.execute(select(announcements_t))).all()
    assert [(a.fingerprint, a.values_hash, a.severity) for a in announced] == [
        ("fp-a", same_hash, "critical")
    ]


async def test_acknowledged_items_are_not_announced(
    engine: AsyncEngine, slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    quiet = alert_settings(min_severity="critical")
    settings = alert_settings()
    item = make_item(fingerprint="fp-a")
    outcome, queued = await record_run(engine, quiet, [item], run_id=1)
    assert queued == 0  # below that threshold
    async with engine.begin() as conn:
        acked = await items_store.acknowledge(
            conn,
            dict(outcome.items.values_hashes),
            applied_plan_id=1,
            who="ops@example",
            note=None,
            now=T0,
        )
    assert acked == 1
    # A run that still lists the acknowledged item has nothing to announce.
    assert await enqueue_outcome(engine, settings, outcome_for("prod", 2, outcome.items)) == 0
    assert (await record_run(engine, settings, [item], run_id=3))[1] == 0
    # New values reopen it: that is news.
    moved = make_item(fingerprint="fp-a", after="175")
    assert (await record_run(engine, settings, [moved], run_id=4))[1] == 1
    await deliver(engine, settings, slack, session)
    assert [header(m) for m in slack.received["default"]] == ["reconciler · prod · run 4"]


def finding(fingerprint: str, severity: Severity) -> PlanItem:
    return dataclasses.replace(
        make_item(
            fingerprint=fingerprint,
            severity=severity,
            before="1000",
            after="1200",
            kind=FindingKind.PROJECTED_OVERAGE,
            category=ItemCategory.FINDING,
        ),
        product_name=f"CDN {fingerprint}",
    )


async def test_resolved_notices_follow_announced_findings_only(
    engine: AsyncEngine, slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    settings = alert_settings()
    overage = finding("fp-over", Severity.CRITICAL)
    minor = finding("fp-minor", Severity.INFO)  # below the threshold: never announced
    assert (await record_run(engine, settings, [overage, minor], run_id=1))[1] == 1
    # No longer projected: a short resolved notice, only for what was announced.
    _, queued = await record_run(engine, settings, [], run_id=2, resolve=["fp-over", "fp-minor"])
    assert queued == 1
    # Resolved alongside new items: one message with a resolved section.
    other = finding("fp-other", Severity.WARNING)
    assert (await record_run(engine, settings, [other], run_id=3))[1] == 1
    fresh = finding("fp-fresh", Severity.CRITICAL)
    assert (await record_run(engine, settings, [fresh], run_id=4, resolve=["fp-other"]))[1] == 1
    # Resolved again: nothing announced in between, nothing to say.
    assert (await record_run(engine, settings, [], run_id=5, resolve=["fp-other"]))[1] == 0
    # The overage comes back with the same values: news again after its resolution.
    assert (await record_run(engine, settings, [overage], run_id=6))[1] == 1

    await deliver(engine, settings, slack, session)
    rows = await outbox_rows(engine)
    assert [(r.run_id, r.kind) for r in rows] == [
        (1, "run"),
        (2, "resolved"),
        (3, "run"),
        (4, "run"),
        (6, "run"),
    ]
    received = slack.received["default"]
    notice = received[1]
    assert header(notice) == "reconciler · prod · run 2 · resolved"
    assert notice["text"] == "reconciler: prod · run 2: 1 finding resolved"
    assert "CDN fp-over" in notice["blocks"][1]["text"]["text"]
    assert "fp-minor" not in str(notice)
    mixed = received[3]
    resolved_section = mixed["blocks"][-1]["text"]["text"]
    assert resolved_section.startswith("*:white_check_mark: Resolved (1)*")
    assert "CDN fp-other" in resolved_section
    assert mixed["text"].endswith("1 resolved")
    assert "CDN fp-over" in str(received[4])


async def test_routes_pick_webhook_and_threshold_per_source(
    engine: AsyncEngine, slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    settings = alert_settings(
        routes=[
            {"source": "edge", "webhook_url_env": "EDGE_WEBHOOK", "min_severity": "critical"},
            {"source": "quiet", "min_severity": "critical"},
        ]
    )
    warn, crit = Severity.WARNING, Severity.CRITICAL
    edge = [make_item(fingerprint="e1", severity=warn), make_item(fingerprint="e2", severity=crit)]
    assert (await record_run(engine, settings, edge, run_id=1, source="edge"))[1] == 1
    prod = [make_item(fingerprint="p1", severity=warn)]
    assert (await record_run(engine, settings, prod, run_id=2, source="prod"))[1] == 1
    quiet_warn = [make_item(fingerprint="q1", severity=warn)]
    assert (await record_run(engine, settings, quiet_warn, run_id=3, source="quiet"))[1] == 0
    quiet_crit = [make_item(fingerprint="q2", severity=crit)]
    assert (await record_run(engine, settings, quiet_crit, run_id=4, source="quiet"))[1] == 1
    rows = await outbox_rows(engine)
    assert [(r.source, r.route) for r in rows] == [
        ("edge", "source"),
        ("prod", "default"),
        ("quiet", "default"),
    ]

    environ = {WEBHOOK_ENV: slack.webhook_url("default"), "EDGE_WEBHOOK": slack.webhook_url("edge")}
    report = await deliver(engine, settings, slack, session, environ)
    assert report.sent == 3
    assert [m["text"].splitlines()[0] for m in slack.received["edge"]] == [
        "reconciler: edge run 1: 1 item (1 critical)"
    ]
    assert [header(m) for m in slack.received["default"]] == [
        "reconciler · prod · run 2",
        "reconciler · quiet · run 4",
    ]


async def test_without_a_webhook_messages_are_kept_and_reported(
    engine: AsyncEngine, slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    settings = alert_settings()
    await record_run(engine, settings, [make_item(fingerprint="a")], run_id=1)
    await record_run(engine, settings, [make_item(fingerprint="b")], run_id=2)

    report = await deliver(engine, settings, slack, session, environ={})
    assert (report.sent, report.attempted, report.unconfigured) == (0, 0, 2)
    assert slack.attempts == []
    assert [(r.state, r.attempts) for r in await outbox_rows(engine)] == [("pending", 0)] * 2
    status = await outbox_status(engine, settings, now=T0, environ={})
    assert status.undelivered == 2
    text = render_status(status)
    assert "no webhook configured: 2 messages kept undelivered\n" in text
    assert f"environment variable {WEBHOOK_ENV}" in text

    report = await deliver(engine, settings, slack, session)
    assert (report.sent, report.unconfigured) == (2, 0)
    assert len(slack.received["default"]) == 2


async def test_alerts_are_queued_atomically_with_the_run(engine: AsyncEngine) -> None:
    settings = alert_settings()
    hook = outbox_hook(settings)
    assert hook is not None
    item = make_item(fingerprint="fp-a")
    with pytest.raises(RuntimeError, match="the run failed"):
        async with engine.begin() as conn:
            updates = await items_store.record_items(
                conn,
                [Evaluated(item, drift_values_hash(item))],
                run_id=1,
                now=T0,
                keep_open_before=False,
            )
            await hook(conn, outcome_for("prod", 1, updates))
            assert len(await _rows_in(conn)) == 1
            raise RuntimeError("the run failed")
    assert await outbox_rows(engine) == []
    async with engine.connect() as conn:
        assert (await conn.execute(select(announcements_t))).all() == []

    async with engine.begin() as conn:
        await hook(conn, outcome_for("prod", 2, ItemUpdates([item], [], {"fp-a": "h"})))
    assert [r.run_id for r in await outbox_rows(engine)] == [2]


async def _rows_in(conn: AsyncConnection) -> list[Any]:
    return list((await conn.execute(select(outbox_t))).all())


async def test_max_items_setting_bounds_the_listed_items(engine: AsyncEngine) -> None:
    settings = alert_settings(max_items=3)
    items = [
        make_item(fingerprint=f"m{i}", text=f"Product {i:04d}", severity=Severity.WARNING)
        for i in range(10)
    ]
    _, queued = await record_run(engine, settings, items, run_id=9)
    assert queued == 1
    [row] = await outbox_rows(engine)
    payload = json.loads(row.payload)
    sections = [b for b in payload["blocks"] if "Product" in str(b.get("text", ""))]
    assert len(sections) == 3
    assert "and 7 more" in json.dumps(payload, ensure_ascii=False)
