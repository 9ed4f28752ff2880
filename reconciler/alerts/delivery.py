"""Delivery of queued alerts: paced per webhook, retried with backoff, never sent twice.

A message moves ``pending`` → ``sending`` (claimed) → ``sent``, back to ``pending`` (retry
later) or ``failed`` (Slack refused it for good). The claim is one short transaction that
sets ``sending``, increments ``attempts`` (the claim's token) and sets ``next_attempt_at``
to the end of a lease. On PostgreSQL it selects with ``FOR UPDATE SKIP LOCKED`` so several
deliverers share the queue; on SQLite the write lock (``BEGIN IMMEDIATE``) serializes
claims. Slack's answer is recorded only if the row is still held by that claim.

At least once, and exactly once while the deliverer lives: a pass that is cancelled (a
daemon stopping) first finishes the message in flight, and an answer that cannot be
recorded (a full disk) is kept in memory and recorded before anything else is claimed
(:mod:`reconciler.alerts.recording`). Only if the process dies between the answer and
recording it does the row stay ``sending`` until its lease expires; it is then sent
again, labelled as a possible repeat of the same message number. Incoming webhooks have
no idempotency key, and a rare labelled duplicate is better than a lost alert.

A 2xx is a delivery whatever its body. An answer about the webhook rather than the
message (a revoked URL, a deleted channel, 403) blocks the webhook: its messages stay
pending, with the reason in ``alerts status``, until its URL changes or ``alerts retry``
(:mod:`reconciler.alerts.blocks`).

A 429 or a transient failure (5xx, timeout, connection error) is about the webhook, not
the message: the destination's other pending messages wait too, so they keep their order
and a Slack outage costs one request per backoff step instead of one per message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.alerts.blocks import load_blocks
from reconciler.alerts.outbox import FAILED, PENDING, SENDING, SENT, outbox_t
from reconciler.alerts.recording import (
    Block,
    Destination,
    Outcome,
    OutcomeJournal,
    destination_of,
    in_destination,
)
from reconciler.alerts.routes import Target, WebhookResolver
from reconciler.alerts.webhook import DeliveryResult, DeliveryStatus, SlackWebhookClient
from reconciler.settings import Settings
from reconciler.store.db import reader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How fast to send and how to wait after a failure."""

    min_interval_s: float = 1.0  # per webhook: Slack allows about one message per second
    backoff_base_s: float = 5.0
    backoff_cap_s: float = 900.0
    max_retry_after_s: float = 3_600.0  # a larger Retry-After is taken as this
    claim_lease: timedelta = timedelta(minutes=5)  # far above the client's timeout
    # Attempts after which a transient failure (never a 429) drops a message: about two
    # days of capped backoff, so an outage loses nothing, but a message Slack always
    # answers with a 5xx cannot hold up its webhook's queue for ever.
    max_transient_attempts: int = 200
    jitter: Callable[[], float] = random.random

    def backoff_s(self, attempts: int) -> float:
        """Exponential backoff with jitter: between half and all of base × 2^(attempts-1)."""
        ceiling = min(
            self.backoff_cap_s, self.backoff_base_s * float(2 ** min(max(attempts, 1) - 1, 30))
        )
        return ceiling / 2 + self.jitter() * ceiling / 2

    def retry_delay_s(self, result: DeliveryResult, attempts: int) -> float:
        if result.retry_after_s is not None:
            return min(max(result.retry_after_s, self.min_interval_s), self.max_retry_after_s)
        return self.backoff_s(attempts)


