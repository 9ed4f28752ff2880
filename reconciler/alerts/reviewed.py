"""Queued messages after a review: what was acknowledged while a message waited in the outbox
is not announced.

Runs in the transaction that records the acknowledgements. A message whose every item was
acknowledged is withdrawn; one of which only some were is rendered again with its open items
alone (and the resolved ones it reports), so a reviewer is never asked again about what they
just reviewed. A message whose destination is no longer configured is left as it was queued.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.alerts.channels.render import channel_outbox_rows
from reconciler.alerts.channels.selection import channel_name
from reconciler.alerts.outbox import (
    PENDING,
    WITHDRAWN,
    QueuedMessage,
    announced_json,
    announces,
    finding_states,
    outbox_t,
    slack_row,
    with_teams,
)
from reconciler.domain import FindingState, PlanItem
from reconciler.settings import Settings
from reconciler.store.items import load_items_by_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Queued:
    id: int
    source: str
    run_id: int
    route: str
    created_at: datetime
    items: list[str]
    resolved: list[str]


async def withdraw_reviewed(conn: AsyncConnection, settings: Settings, now: datetime) -> int:
    """Withdraw each queued message whose every item is acknowledged, narrow each one of
    which some items are to the others; returns how many were withdrawn."""
    c = outbox_t.c
    query = select(c.id, c.source, c.run_id, c.route, c.created_at, c.fingerprints).where(
        c.state == PENDING
    )
    queued = [
        _Queued(
            row.id, row.source, row.run_id, row.route, row.created_at, *announces(row.fingerprints)
        )
        for row in await conn.execute(query)
    ]
    queued = [message for message in queued if message.items]
    if not queued:
        return 0
    states = await finding_states(conn, sorted({f for m in queued for f in m.items}))
    reviewed = {f for f, (state, _) in states.items() if state == FindingState.ACKNOWLEDGED.value}
    stale = [m.id for m in queued if not m.resolved and reviewed.issuperset(m.items)]
    if stale:
        await conn.execute(
            update(outbox_t)
            .where(outbox_t.c.id.in_(stale), outbox_t.c.state == PENDING)
            .values(
                state=WITHDRAWN,
                last_error="not sent: its items were acknowledged before it was delivered",
            )
        )
        log.info("alerts: withdrew %d queued message(s), their items acknowledged", len(stale))
    still_open = {f for f, (state, _) in states.items() if state == FindingState.OPEN.value}
    # Some items acknowledged, and something left to say: an open item or a resolved one.
    narrowed = [
        m
        for m in queued
        if m.id not in stale
        and reviewed.intersection(m.items)
        and (m.resolved or still_open.intersection(m.items))
    ]
    if narrowed:
        count = await _narrow(conn, settings, narrowed, still_open)
        log.info("alerts: %d queued message(s) now leave out the items acknowledged since", count)
    return len(stale)


async def _narrow(
    conn: AsyncConnection, settings: Settings, messages: Sequence[_Queued], still_open: set[str]
) -> int:
    """Render each message again with its open items and its resolved ones."""
    known = await load_items_by_fingerprint(
        conn, sorted({f for m in messages for f in (*m.items, *m.resolved)})
    )
    count = 0
    for message in messages:
        items = tuple(known[f] for f in message.items if f in still_open and f in known)
        resolved = tuple(known[f] for f in message.resolved if f in known)
        row = _rendered_again(
            settings, message, with_teams(settings, QueuedMessage(items, {}, resolved))
        )
        if row is None:
            continue
        await conn.execute(
            update(outbox_t)
            .where(outbox_t.c.id == message.id, outbox_t.c.state == PENDING)
            .values(
                payload=row["payload"],
                kind=row["kind"],
                fingerprints=announced_json(items, resolved),
            )
        )
        count += 1
    return count


def _rendered_again(
    settings: Settings, message: _Queued, narrowed: QueuedMessage
) -> dict[str, Any] | None:
    """The message's row rendered for its destination as it is configured now; None when
    that destination is gone (or sends one event per item: PagerDuty)."""
    items: Sequence[PlanItem] = narrowed.items
    channel = channel_name(message.route)
    if channel is None:
        return slack_row(settings, message.source, message.run_id, narrowed, message.route)
    for configured in settings.alerts.channels:
        if configured.name == channel and configured.type != "pagerduty":
            rows = channel_outbox_rows(
                settings,
                configured,
                message.source,
                message.run_id,
                items,
                narrowed.resolved,
                message.created_at,
            )
            return rows[0] if rows else None
    return None
