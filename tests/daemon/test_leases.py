"""Slot leases on SQLite and PostgreSQL: claimed once, taken over after expiry, renewed,
completed for good, or handed back for a retry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon import leases
from reconciler.daemon.leases import leases_t

T0 = datetime(2024, 7, 10, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
SLOT = "pull:fastly:20240710T120000Z"


async def row(engine: AsyncEngine, slot: str = SLOT) -> dict[str, object]:
    async with engine.connect() as conn:
        found = (await conn.execute(select(leases_t).where(leases_t.c.slot == slot))).one()
    return dict(found._mapping)


@pytest.mark.parametrize(
    ("now", "every", "start"),
    [
        (T0, timedelta(hours=6), T0),
        (T0 + timedelta(hours=5, minutes=59), timedelta(hours=6), T0),
        (T0 + timedelta(hours=6), timedelta(hours=6), T0 + timedelta(hours=6)),
        (T0 + timedelta(seconds=3.5), timedelta(seconds=2), T0 + timedelta(seconds=2)),
        (T0 + timedelta(seconds=59), timedelta(minutes=1), T0),
        (datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), timedelta(days=1), leases.EPOCH),
    ],
)
def test_slots_are_aligned_on_the_epoch(now: datetime, every: timedelta, start: datetime) -> None:
    assert leases.slot_start(now, every) == start
    assert leases.slot_name("pull", "fastly", now, every) == (
        f"pull:fastly:{start.strftime('%Y%m%dT%H%M%SZ')}"
    )


def test_every_instance_names_the_same_slot_whatever_its_timezone() -> None:
    from zoneinfo import ZoneInfo

    local = T0.astimezone(ZoneInfo("Asia/Kolkata")) + timedelta(minutes=7)
    assert leases.slot_name("pull", "a", local, timedelta(hours=1)) == "pull:a:20240710T120000Z"


async def test_a_slot_is_claimed_once_and_a_second_claimer_is_refused(
    engine: AsyncEngine,
) -> None:
    lease = await leases.claim(engine, SLOT, "host-a:1", ttl=TTL, now=T0)
    assert lease == leases.Lease(SLOT, "host-a:1", T0 + TTL)
    assert await leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=T0) is None
    assert await leases.claim(engine, SLOT, "host-a:1", ttl=TTL, now=T0 + TTL / 2) is None
    stored = await row(engine)
    assert (stored["holder"], stored["acquired_at"], stored["expires_at"]) == (
        "host-a:1",
        T0,
        T0 + TTL,
    )
    assert stored["completed_at"] is None and stored["outcome"] is None
    # Other slots are independent.
    other = "pull:akamai:20240710T120000Z"
    assert await leases.claim(engine, other, "host-b:2", ttl=TTL, now=T0) is not None


async def test_concurrent_claimers_get_exactly_one_lease(engine: AsyncEngine) -> None:
    async with asyncio.timeout(30):
        won = await asyncio.gather(
            *(leases.claim(engine, SLOT, f"host:{n}", ttl=TTL, now=T0) for n in range(8))
        )
    winners = [lease for lease in won if lease is not None]
    assert len(winners) == 1
    assert (await row(engine))["holder"] == winners[0].holder


async def test_an_expired_lease_is_taken_over(engine: AsyncEngine) -> None:
    dead = await leases.claim(engine, SLOT, "host-a:1", ttl=TTL, now=T0)
    assert dead is not None
    # Still valid at its expiry instant; taken over just after.
    assert await leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=T0 + TTL) is None
    later = T0 + TTL + timedelta(seconds=1)
    taken = await leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=later)
    assert taken == leases.Lease(SLOT, "host-b:2", later + TTL, taken_from="host-a:1")
    stored = await row(engine)
    assert (stored["holder"], stored["acquired_at"]) == ("host-b:2", later)
    # The old holder, back from the dead, can neither renew nor complete it.
    assert await leases.renew(engine, dead, ttl=TTL, now=later) is False
    await leases.complete(engine, dead, outcome="succeeded", now=later)
    assert (await row(engine))["completed_at"] is None
    # A third instance cannot take it from the new, live holder.
    assert await leases.claim(engine, SLOT, "host-c:3", ttl=TTL, now=later) is None


async def test_renewing_keeps_a_live_holder(engine: AsyncEngine) -> None:
    lease = await leases.claim(engine, SLOT, "host-a:1", ttl=TTL, now=T0)
    assert lease is not None
    renewed_at = T0 + TTL - timedelta(seconds=1)
    assert await leases.renew(engine, lease, ttl=TTL, now=renewed_at) is True
    assert (await row(engine))["expires_at"] == renewed_at + TTL
    past_first_expiry = T0 + TTL + timedelta(seconds=5)
    assert await leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=past_first_expiry) is None
    after_renewal = renewed_at + TTL + timedelta(seconds=1)
    assert await leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=after_renewal) is not None


async def test_a_completed_slot_never_runs_again(engine: AsyncEngine) -> None:
    lease = await leases.claim(engine, SLOT, "host-a:1", ttl=TTL, now=T0)
    assert lease is not None
    done = T0 + timedelta(seconds=5)
    await leases.complete(engine, lease, outcome="succeeded", now=done)
    stored = await row(engine)
    assert (stored["completed_at"], stored["outcome"]) == (done, "succeeded")
    assert await leases.renew(engine, lease, ttl=TTL, now=done) is False
    for claimer, when in (("host-b:2", done), ("host-b:2", T0 + timedelta(days=1))):
        assert await leases.claim(engine, SLOT, claimer, ttl=TTL, now=when) is None


async def test_a_failed_attempt_is_released_for_a_retry(engine: AsyncEngine) -> None:
    lease = await leases.claim(engine, SLOT, "host-a:1", ttl=TTL, now=T0)
    assert lease is not None
    failed_at = T0 + timedelta(seconds=2)
    retry = timedelta(seconds=10)
    await leases.release_for_retry(engine, lease, retry_after=retry, now=failed_at)
    stored = await row(engine)
    assert (stored["outcome"], stored["expires_at"], stored["completed_at"]) == (
        "failed",
        failed_at + retry,
        None,
    )
    assert await leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=failed_at) is None
    retried_at = failed_at + retry + timedelta(seconds=1)
    again = await leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=retried_at)
    assert again == leases.Lease(SLOT, "host-b:2", retried_at + TTL)
    await leases.complete(engine, again, outcome="succeeded", now=retried_at)
    assert (await row(engine))["outcome"] == "succeeded"


async def test_purge_drops_old_slots_only(engine: AsyncEngine) -> None:
    old = "pull:fastly:20240701T000000Z"
    assert await leases.claim(engine, old, "a:1", ttl=TTL, now=T0 - timedelta(days=9))
    assert await leases.claim(engine, SLOT, "a:1", ttl=TTL, now=T0)
    assert await leases.purge(engine, before=T0 - timedelta(days=7)) == 1
    async with engine.connect() as conn:
        slots = (await conn.execute(select(leases_t.c.slot))).scalars().all()
    assert slots == [SLOT]


async def taken_over(engine: AsyncEngine) -> tuple[leases.Lease, leases.Lease, datetime]:
    """A lease host-a claimed, host-b's that took it over once it ran out, and when."""
    stalled = await leases.claim(engine, SLOT, "host-a:1", ttl=TTL, now=T0)
    assert stalled is not None
    later = T0 + TTL + timedelta(seconds=1)
    taken = await leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=later)
    assert taken is not None
    return stalled, taken, later


