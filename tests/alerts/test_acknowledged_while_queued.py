"""What was reviewed is not announced, and what moved past its review is announced again:
a message whose items were all acknowledged while it waited in the outbox is withdrawn, and
an acknowledged finding whose month then closes beyond its tolerance is raised again. Through
the real store (SQLite and PostgreSQL) and the Slack stand-in."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from decimal import Decimal

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.alerts.delivery import deliver_due
from reconciler.alerts.outbox import WITHDRAWN, enqueue_run_alerts, purge_delivered
from reconciler.alerts.status import outbox_status, render_status
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.domain import FindingKind, FindingState, ItemCategory, LineStatus, Observation
from reconciler.reconcile.expectations import Evaluated
from reconciler.sandbox.slack import SlackStandIn
from reconciler.settings import Settings, Tolerance
from reconciler.store import findings as items_store
from reconciler.store.findings import current_serial
from reconciler.store.items import findings_table
from reconciler.store.review import apply_acknowledgements
from tests.alerts.helpers import make_item
from tests.alerts.outbox_support import (
    T0,
    WEBHOOK_ENV,
    FakeTime,
    alert_settings,
    all_text,
    header,
    outbox_rows,
    outcome_for,
    record_run,
)


async def _deliver(
    engine: AsyncEngine, settings: Settings, slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    client = SlackWebhookClient(session, timeout_s=5)
    async with asyncio.timeout(30):
        await deliver_due(
            engine,
            settings,
            client,
            now=T0,
            environ={WEBHOOK_ENV: slack.webhook_url()},
            pacer=FakeTime().pacer(),
        )


async def _apply(engine: AsyncEngine, expected: dict[str, str]) -> int:
    async with engine.connect() as conn:
        serial = await current_serial(conn)
    return await apply_acknowledgements(
        engine, alert_settings(), serial=serial, expected=expected, who="ops", note=None, now=T0
    )


async def test_a_message_whose_items_were_all_acknowledged_while_queued_is_withdrawn(
    engine: AsyncEngine, slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    settings = alert_settings()
    first, _ = await record_run(engine, settings, [make_item(fingerprint="fp-a")], run_id=1)
    both = [make_item(fingerprint="fp-b"), make_item(fingerprint="fp-c")]
    second, _ = await record_run(engine, settings, both, run_id=2)
    rows = await outbox_rows(engine)
    assert [json.loads(r.fingerprints)["items"] for r in rows] == [["fp-a"], ["fp-b", "fp-c"]]

    # Reviewed before delivery: all of run 1's items, one of run 2's.
    hashes = {**first.items.values_hashes, **second.items.values_hashes}
    assert await _apply(engine, {f: hashes[f] for f in ("fp-a", "fp-b")}) == 2
    assert [r.state for r in await outbox_rows(engine)] == [WITHDRAWN, "pending"]

    await _deliver(engine, settings, slack, session)
    assert [header(m) for m in slack.received["default"]] == ["reconciler · prod · run 2"]
    status = await outbox_status(engine, settings, now=T0, environ={})
    assert status.to_json()["counts"]["withdrawn"] == 1
    assert (
        "sent: 1, failed: 0, withdrawn (acknowledged before delivery): 1"
        in render_status(status).splitlines()
    )
    await purge_delivered(engine, before=T0 + timedelta(days=1))
    assert WITHDRAWN not in {r.state for r in await outbox_rows(engine)}


async def test_a_message_partly_acknowledged_while_queued_is_sent_with_its_open_items_alone(
    engine: AsyncEngine, slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    settings = alert_settings()
    mixed = [
        make_item(fingerprint="fp-reviewed", text="reviewed-product"),
        make_item(fingerprint="fp-open", text="open-product"),
    ]
    outcome, _ = await record_run(engine, settings, mixed, run_id=1)
    assert "reviewed-product" in (await outbox_rows(engine))[0].payload
    hashes = outcome.items.values_hashes
    assert await _apply(engine, {"fp-reviewed": hashes["fp-reviewed"]}) == 1
    (row,) = await outbox_rows(engine)
    assert (row.state, json.loads(row.fingerprints)) == (
        "pending",
        {"items": ["fp-open"], "resolved": []},
    )

    await _deliver(engine, settings, slack, session)
    (message,) = slack.received["default"]
    assert header(message) == "reconciler · prod · run 1"
    assert "open-product" in all_text(message)
    assert "reviewed-product" not in all_text(message)
    assert message["blocks"][1]["text"]["text"].startswith("*1 item*")


async def test_a_message_that_also_reports_resolved_items_is_kept(
    engine: AsyncEngine,
) -> None:
    settings = alert_settings()
    await record_run(engine, settings, [make_item(fingerprint="fp-old")], run_id=1)
    new, _ = await record_run(
        engine, settings, [make_item(fingerprint="fp-new")], run_id=2, resolve=["fp-old"]
    )
    assert json.loads((await outbox_rows(engine))[1].fingerprints) == {
        "items": ["fp-new"],
        "resolved": ["fp-old"],
    }
    assert await _apply(engine, dict(new.items.values_hashes)) == 1
    rows = await outbox_rows(engine)
    assert [r.state for r in rows] == ["pending", "pending"]
    # Only its resolution notice is left to say.
    assert (rows[1].kind, json.loads(rows[1].fingerprints)) == (
        "resolved",
        {"items": [], "resolved": ["fp-old"]},
    )
    assert header(json.loads(rows[1].payload)) == "reconciler · prod · run 2 · resolved"


def _finding(quantity: str, status: LineStatus) -> Evaluated:
    item = dataclasses.replace(
        make_item(
            fingerprint="fp-over",
            kind=FindingKind.OVER_EXPECTATION,
            category=ItemCategory.FINDING,
            before="1000",
            after=quantity,
        ),
        after=Observation(Decimal(quantity), "GB", status),
    )
    # The values hash leaves the observed total out: growth alone is not news.
    return Evaluated(item, "limit-1000", tolerance=Tolerance(percent=Decimal(5)))


async def _record(engine: AsyncEngine, entry: Evaluated, run_id: int) -> tuple[int, str]:
    settings = alert_settings()
    async with engine.begin() as conn:
        updates = await items_store.record_items(
            conn, [entry], run_id=run_id, now=T0, keep_open_before=False
        )
        queued = await enqueue_run_alerts(
            conn, settings, outcome_for("prod", run_id, updates), now=T0
        )
        state = (
            await conn.execute(
                select(findings_table.c.state).where(findings_table.c.fingerprint == "fp-over")
            )
        ).scalar_one()
    return queued, state


async def test_an_acknowledged_finding_is_raised_again_when_its_month_closes_beyond_tolerance(
    engine: AsyncEngine,
) -> None:
    assert await _record(engine, _finding("1100", LineStatus.COLLECTING), 1) == (1, "open")
    assert await _apply(engine, {"fp-over": "limit-1000"}) == 1
    # Collecting: the total grows every day, and that is not news.
    assert await _record(engine, _finding("1300", LineStatus.COLLECTING), 2) == (
        0,
        FindingState.ACKNOWLEDGED.value,
    )
    # Closed within 5% of the 1,100 acknowledged: still what was reviewed.
    assert await _record(engine, _finding("1155", LineStatus.FINALIZED), 3) == (
        0,
        FindingState.ACKNOWLEDGED.value,
    )


async def test_a_month_that_finalizes_higher_than_acknowledged_is_raised_again(
    engine: AsyncEngine,
) -> None:
    assert await _record(engine, _finding("1100", LineStatus.COLLECTING), 1) == (1, "open")
    assert await _apply(engine, {"fp-over": "limit-1000"}) == 1
    assert await _record(engine, _finding("1156", LineStatus.FINALIZED), 2) == (1, "open")
    # Reviewed again at its final value: then quiet until it moves beyond 5% of that.
    assert await _apply(engine, {"fp-over": "limit-1000"}) == 1
    assert await _record(engine, _finding("1156", LineStatus.FINALIZED), 3) == (
        0,
        FindingState.ACKNOWLEDGED.value,
    )
    assert await _record(engine, _finding("1300", LineStatus.FINALIZED), 4) == (1, "open")
