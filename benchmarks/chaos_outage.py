"""Slack outage: minutes of 500s, then of 429s, while pulls keep raising findings.

Time is simulated: every 5 simulated seconds the outbox is delivered (``deliver_due`` with
``now``, as the daemon does every ``alert_every_s``), and every simulated minute one source
is pulled from the sandbox after an event that changes its numbers, so each run has new
drift to announce. Slack (the stand-in) answers 500 for the first half of the outage and
429 with ``Retry-After: 60`` for the second. After it recovers, every queued message must
arrive exactly once, in order, byte for byte as queued, and none may be lost.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from chaos_support import Results, Sandbox, sandbox
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.alerts.delivery import DeliveryPolicy, Pacer, deliver_due
from reconciler.alerts.outbox import enqueue_run_alerts, outbox_t
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.domain import utcnow
from reconciler.providers.http import HttpClient
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.sandbox.slack import Answer, SlackStandIn
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.db import create_engine, upgrade

SECTION = "outage"
TODAY = date(2024, 7, 10)
STEP = timedelta(seconds=5)
WEBHOOK_ENV = "CHAOS_SLACK_WEBHOOK_URL"
EU_BANDWIDTH = {"source": "fastly", "usage_type": "Europe Bandwidth", "monthly_max": "1"}


class SimClock:
    """Simulated time; the pacer's sleeps move it too."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self._mono = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        self._mono += seconds


def settings_for(box: Sandbox, db: Path, edgerc: Path) -> Settings:
    common = {"base_url": box.base_url, "lookback_months": 3, "max_retries": 2}
    return settings_from_mapping(
        {
            "state": {"database_url": f"sqlite+aiosqlite:///{db}"},
            "sources": [
                {"name": "fastly", "provider": "fastly", **common},
                {"name": "akamai", "provider": "akamai", "edgerc": str(edgerc), **common},
            ],
            "expectations": [EU_BANDWIDTH],
            "alerts": {"slack": {"webhook_url_env": WEBHOOK_ENV, "min_severity": "warning"}},
        }
    )


def change_event(round_no: int) -> dict[str, Any]:
    """Round ``n``'s event: alternately a Fastly decrease and an Akamai restatement."""
    if round_no % 2 == 0:
        usage = ("North America Bandwidth", "Europe Bandwidth", "North America Requests")
        return {
            "kind": "decrease",
            "provider": "fastly",
            "day": TODAY.isoformat(),
            "month": "2024-07",
            "usage_type": usage[(round_no // 2) % len(usage)],
            "factor": "0.9",
        }
    return {
        "kind": "restate",
        "provider": "akamai",
        "day": TODAY.isoformat(),
        "month": "2024-05",
        "factor": "1.01",
    }


async def outbox(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(outbox_t).order_by(outbox_t.c.id))).all())


async def run_outage(results: Results, work: Path, *, minutes: int) -> None:
    async with sandbox({}, today=TODAY.isoformat()) as box, SlackStandIn() as slack:
        db = work / "state.db"
        settings = settings_for(box, db, box.write_edgerc(work / "sandbox.edgerc"))
        engine = create_engine(settings.database_url, create=True)
        await upgrade(engine)
        try:
            await _simulate(results, box, slack, engine, settings, minutes)
        finally:
            await engine.dispose()


async def _simulate(
    results: Results,
    box: Sandbox,
    slack: SlackStandIn,
    engine: AsyncEngine,
    settings: Settings,
    minutes: int,
) -> None:
    clock = SimClock(utcnow().replace(microsecond=0))
    start = clock.now
    outage_end = start + timedelta(minutes=minutes)
    env = {WEBHOOK_ENV: slack.webhook_url("alerts"), "FASTLY_API_TOKEN": box.fastly_token}
    pacer = Pacer(1.0, sleep=clock.sleep, monotonic=clock.monotonic)
    policy = DeliveryPolicy()

    async def hook(conn: AsyncConnection, outcome: RunOutcome) -> None:
        await enqueue_run_alerts(conn, settings, outcome, now=clock())

    slack.answer_all("server_error")
    raised = pulls = round_no = requests_in_outage = 0
    phase_429 = outage_over = False
    async with HttpClient() as http, aiohttp.ClientSession() as session:
        client = SlackWebhookClient(session, clock=clock)
        # A first pull of both sources: the import, nothing to announce.
        for source in ("fastly", "akamai"):
            await refresh_source(engine, settings, source, http, today=TODAY, environ=env)
        while clock.now < outage_end or await _undelivered(engine):
            if clock.now >= start + timedelta(hours=3):
                break  # bounded: the check below reports what is left
            elapsed = clock.now - start
            if not phase_429 and elapsed >= timedelta(minutes=minutes / 2):
                slack.clear_behaviour()
                slack.answer_all(Answer(429, "rate_limited", retry_after="60"))
                phase_429 = True
            if not outage_over and clock.now >= outage_end:
                slack.clear_behaviour()
                requests_in_outage = len(slack.attempts)
                outage_over = True
            if clock.now < outage_end and elapsed.total_seconds() % 60 == 0:
                await box.add_events(change_event(round_no))
                source = "fastly" if round_no % 2 == 0 else "akamai"
                outcome = await refresh_source(
                    engine,
                    settings,
                    source,
                    http,
                    today=TODAY,
                    environ=env,
                    clock=clock,
                    alert_hook=hook,
                )
                pulls += 1
                round_no += 1
                raised += len(outcome.items.raised)
            await deliver_due(
                engine, settings, client, now=clock(), environ=env, policy=policy, pacer=pacer
            )
            clock.now += STEP
    recovered = clock.now - outage_end
    rows = await outbox(engine)
    _check(results, slack, rows, minutes, pulls, raised, requests_in_outage, recovered)


async def _undelivered(engine: AsyncEngine) -> bool:
    return any(r.state in ("pending", "sending") for r in await outbox(engine))


def _check(
    results: Results,
    slack: SlackStandIn,
    rows: list[Any],
    minutes: int,
    pulls: int,
    raised: int,
    requests_in_outage: int,
    recovered: timedelta,
) -> None:
    received = slack.received.get("alerts", [])
    queued = [json.loads(r.payload, parse_float=Decimal) for r in rows]
    sent = [r for r in rows if r.state == "sent"]
    lost = [r.id for r in rows if r.state != "sent"]
    duplicates = len(received) - len({json.dumps(m, sort_keys=True, default=str) for m in received})
    exact = received == queued
    ok = exact and not lost and not duplicates and not slack.rejected and len(rows) > 0
    statuses = sorted({a.status for a in slack.attempts[:requests_in_outage]})
    results.add(
        SECTION,
        f"{minutes} min of Slack 500 then 429",
        f"{pulls} pulls raised {raised} items → {len(rows)} messages queued; "
        f"{requests_in_outage} webhook requests during the outage (statuses {statuses}); "
        f"all sent {recovered.total_seconds():.0f}s (simulated) after recovery",
        len(rows) > 0,
    )
    results.add(
        SECTION,
        "after recovery",
        f"{len(sent)}/{len(rows)} delivered, {len(received)} received by Slack, "
        f"{duplicates} duplicates, {len(lost)} lost, {len(slack.rejected)} rejected; "
        f"received == queued, in order: {'yes' if exact else 'NO'}",
        ok,
        "" if ok else f"lost {lost[:5]}, duplicates {duplicates}",
    )
