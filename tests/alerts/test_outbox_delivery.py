"""Delivering the outbox to the Slack stand-in: pacing, 429 and backoff, a long outage on a
simulated clock, permanent errors, crashes, cancellation and restarts, secrets kept out."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.alerts.delivery import DeliveryPolicy, DeliveryReport, Pacer, deliver_due
from reconciler.alerts.outbox import outbox_t
from reconciler.alerts.status import outbox_status, render_status
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.sandbox.slack import Answer, SlackStandIn
from reconciler.settings import Settings
from reconciler.store.db import create_engine, upgrade
from tests.alerts.outbox_support import (
    T0,
    WEBHOOK_ENV,
    Deliverer,
    FakeTime,
    alert_settings,
    dump_tables,
    fixed_policy,
    header,
    outbox_rows,
    queue_runs,
    runs_received,
)


async def test_one_message_per_second_per_webhook(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    settings = alert_settings(routes=[{"source": "edge", "webhook_url_env": "EDGE"}])
    for run_id in range(1, 4):  # alternating destinations: prod, edge, prod, edge, ...
        await queue_runs(engine, settings, 1, first_run=run_id * 2 - 1, source="prod")
        await queue_runs(engine, settings, 1, first_run=run_id * 2, source="edge")
    env = {WEBHOOK_ENV: slack.webhook_url("default"), "EDGE": slack.webhook_url("edge")}
    deliver = Deliverer(engine, settings, client, env)

    report = await deliver(T0)

    assert report.sent == 6
    assert runs_received(slack, "default") == [1, 3, 5]
    assert runs_received(slack, "edge") == [2, 4, 6]
    # Two webhooks interleaved: each waits out its own second, the other fills the gap.
    assert deliver.time.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]
    sends = FakeTime()
    pacer = sends.pacer()
    for _ in range(4):
        await pacer.wait("same")
    assert sends.sleeps == [1.0, 1.0, 1.0]


async def test_a_failing_webhook_is_not_tried_again_in_the_same_pass(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    # Source "edge" has its own route, but to the same URL as the global one.
    settings = alert_settings(routes=[{"source": "edge", "webhook_url_env": "EDGE"}])
    await queue_runs(engine, settings, 1, first_run=1)
    await queue_runs(engine, settings, 1, first_run=2, source="edge")
    url = slack.webhook_url()
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: url, "EDGE": url})
    slack.answer_all("server_error")

    report = await deliver(T0)

    assert (report.deferred, len(slack.attempts)) == (1, 1)
    first, second = await outbox_rows(engine)
    assert (first.state, first.attempts) == ("pending", 1)
    assert first.next_attempt_at > T0
    # Given back untried: still due now, no attempt counted.
    assert (second.state, second.attempts, second.next_attempt_at) == ("pending", 0, T0)


async def test_rate_limit_waits_retry_after_for_the_whole_webhook(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 3)
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: slack.webhook_url()})
    slack.answer_next(Answer(429, "rate_limited", retry_after="120"))

    report = await deliver(T0)

    assert (report.sent, report.deferred, len(slack.attempts)) == (0, 1, 1)
    rows = await outbox_rows(engine)
    assert [(r.state, r.attempts) for r in rows] == [("pending", 1), ("pending", 0), ("pending", 0)]
    for row in rows:
        assert timedelta(seconds=120) <= row.next_attempt_at - T0 < timedelta(seconds=125)
    assert "HTTP 429 rate_limited, retry after 120s" in rows[0].last_error

    assert (await deliver(T0 + timedelta(seconds=60))).attempted == 0
    assert len(slack.attempts) == 1
    report = await deliver(T0 + timedelta(seconds=130))
    assert report.sent == 3
    assert runs_received(slack) == [1, 2, 3]


async def test_transient_failures_back_off_exponentially_up_to_the_cap(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 1)
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: slack.webhook_url()})
    slack.answer_all("server_error")
    now, waits = T0, []
    for _ in range(10):
        report = await deliver(now, ignore_backoff=False)
        assert report.deferred == 1
        [row] = await outbox_rows(engine)
        waits.append(round((row.next_attempt_at - now).total_seconds()))
        now = row.next_attempt_at
    # Jitter fixed at its middle: 3/4 of 5s × 2^n, capped at 3/4 of 15 minutes.
    assert waits == [4, 8, 15, 30, 60, 120, 240, 480, 675, 675]
    assert row.attempts == 10
    assert "HTTP 500 rollup_error" in row.last_error


async def test_a_message_failing_transiently_for_days_is_given_up(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 2)
    policy = fixed_policy(max_transient_attempts=3)
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: slack.webhook_url()}, policy)
    slack.answer_next(Answer(429, "rate_limited", retry_after="1"), times=4)
    slack.answer_next("server_error", times=2)
    reports = [await deliver(T0 + timedelta(hours=n), ignore_backoff=True) for n in range(7)]

    # 429s never give up; the first 5xx past the limit does; message 2 goes on.
    assert [(r.deferred, r.failed, r.sent) for r in reports] == [
        *[(1, 0, 0)] * 4,
        (0, 1, 0),
        (1, 0, 0),
        (0, 0, 1),
    ]
    rows = await outbox_rows(engine)
    assert [(r.state, r.attempts) for r in rows] == [("failed", 5), ("sent", 2)]
    assert rows[0].last_error == (
        "gave up after 5 attempts: webhook default: transient (HTTP 500 rollup_error)"
    )


async def test_an_outage_of_many_minutes_then_everything_exactly_once(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    """30 messages queued during a 25-minute outage (500s, then 429s for 13 minutes), polled
    every 5 simulated seconds like the daemon does: few requests during the outage, then
    every message once, in order."""
    settings = alert_settings()
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: slack.webhook_url()})
    slack.answer_all("server_error")
    now, step = T0, timedelta(seconds=5)
    outage_end = T0 + timedelta(minutes=25)
    next_run = 1
    while now < outage_end:
        if now.minute % 2 == 0 and now.second == 0:  # a run every other minute
            await queue_runs(engine, settings, 1, first_run=next_run, now=now)
            next_run += 1
        if now == T0 + timedelta(minutes=12):
            slack.clear_behaviour()
            slack.answer_all(Answer(429, "rate_limited", retry_after="60"))
        await deliver(now)
        now += step
    queued = next_run - 1
    failed_requests = len(slack.attempts)
    assert queued == 13
    assert slack.received["default"] == []
    statuses = [a.status for a in slack.attempts]
    assert failed_requests <= 20  # instead of one per message per poll (~3,900)
    assert {500, 429} == set(statuses)

    slack.clear_behaviour()
    await queue_runs(engine, settings, 30 - queued, first_run=next_run, now=now)
    recovered_at = None
    while recovered_at is None:
        report = await deliver(now)
        if report.sent and all(r.state == "sent" for r in await outbox_rows(engine)):
            recovered_at = now
        now += step
        assert now < outage_end + timedelta(minutes=30)

    assert runs_received(slack) == list(range(1, 31))
    assert len(slack.attempts) == failed_requests + 30
    assert recovered_at - outage_end <= timedelta(seconds=65)  # one Retry-After at most
    assert all(r.sent_at is not None for r in await outbox_rows(engine))
    # Nothing is sent twice afterwards.
    assert (await deliver(now + timedelta(hours=1), ignore_backoff=True)).attempted == 0


async def test_a_permanent_error_does_not_block_other_messages(
    engine: AsyncEngine,
    slack: SlackStandIn,
    client: SlackWebhookClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 5)
    # Message 3 is broken (too many blocks): Slack answers invalid_blocks.
    async with engine.begin() as conn:
        broken = {"text": "x", "blocks": [{"type": "divider"}] * 51}
        await conn.execute(
            update(outbox_t).where(outbox_t.c.run_id == 3).values(payload=json.dumps(broken))
        )
    slack.answer_next("invalid_payload")  # message 1
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: slack.webhook_url()})

    with caplog.at_level(logging.INFO):
        report = await deliver(T0)

    assert (report.sent, report.failed, report.deferred) == (3, 2, 0)
    assert runs_received(slack) == [2, 4, 5]
    rows = await outbox_rows(engine)
    assert [r.state for r in rows] == ["failed", "sent", "failed", "sent", "sent"]
    assert rows[0].last_error == "webhook default: permanent (HTTP 400 invalid_payload)"
    assert rows[2].last_error == "webhook default: permanent (HTTP 400 invalid_blocks)"
    assert "alert message #1 (source 'prod') not delivered and not retried" in caplog.text
    # Failed messages are not retried, even by a flush.
    assert (await deliver(T0 + timedelta(hours=1), ignore_backoff=True)).attempted == 0

    status = await outbox_status(engine, settings, now=T0, environ=deliver.environ)
    assert [(f.id, f.reason) for f in status.failures] == [
        (3, "webhook default: permanent (HTTP 400 invalid_blocks)"),
        (1, "webhook default: permanent (HTTP 400 invalid_payload)"),
    ]
    text = render_status(status)
    assert "sent: 3, failed: 2\n" in text
    assert "  failed #1 (run, source prod run 1, 1 attempt): webhook default: permanent" in text


async def test_a_message_claimed_by_a_crashed_deliverer_is_sent_after_its_lease(
    engine: AsyncEngine,
    slack: SlackStandIn,
    client: SlackWebhookClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 2)
    # What a deliverer that died between claiming message 1 and recording the answer leaves.
    async with engine.begin() as conn:
        await conn.execute(
            update(outbox_t)
            .where(outbox_t.c.run_id == 1)
            .values(state="sending", attempts=1, next_attempt_at=T0 + timedelta(minutes=5))
        )
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: slack.webhook_url()})

    assert (await deliver(T0 + timedelta(minutes=1))).sent == 1
    assert runs_received(slack) == [2]  # the claimed one is left to its holder meanwhile
    with caplog.at_level(logging.WARNING):
        assert (await deliver(T0 + timedelta(minutes=6))).sent == 1
    assert runs_received(slack, strip_repeat=True) == [2, 1]
    repeat = header(slack.received["default"][1])
    assert repeat == "[possible repeat of alert #1] reconciler · prod · run 1"
    assert slack.received["default"][1]["text"].startswith("[possible repeat of alert #1] ")
    assert "was being sent when its deliverer stopped; sending it again" in caplog.text
    assert [(r.state, r.attempts) for r in await outbox_rows(engine)] == [("sent", 2), ("sent", 1)]


class StalledPacer(Pacer):
    """Before the first message goes out, lets ``meanwhile`` run: what happens while this
    deliverer is stalled between its claim and Slack's answer for longer than the lease."""

    def __init__(self, meanwhile: Callable[[], Awaitable[None]]) -> None:
        super().__init__(0)
        self._meanwhile: Callable[[], Awaitable[None]] | None = meanwhile

    async def wait(self, key: str) -> None:
        await super().wait(key)
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            await meanwhile()