async def test_hold_fences_a_holder_whose_lease_was_taken_over(engine: AsyncEngine) -> None:
    stalled, taken, later = await taken_over(engine)
    async with engine.begin() as conn:
        assert await leases.hold(conn, stalled, ttl=TTL, now=later) is False
        assert await leases.hold(conn, taken, ttl=TTL, now=later + TTL / 2) is True
    assert (await row(engine))["expires_at"] == later + TTL / 2 + TTL


async def test_a_takeover_waits_for_the_commit_that_holds_the_lease(engine: AsyncEngine) -> None:
    lease = await leases.claim(engine, SLOT, "host-a:1", ttl=TTL, now=T0)
    assert lease is not None
    late = T0 + TTL + timedelta(seconds=1)  # expired, not yet taken over
    async with asyncio.timeout(30):
        async with engine.begin() as conn:
            assert await leases.hold(conn, lease, ttl=TTL, now=late) is True
            # Another instance tries to take the slot while the holder's commit is open.
            takeover = asyncio.create_task(
                leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=late)
            )
            await asyncio.sleep(0.2)
        assert await takeover is None
    assert (await row(engine))["holder"] == "host-a:1"


async def test_a_slot_completed_in_its_commit_stays_done_and_fences_a_takeover(
    engine: AsyncEngine,
) -> None:
    lease = await leases.claim(engine, SLOT, "host-a:1", ttl=TTL, now=T0)
    assert lease is not None
    late = T0 + TTL + timedelta(seconds=1)  # expired, not yet taken over
    async with engine.begin() as conn:
        assert await leases.complete_held(conn, lease, outcome="succeeded", now=T0) is True
    assert await leases.completed_by_holder(engine, lease) is True
    # Done for good: no takeover, no second completion, no renewal, nothing handed back.
    assert await leases.claim(engine, SLOT, "host-b:2", ttl=TTL, now=late) is None
    async with engine.begin() as conn:
        assert await leases.complete_held(conn, lease, outcome="succeeded", now=late) is False
    assert await leases.renew(engine, lease, ttl=TTL, now=late) is False
    await leases.release_for_retry(engine, lease, retry_after=TTL, now=late)
    stored = await row(engine)
    assert (stored["holder"], stored["outcome"], stored["expires_at"]) == (
        "host-a:1",
        "succeeded",
        T0 + TTL,
    )
    assert stored["completed_at"] == T0


async def test_a_holder_taken_over_cannot_complete_the_slot(engine: AsyncEngine) -> None:
    stalled, _, later = await taken_over(engine)
    async with engine.begin() as conn:
        assert await leases.complete_held(conn, stalled, outcome="succeeded", now=later) is False
    assert await leases.completed_by_holder(engine, stalled) is False
    stored = await row(engine)
    assert (stored["holder"], stored["completed_at"]) == ("host-b:2", None)