class Pacer:
    """At most one message per ``min_interval_s`` per webhook (``sleep`` is injectable)."""

    def __init__(
        self,
        min_interval_s: float = 1.0,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_interval_s = min_interval_s
        self._sleep = sleep
        self._monotonic = monotonic
        self._last: dict[str, float] = {}

    async def wait(self, key: str) -> None:
        last = self._last.get(key)
        if last is not None:
            delay = last + self.min_interval_s - self._monotonic()
            if delay > 0:
                await self._sleep(delay)
        self._last[key] = self._monotonic()


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    sent: int = 0
    deferred: int = 0  # failed for now (429, 5xx, timeout): pending again, later
    failed: int = 0  # this message refused for good (invalid_blocks, ...) or given up
    refused: int = 0  # webhooks that refused a message for reasons of their own: blocked
    blocked: int = 0  # pending for blocked webhooks (kept until their URL changes)
    unconfigured: int = 0  # pending for destinations without a webhook URL
    unrecorded: int = 0  # answers kept in memory: the database refused to record them
    lost_claims: int = 0  # answers recorded too late: another deliverer took the message
    problems: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.sent + self.deferred + self.failed + self.refused

    def summary(self) -> str:
        text = f"{self.sent} sent, {self.deferred} deferred, {self.failed} failed"
        if self.refused:
            text += f", {self.refused} refused"
        if self.blocked:
            text += f"; webhook refusing: {self.blocked} messages kept until its URL changes"
        if self.unconfigured:
            text += f"; no webhook configured: {self.unconfigured} messages kept undelivered"
        if self.unrecorded:
            text += f"; {self.unrecorded} answers not recorded yet (database refused)"
        if self.lost_claims:
            text += f"; {self.lost_claims} answers recorded too late"
        return text


@dataclass(frozen=True, slots=True)
class _Claim:
    id: int
    source: str
    route: str
    payload: str
    attempts: int  # including this attempt: the claim's token
    due_at: datetime  # next_attempt_at before the claim
    repeat: bool = False  # an earlier attempt's answer was never recorded

    @property
    def destination(self) -> Destination:
        return destination_of(self.route, self.source)


class _Unrecorded(Exception):
    """The database refused to record an answer: stop the pass (the journal keeps it)."""


async def deliver_due(
    engine: AsyncEngine,
    settings: Settings,
    client: SlackWebhookClient,
    *,
    now: datetime,
    environ: Mapping[str, str] | None = None,
    policy: DeliveryPolicy | None = None,
    pacer: Pacer | None = None,
    ignore_backoff: bool = False,
    limit: int | None = None,
    journal: OutcomeJournal | None = None,
) -> DeliveryReport:
    """Send pending messages due at ``now`` in id order; ``ignore_backoff`` sends every
    pending message now (``alerts flush``). Never raises for a Slack failure.

    ``journal`` holds answers the database refused to record in an earlier pass: they
    are recorded first, and nothing is claimed until they are."""
    policy = policy or DeliveryPolicy()
    pacer = pacer or Pacer(policy.min_interval_s)
    journal = journal if journal is not None else OutcomeJournal()
    began = time.monotonic()

    def clock() -> datetime:
        return now + timedelta(seconds=time.monotonic() - began)

    report = DeliveryReport()
    if journal and await journal.flush(engine) is None:
        report.unrecorded = len(journal)
        return report
    webhooks = WebhookResolver(settings, environ)
    waiting = await pending_counts(engine)
    if not waiting:
        # Nothing to claim: do not queue for the write lock (SQLite) behind a long pull.
        return report
    stored_blocks = await load_blocks(engine)
    unconfigured = {d for d in waiting if webhooks.get(*d) is None}
    refusing = {
        d for d in waiting if (w := webhooks.get(*d)) is not None and w.key in stored_blocks
    }
    skip = unconfigured | refusing
    stopped: set[str] = set()  # webhooks not to try again in this pass
    delivery = _Delivery(engine, client, policy, pacer, clock, report, journal)
    while limit is None or report.attempted < limit:
        claim = await _claim_next(engine, clock(), skip, ignore_backoff, policy.claim_lease)
        if claim is None:
            break
        webhook = webhooks.get(claim.route, claim.source)
        if webhook is None or webhook.key in stopped:
            await _release(engine, claim)
            skip.add(claim.destination)
            if webhook is None:
                unconfigured.add(claim.destination)
            continue
        try:
            go_on = await _shielded(delivery.send(claim, webhook))
        except _Unrecorded:
            break
        if not go_on:
            stopped.add(webhook.key)
            skip.add(claim.destination)
            if delivery.refused_last:
                refusing.add(claim.destination)
    report.unrecorded = len(journal)
    counts = await pending_counts(engine)
    report.unconfigured = sum(counts.get(d, 0) for d in unconfigured)
    report.blocked = sum(counts.get(d, 0) for d in refusing)
    if report.attempted or report.unconfigured or report.blocked:
        log.log(
            logging.INFO if report.attempted else logging.DEBUG,
            "alerts: %s in %.1fs",
            report.summary(),
            time.monotonic() - began,
        )
    return report


async def pending_counts(engine: AsyncEngine) -> dict[Destination, int]:
    """Messages waiting (pending or being sent) per destination."""
    query = (
        select(outbox_t.c.route, outbox_t.c.source, func.count())
        .where(outbox_t.c.state.in_([PENDING, SENDING]))
        .group_by(outbox_t.c.route, outbox_t.c.source)
    )
    counts: dict[Destination, int] = {}
    async with reader(engine).connect() as conn:
        for route, source, count in (await conn.execute(query)).all():
            key = destination_of(route, source)
            counts[key] = counts.get(key, 0) + int(count)
    return counts


async def _claim_next(
    engine: AsyncEngine,
    now: datetime,
    skip: set[Destination],
    ignore_backoff: bool,
    lease: timedelta,
) -> _Claim | None:
    pending: ColumnElement[bool] = outbox_t.c.state == PENDING
    if not ignore_backoff:
        pending = and_(pending, outbox_t.c.next_attempt_at <= now)
    # A claim whose lease ran out belongs to a deliverer that died mid-send.
    abandoned = and_(outbox_t.c.state == SENDING, outbox_t.c.next_attempt_at <= now)
    query = (
        select(
            outbox_t.c.id,
            outbox_t.c.source,
            outbox_t.c.route,
            outbox_t.c.payload,
            outbox_t.c.attempts,
            outbox_t.c.state,
            outbox_t.c.next_attempt_at,
        )
        .where(or_(pending, abandoned), *(not_(in_destination(d)) for d in sorted(skip)))
        .order_by(outbox_t.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    async with engine.begin() as conn:
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        attempts = int(row.attempts) + 1
        await conn.execute(
            update(outbox_t)
            .where(outbox_t.c.id == row.id)
            .values(state=SENDING, attempts=attempts, next_attempt_at=now + lease)
        )
    if row.state == SENDING:
        log.warning(
            "alert message #%d (source '%s') was being sent when its deliverer stopped; "
            "sending it again, labelled as a possible repeat",
            row.id,
            row.source,
        )
    return _Claim(
        row.id,
        row.source,
        row.route,
        row.payload,
        attempts,
        row.next_attempt_at,
        repeat=row.state == SENDING,
    )


async def _release(engine: AsyncEngine, claim: _Claim) -> None:
    """Give a claim back untried (its webhook is missing or blocked in this pass)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(outbox_t)
            .where(
                outbox_t.c.id == claim.id,
                outbox_t.c.state == SENDING,
                outbox_t.c.attempts == claim.attempts,
            )
            .values(state=PENDING, attempts=claim.attempts - 1, next_attempt_at=claim.due_at)
        )


async def _shielded(coro: Coroutine[Any, Any, bool]) -> bool:
    """Run ``coro`` to its end even if the caller is cancelled, then pass the cancel on."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


@dataclass
class _Delivery:
    engine: AsyncEngine
    client: SlackWebhookClient
    policy: DeliveryPolicy
    pacer: Pacer
    clock: Callable[[], datetime]
    report: DeliveryReport
    journal: OutcomeJournal
    refused_last: bool = False

    async def send(self, claim: _Claim, webhook: Target) -> bool:
        """Send one claimed message and record Slack's answer; False if the webhook should
        not be tried again in this pass."""
        self.refused_last = False
        await self.pacer.wait(webhook.key)
        result = await webhook.send(
            self.client, json.loads(claim.payload), message_id=claim.id, repeat=claim.repeat
        )
        at = self.clock()
        reason = result.describe(webhook.name)
        if result.delivered:
            self.report.sent += 1
            await self._record(claim, state=SENT, sent_at=at, last_error=None)
            return True
        if result.refused:
            return await self._refused(claim, webhook, reason, at)
        given_up = (
            result.status is DeliveryStatus.TRANSIENT
            and claim.attempts >= self.policy.max_transient_attempts
        )
        if result.permanent or given_up:
            if given_up:
                reason = f"gave up after {claim.attempts} attempts: {reason}"
            self.report.failed += 1
            self.report.problems.append(f"#{claim.id} ({claim.source}): {reason}")
            log.warning(
                "alert message #%d (source '%s') not delivered and not retried: %s",
                claim.id,
                claim.source,
                reason,
            )
            await self._record(claim, state=FAILED, last_error=reason)
            return not given_up  # a webhook still failing after so long: not again now
        retry_at = at + timedelta(seconds=self.policy.retry_delay_s(result, claim.attempts))
        self.report.deferred += 1
        self.report.problems.append(f"#{claim.id} ({claim.source}): {reason}")
        log.info(
            "alert message #%d (source '%s') attempt %d failed, retrying at %s: %s",
            claim.id,
            claim.source,
            claim.attempts,
            retry_at.isoformat(timespec="seconds"),
            reason,
        )
        await self._record(
            claim,
            hold=claim.destination,
            state=PENDING,
            next_attempt_at=retry_at,
            last_error=reason,
        )
        return False

    async def _refused(self, claim: _Claim, webhook: Target, reason: str, at: datetime) -> bool:
        """The webhook refuses everything: keep the message pending, block the webhook."""
        self.refused_last = True
        self.report.refused += 1
        self.report.problems.append(f"#{claim.id} ({claim.source}): {reason}")
        log.warning(
            "%s: message #%d kept pending, and every message to this webhook until its URL "
            "changes (reload the configuration) or `reconciler alerts retry`",
            reason,
            claim.id,
        )
        await self._record(
            claim,
            block=Block(webhook.key, webhook.name, reason, at),
            state=PENDING,
            next_attempt_at=claim.due_at,
            last_error=reason,
        )
        return False

    async def _record(
        self,
        claim: _Claim,
        *,
        hold: Destination | None = None,
        block: Block | None = None,
        **values: Any,
    ) -> None:
        outcome = Outcome(claim.id, claim.source, claim.attempts, values, hold, block)
        held = await self.journal.record(self.engine, outcome)
        if held is None:
            raise _Unrecorded
        if not held:
            self.report.lost_claims += 1
            log.warning(
                "alert message #%d (source '%s'): answer recorded too late, another deliverer "
                "took it over (it may arrive twice)",
                claim.id,
                claim.source,
            )
