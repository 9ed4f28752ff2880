"""The alert outbox: a run's Slack message, queued in the run's own transaction.

:func:`enqueue_run_alerts` runs inside the transaction that records a run's findings, so a
message is queued if and only if the findings it reports are committed. It announces each
review item once: an item is announced again only when its values change or its severity
rises, never while acknowledged, and a short "resolved" section (or notice) follows when an
announced item resolves. Delivery is a separate step (:mod:`reconciler.alerts.delivery`).

A queued message is due at once, unless its webhook is backing off after failures: then it
joins the back of that queue instead of starting a backoff of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.alerts.channels.render import channel_outbox_rows, encode_payload
from reconciler.alerts.channels.selection import select_for_channel
from reconciler.alerts.routes import SOURCE_ROUTE, route_for, team_routes
from reconciler.alerts.slack import render_resolved_message, render_run_message
from reconciler.domain import FindingState, PlanItem, Severity, utcnow
from reconciler.money import Money
from reconciler.reconcile.ownership import item_team
from reconciler.reconcile.spend import below_min_impact
from reconciler.settings import Settings
from reconciler.store.findings import drift_values_hash
from reconciler.store.items import findings_table as findings_t
from reconciler.store.tables import AlertAnnouncement, AlertOutboxRow

if TYPE_CHECKING:
    from reconciler.refresh import RunOutcome

log = logging.getLogger(__name__)

outbox_t = AlertOutboxRow.__table__  # type: ignore[attr-defined]
announcements_t = AlertAnnouncement.__table__  # type: ignore[attr-defined]

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
# Not sent: every item it announces was acknowledged before it could be delivered.
WITHDRAWN = "withdrawn"
KIND_RUN, KIND_RESOLVED = "run", "resolved"
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class _Announced:
    values_hash: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """What one run wants to say: new items (with their values hashes) and resolved ones."""

    items: tuple[PlanItem, ...]
    values_hashes: dict[str, str]
    resolved: tuple[PlanItem, ...]

    @property
    def empty(self) -> bool:
        return not self.items and not self.resolved


async def enqueue_run_alerts(
    conn: AsyncConnection,
    settings: Settings,
    outcome: RunOutcome,
    *,
    now: datetime | None = None,
) -> int:
    """Queue the run's message (if it has anything new to say); returns the rows queued."""
    now = now or utcnow()
    route = route_for(settings, outcome.source)
    candidates = await select_announcements(
        conn,
        raised=outcome.items.raised,
        resolved=outcome.items.resolved,
        values_hashes=outcome.items.values_hashes,
    )
    if candidates.empty:
        return 0
    candidates = with_teams(settings, candidates)
    rows: list[dict[str, Any]] = []
    slack_message = _at_least(candidates, route.min_severity, route.min_impact)
    if settings.alerts.slack.enabled and not slack_message.empty:
        row = slack_row(settings, outcome.source, outcome.run_id, slack_message, route.name)
        row["fingerprints"] = announced_json(slack_message.items, slack_message.resolved)
        rows.append(row)
    announced: dict[str, PlanItem] = {i.fingerprint: i for i in slack_message.items}
    if settings.alerts.slack.enabled:
        announced_resolved = {i.fingerprint: i for i in slack_message.resolved}
    else:
        announced_resolved = {}
    for team, team_route in team_routes(settings) if settings.alerts.slack.enabled else []:
        heard = _of_team(
            _at_least(candidates, team_route.min_severity, team_route.min_impact), team
        )
        if heard.empty:
            continue
        row = slack_row(settings, outcome.source, outcome.run_id, heard, team_route.name)
        row["fingerprints"] = announced_json(heard.items, heard.resolved)
        rows.append(row)
        announced.update((i.fingerprint, i) for i in heard.items)
        announced_resolved.update((i.fingerprint, i) for i in heard.resolved)
    for channel in settings.alerts.channels:
        items = select_for_channel(settings, channel, outcome.source, candidates.items)
        resolved = select_for_channel(settings, channel, outcome.source, candidates.resolved)
        channel_rows = channel_outbox_rows(
            settings, channel, outcome.source, outcome.run_id, items, resolved, now
        )
        if channel.type != "pagerduty":  # one event per item there, each its own news
            for channel_row in channel_rows:
                channel_row["fingerprints"] = announced_json(items, resolved)
        rows += channel_rows
        if channel_rows:
            announced.update((i.fingerprint, i) for i in items)
            announced_resolved.update((i.fingerprint, i) for i in resolved)
    if not rows:
        return 0
    message = QueuedMessage(
        tuple(i for i in candidates.items if i.fingerprint in announced),
        {f: h for f, h in candidates.values_hashes.items() if f in announced},
        tuple(i for i in candidates.resolved if i.fingerprint in announced_resolved),
    )
    first_id = None
    for row in rows:
        row["next_attempt_at"] = await _queue_time(conn, row["route"], outcome.source, now)
        row["created_at"] = now
        result = await conn.execute(insert(outbox_t).values(**row))
        key = result.inserted_primary_key
        if key is None:
            raise RuntimeError("the database did not return the new alert message's id")
        first_id = first_id if first_id is not None else int(key[0])
    assert first_id is not None
    await _record_announcements(conn, message, first_id, now)
    log.info(
        "alerts: queued %d message(s) from #%d for source '%s' run %d: %d item(s), "
        "%d resolved (%s)",
        len(rows),
        first_id,
        outcome.source,
        outcome.run_id,
        len(message.items),
        len(message.resolved),
        ", ".join(sorted({str(r["route"]) for r in rows})),
    )
    return len(rows)