class GatedPacer(Pacer):
    """Says when a claimed message is about to be posted, and posts it once let through."""

    def __init__(self) -> None:
        super().__init__(0)
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()

    async def wait(self, key: str) -> None:
        await super().wait(key)
        self.reached.set()
        await self.gate.wait()


@pytest.mark.parametrize("takeover", ["recorded", "in flight"])
@pytest.mark.parametrize("late_answer", ["delivered", "server_error", "invalid_blocks"])
async def test_an_answer_arriving_after_the_lease_is_not_recorded_over_the_takeover(
    takeover: str,
    late_answer: str,
    engine: AsyncEngine,
    slack: SlackStandIn,
    client: SlackWebhookClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A deliverer stalls between its claim and Slack's answer past the claim's lease; another
    takes the message over (labelled a possible repeat) and its answer is either recorded
    already or still to come when the stalled deliverer's answer arrives."""
    settings = alert_settings()
    await queue_runs(engine, settings, 1)
    environ = {WEBHOOK_ENV: slack.webhook_url()}
    other_pacer = GatedPacer()
    if takeover == "recorded":
        other_pacer.gate.set()
    others: list[asyncio.Task[DeliveryReport]] = []

    async def lease_expires_and_another_deliverer_claims() -> None:
        later = T0 + timedelta(minutes=6)
        other = deliver_due(engine, settings, client, now=later, environ=environ, pacer=other_pacer)
        others.append(asyncio.create_task(other))
        await (others[0] if takeover == "recorded" else other_pacer.reached.wait())
        if late_answer != "delivered":  # how the stalled deliverer's request is answered
            slack.answer_next(late_answer)

    with caplog.at_level(logging.WARNING):
        async with asyncio.timeout(30):
            late = await deliver_due(
                engine,
                settings,
                client,
                now=T0,
                environ=environ,
                pacer=StalledPacer(lease_expires_and_another_deliverer_claims),
            )
            other_pacer.gate.set()
            taken_over = await others[0]

    assert (taken_over.sent, taken_over.lost_claims) == (1, 0)
    assert late.lost_claims == 1
    assert "1 answers recorded too late" in late.summary()
    assert "answer recorded too late, another deliverer took it over" in caplog.text
    # The takeover's answer stands: the late one (a success, a 5xx to retry, a refusal for
    # good) changes nothing, so the message is neither sent a third time nor marked failed.
    [row] = await outbox_rows(engine)
    assert (row.state, row.attempts, row.last_error) == ("sent", 2, None)
    deliver = Deliverer(engine, settings, client, environ)
    assert (await deliver(T0 + timedelta(hours=1), ignore_backoff=True)).attempted == 0
    titles = [header(m) for m in slack.received.get("default", [])]
    repeat = "[possible repeat of alert #1] reconciler · prod · run 1"
    first = "reconciler · prod · run 1"
    if late_answer == "delivered":
        assert titles == ([repeat, first] if takeover == "recorded" else [first, repeat])
    else:  # the stand-in answered the stalled request without taking its message
        assert titles == [repeat]


class SignallingPacer(Pacer):
    """Tells when a claimed message is about to be posted."""

    def __init__(self) -> None:
        super().__init__(0)
        self.posting = asyncio.Event()

    async def wait(self, key: str) -> None:
        await super().wait(key)
        self.posting.set()


async def test_cancelling_a_pass_finishes_the_message_in_flight(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 3)
    slack.answer_next(Answer(None, delay_s=0.5))  # Slack is slow to answer message 1
    env = {WEBHOOK_ENV: slack.webhook_url()}
    pacer = SignallingPacer()
    task = asyncio.create_task(
        deliver_due(engine, settings, client, now=T0, environ=env, pacer=pacer)
    )
    async with asyncio.timeout(10):
        await pacer.posting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    rows = await outbox_rows(engine)
    assert [r.state for r in rows] == ["sent", "pending", "pending"]
    deliver = Deliverer(engine, settings, client, env)
    assert (await deliver(T0)).sent == 2
    assert runs_received(slack) == [1, 2, 3]


@pytest.fixture
async def sessions() -> AsyncIterator[list[aiohttp.ClientSession]]:
    opened: list[aiohttp.ClientSession] = []
    yield opened
    for session in opened:
        await session.close()


async def test_a_restart_with_a_full_outbox_delivers_everything_once(
    state_url: str, slack: SlackStandIn, sessions: list[aiohttp.ClientSession]
) -> None:
    settings = alert_settings()
    env = {WEBHOOK_ENV: slack.webhook_url()}
    first = create_engine(state_url, create=True)
    await upgrade(first)
    await queue_runs(first, settings, 25)
    sessions.append(aiohttp.ClientSession())
    deliver = Deliverer(first, settings, SlackWebhookClient(sessions[-1]), env)
    assert (await deliver(T0, limit=5)).sent == 5
    slack.answer_next("server_error")
    assert (await deliver(T0)).deferred == 1
    await first.dispose()
    await sessions[-1].close()

    # A new process: a new engine and a new client on the same database.
    second = create_engine(state_url)
    try:
        sessions.append(aiohttp.ClientSession())
        deliver = Deliverer(second, settings, SlackWebhookClient(sessions[-1]), env)
        assert (await deliver(T0 + timedelta(seconds=1))).attempted == 0  # still backing off
        report = await deliver(T0 + timedelta(minutes=1))
        assert (report.sent, report.deferred, report.failed) == (20, 0, 0)
        assert runs_received(slack) == list(range(1, 26))
        assert {r.state for r in await outbox_rows(second)} == {"sent"}
    finally:
        await second.dispose()


async def test_webhook_urls_never_reach_the_database_logs_or_messages(
    engine: AsyncEngine,
    slack: SlackStandIn,
    client: SlackWebhookClient,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    edge_file = tmp_path / "edge-webhook"
    edge_file.write_text(slack.webhook_url("edge") + "\n", encoding="utf-8")
    edge_file.chmod(0o600)
    settings = alert_settings(routes=[{"source": "edge", "webhook_url_file": str(edge_file)}])
    urls = [slack.webhook_url("default"), slack.webhook_url("edge")]
    secrets = [*urls, *(u.rsplit("/", 1)[1] for u in urls)]
    await queue_runs(engine, settings, 3)
    await queue_runs(engine, settings, 3, first_run=4, source="edge")
    slack.answer_next("server_error")
    slack.answer_next("channel_not_found", webhook="edge")
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: urls[0]})

    with caplog.at_level(logging.DEBUG):
        reports = [await deliver(T0), await deliver(T0 + timedelta(minutes=1))]
        status = await outbox_status(engine, settings, now=T0, environ=deliver.environ)

    assert sum(r.sent for r in reports) == 3
    assert sum(r.refused for r in reports) == 1  # edge's webhook is stopped, messages kept
    assert [d.blocked_reason for d in status.destinations] == [
        "webhook source:edge: refused (HTTP 404 channel_not_found)",
    ]
    texts = [
        caplog.text,
        *(str(r.args) for r in caplog.records),
        await dump_tables(engine, ["alert_outbox", "alert_announcements", "findings"]),
        json.dumps(slack.received),
        *(str(r) for r in reports),
        json.dumps(status.to_json()),
        render_status(status),
    ]
    for text in texts:
        for secret in secrets:
            assert secret not in text