def announced_json(items: Sequence[PlanItem], resolved: Sequence[PlanItem]) -> str:
    """What a message announces, by fingerprint (``alert_outbox.fingerprints``)."""
    return json.dumps(
        {
            "items": sorted({i.fingerprint for i in items}),
            "resolved": sorted({i.fingerprint for i in resolved}),
        }
    )


def announces(text: str) -> tuple[list[str], list[str]]:
    """(items, resolved) of ``alert_outbox.fingerprints``; a row queued before the column
    existed announces nothing known."""
    try:
        data = json.loads(text)
    except ValueError:
        return [], []
    if not isinstance(data, dict):
        return [], []
    items, resolved = data.get("items"), data.get("resolved")
    return (
        [f for f in items if isinstance(f, str)] if isinstance(items, list) else [],
        [f for f in resolved if isinstance(f, str)] if isinstance(resolved, list) else [],
    )


def with_teams(settings: Settings, message: QueuedMessage) -> QueuedMessage:
    """Each item named with the team it concerns, when teams are declared (routes by team
    select on it, and every message names it)."""
    if not settings.teams:
        return message

    def tagged(items: tuple[PlanItem, ...]) -> tuple[PlanItem, ...]:
        return tuple(replace(i, team=item_team(settings, i)) for i in items)

    return QueuedMessage(tagged(message.items), message.values_hashes, tagged(message.resolved))


def _of_team(message: QueuedMessage, team: str) -> QueuedMessage:
    items = tuple(i for i in message.items if i.team == team)
    kept = {i.fingerprint for i in items}
    hashes = {f: h for f, h in message.values_hashes.items() if f in kept}
    return QueuedMessage(items, hashes, tuple(i for i in message.resolved if i.team == team))


def _at_least(
    message: QueuedMessage, severity: Severity, min_impact: Money | None
) -> QueuedMessage:
    """The message as a destination with these thresholds hears it."""
    items = tuple(
        i
        for i in message.items
        if i.severity.rank >= severity.rank and not below_min_impact(i, min_impact)
    )
    kept = {i.fingerprint for i in items}
    hashes = {f: h for f, h in message.values_hashes.items() if f in kept}
    return QueuedMessage(items, hashes, message.resolved)


def slack_row(
    settings: Settings, source: str, run_id: int, message: QueuedMessage, route: str
) -> dict[str, Any]:
    """The outbox row of one Slack message (without its times and fingerprints)."""
    slack = settings.alerts.slack
    hint = f"reconciler plan --source {source}"
    if message.items:
        payload = render_run_message(
            source=source,
            run_id=run_id,
            items=message.items,
            resolved=message.resolved,
            report_url=slack.report_link_base,
            see_all_hint=hint,
            max_items=slack.max_items,
        )
    else:
        payload = render_resolved_message(
            source=source,
            items=message.resolved,
            run_id=run_id,
            report_url=slack.report_link_base,
            see_all_hint=hint,
        )
    return {
        "source": source,
        "run_id": run_id,
        "kind": KIND_RUN if message.items else KIND_RESOLVED,
        "route": route,
        "payload": encode_payload(payload),
        "state": PENDING,
        "attempts": 0,
    }