async def _deliver_concurrently(
    engines: list[AsyncEngine], settings: Settings, slack: SlackStandIn
) -> list[DeliveryReport]:
    env = {WEBHOOK_ENV: slack.webhook_url()}
    policy = DeliveryPolicy(min_interval_s=0)
    async with aiohttp.ClientSession() as one, aiohttp.ClientSession() as two:
        async with asyncio.timeout(60):
            return list(
                await asyncio.gather(
                    *(
                        deliver_due(
                            engine,
                            settings,
                            SlackWebhookClient(session),
                            now=T0,
                            environ=env,
                            policy=policy,
                            pacer=Pacer(0),
                        )
                        for engine, session in zip(engines, (one, two), strict=True)
                    )
                )
            )


async def test_two_concurrent_deliverers_never_send_a_message_twice(
    engine: AsyncEngine, state_url: str, slack: SlackStandIn
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 40)
    slack.answer_all(Answer(None, delay_s=0.005))  # let the two interleave
    other = create_engine(state_url)
    try:
        reports = await _deliver_concurrently([engine, other], settings, slack)
    finally:
        await other.dispose()

    assert sorted(runs_received(slack)) == list(range(1, 41))
    assert len(slack.attempts) == 40
    assert all(r.sent > 0 for r in reports)  # both took part
    assert sum(r.sent for r in reports) == 40
    assert sum(r.lost_claims for r in reports) == 0
    assert [(r.state, r.attempts) for r in await outbox_rows(engine)] == [("sent", 1)] * 40