async def _queue_time(conn: AsyncConnection, route: str, source: str, now: datetime) -> datetime:
    """Now, or later if the destination is backing off: a new message joins the queue of a
    failing webhook instead of starting a backoff of its own (and one request per message)."""
    where = [outbox_t.c.route == route, outbox_t.c.state == PENDING]
    if route == SOURCE_ROUTE:
        where.append(outbox_t.c.source == source)
    latest = (
        await conn.execute(select(func.max(outbox_t.c.next_attempt_at)).where(*where))
    ).scalar_one_or_none()
    return max(now, latest) if latest is not None else now


async def select_announcements(
    conn: AsyncConnection,
    *,
    raised: Sequence[PlanItem],
    resolved: Sequence[PlanItem],
    values_hashes: dict[str, str],
) -> QueuedMessage:
    """Of the raised items, those still open and not yet announced with these values at
    this severity or higher; of the resolved ones, those that were announced."""
    latest = {item.fingerprint: item for item in raised}  # one entry per fingerprint
    fingerprints = [*latest, *(item.fingerprint for item in resolved)]
    states = await finding_states(conn, fingerprints)
    announced = await _announced(conn, fingerprints)
    items: list[PlanItem] = []
    hashes: dict[str, str] = {}
    for fingerprint, item in latest.items():
        state, stored_hash = states.get(fingerprint, (None, None))
        if state is not None and state != FindingState.OPEN.value:
            continue  # acknowledged (or resolved) since: nothing to announce
        values_hash = values_hashes.get(fingerprint) or stored_hash or drift_values_hash(item)
        before = announced.get(fingerprint)
        if (
            before is not None
            and before.values_hash == values_hash
            and before.severity.rank >= item.severity.rank
        ):
            continue
        items.append(item)
        hashes[fingerprint] = values_hash
    gone = {
        item.fingerprint: item
        for item in resolved
        if item.fingerprint in announced and item.fingerprint not in hashes
    }
    return QueuedMessage(tuple(items), hashes, tuple(gone.values()))


async def finding_states(
    conn: AsyncConnection, fingerprints: Sequence[str]
) -> dict[str, tuple[str, str]]:
    states: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(fingerprints):
        query = select(
            findings_t.c.fingerprint, findings_t.c.state, findings_t.c.values_hash
        ).where(findings_t.c.fingerprint.in_(chunk))
        for row in (await conn.execute(query)).all():
            states[row.fingerprint] = (row.state, row.values_hash)
    return states


async def _announced(conn: AsyncConnection, fingerprints: Sequence[str]) -> dict[str, _Announced]:
    found: dict[str, _Announced] = {}
    for chunk in _chunks(fingerprints):
        query = select(
            announcements_t.c.fingerprint,
            announcements_t.c.values_hash,
            announcements_t.c.severity,
        ).where(announcements_t.c.fingerprint.in_(chunk))
        for row in (await conn.execute(query)).all():
            found[row.fingerprint] = _Announced(row.values_hash, Severity(row.severity))
    return found


async def _record_announcements(
    conn: AsyncConnection, message: QueuedMessage, outbox_id: int, now: datetime
) -> None:
    """Remember what was announced; forget resolved items so a recurrence is news again."""
    touched = [*message.values_hashes, *(item.fingerprint for item in message.resolved)]
    for chunk in _chunks(touched):
        await conn.execute(delete(announcements_t).where(announcements_t.c.fingerprint.in_(chunk)))
    rows: list[dict[str, Any]] = [
        {
            "fingerprint": item.fingerprint,
            "values_hash": message.values_hashes[item.fingerprint],
            "severity": item.severity.value,
            "announced_at": now,
            "outbox_id": outbox_id,
        }
        for item in message.items
    ]
    if rows:
        await conn.execute(insert(announcements_t), rows)


def _chunks(values: Sequence[str]) -> list[list[str]]:
    return [list(values[i : i + _CHUNK]) for i in range(0, len(values), _CHUNK)]


async def purge_delivered(engine: AsyncEngine, *, before: datetime) -> int:
    """Delete messages sent before ``before`` (housekeeping); returns how many."""
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(outbox_t).where(
                ((outbox_t.c.state == SENT) & (outbox_t.c.sent_at < before))
                | ((outbox_t.c.state == WITHDRAWN) & (outbox_t.c.created_at < before))
            )
        )
    return int(result.rowcount or 0)
