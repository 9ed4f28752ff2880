"""What the outbox holds: queue depth, oldest pending, last success, failures, webhooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.alerts.blocks import load_blocks
from reconciler.alerts.channels.selection import channel_route
from reconciler.alerts.delivery import pending_counts
from reconciler.alerts.outbox import FAILED, PENDING, SENDING, SENT, WITHDRAWN, outbox_t
from reconciler.alerts.routes import WebhookResolver, destination_name
from reconciler.display import plural
from reconciler.settings import Settings


@dataclass(frozen=True, slots=True)
class FailedMessage:
    id: int
    source: str
    run_id: int | None
    kind: str
    attempts: int
    created_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    """One webhook destination: how many messages wait for it and whether it has a URL."""

    name: str
    waiting: int
    configured: bool
    problem: str | None = None
    blocked_reason: str | None = None  # the webhook refuses everything: its messages wait
    blocked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """One destination route (``default``, ``source``, ``channel:<name>``) over all time."""

    route: str
    counts: dict[str, int]
    last_sent_at: datetime | None


@dataclass
class OutboxStatus:
    now: datetime
    counts: dict[str, int]
    oldest_pending_at: datetime | None
    next_attempt_at: datetime | None
    last_sent_at: datetime | None
    last_retry_error: str | None
    failures: list[FailedMessage] = field(default_factory=list)
    destinations: list[DestinationStatus] = field(default_factory=list)
    channels: list[ChannelStatus] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        return self.counts.get(PENDING, 0) + self.counts.get(SENDING, 0)

    @property
    def delivery_failing(self) -> bool:
        """A webhook is refusing, unconfigured, or its next message is retrying."""
        stuck = any(d.blocked_reason or not d.configured for d in self.destinations)
        return bool(self.last_retry_error) or stuck

    @property
    def undelivered(self) -> int:
        """Messages kept because their destination has no webhook URL."""
        return sum(d.waiting for d in self.destinations if not d.configured)

    def to_json(self) -> dict[str, Any]:
        return {
            "now": _iso(self.now),
            "waiting": self.waiting,
            "counts": {state: self.counts.get(state, 0) for state in _STATES},
            "oldest_pending_at": _iso(self.oldest_pending_at),
            "oldest_pending_age_s": _age_s(self.now, self.oldest_pending_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "last_sent_at": _iso(self.last_sent_at),
            "last_retry_error": self.last_retry_error,
            "undelivered_no_webhook": self.undelivered,
            "delivery_failing": self.delivery_failing,
            "destinations": [
                {
                    "name": d.name,
                    "waiting": d.waiting,
                    "configured": d.configured,
                    "problem": d.problem,
                    "blocked": d.blocked_reason,
                    "blocked_at": _iso(d.blocked_at),
                }
                for d in self.destinations
            ],
            "channels": [
                {
                    "route": c.route,
                    "counts": {state: c.counts.get(state, 0) for state in _STATES},
                    "last_sent_at": _iso(c.last_sent_at),
                }
                for c in self.channels
            ],
            "failed": [
                {
                    "id": f.id,
                    "source": f.source,
                    "run_id": f.run_id,
                    "kind": f.kind,
                    "attempts": f.attempts,
                    "created_at": _iso(f.created_at),
                    "reason": f.reason,
                }
                for f in self.failures
            ],
        }


_STATES = (PENDING, SENDING, SENT, FAILED, WITHDRAWN)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def _age_s(now: datetime, then: datetime | None) -> int | None:
    return None if then is None else max(0, int((now - then).total_seconds()))


def format_age(seconds: float) -> str:
    """``42s``, ``12m``, ``3h 05m``, ``2d 04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


async def outbox_status(
    engine: AsyncEngine,
    settings: Settings,
    *,
    now: datetime,
    environ: Mapping[str, str] | None = None,
    failures_limit: int = 20,
) -> OutboxStatus:
    """The outbox as ``reconciler alerts status`` shows it."""
    async with engine.connect() as conn:
        counts = {
            state: int(count)
            for state, count in (
                await conn.execute(
                    select(outbox_t.c.state, func.count()).group_by(outbox_t.c.state)
                )
            ).all()
        }
        waiting = outbox_t.c.state.in_([PENDING, SENDING])
        oldest, next_at = (
            await conn.execute(
                select(func.min(outbox_t.c.created_at), func.min(outbox_t.c.next_attempt_at)).where(
                    waiting
                )
            )
        ).one()
        last_sent = (
            await conn.execute(select(func.max(outbox_t.c.sent_at)).where(outbox_t.c.state == SENT))
        ).scalar_one()
        last_error = (
            await conn.execute(
                select(outbox_t.c.last_error)
                .where(outbox_t.c.state == PENDING, outbox_t.c.last_error.is_not(None))
                .order_by(outbox_t.c.id)
                .limit(1)
            )
        ).scalar_one_or_none()
        per_route = (
            await conn.execute(
                select(
                    outbox_t.c.route, outbox_t.c.state, func.count(), func.max(outbox_t.c.sent_at)
                ).group_by(outbox_t.c.route, outbox_t.c.state)
            )
        ).all()
        failed_rows = (
            await conn.execute(
                select(outbox_t)
                .where(outbox_t.c.state == FAILED)
                .order_by(outbox_t.c.id.desc())
                .limit(failures_limit)
            )
        ).all()
    webhooks = WebhookResolver(settings, environ)
    blocks = await load_blocks(engine)
    destinations = []
    for (route, source), count in sorted((await pending_counts(engine)).items()):
        name = destination_name(route, source)
        webhook = webhooks.get(route, source)
        block = blocks.get(webhook.key) if webhook is not None else None
        destinations.append(
            DestinationStatus(
                name,
                count,
                webhook is not None,
                webhooks.problems.get(name),
                block.reason if block else None,
                _utc_or_none(block.blocked_at) if block else None,
            )
        )
    failures = [
        FailedMessage(
            r.id, r.source, r.run_id, r.kind, r.attempts, r.created_at, r.last_error or "failed"
        )
        for r in failed_rows
    ]
    return OutboxStatus(
        channels=_channels(settings, per_route),
        now=now,
        counts=counts,
        oldest_pending_at=_utc_or_none(oldest),
        next_attempt_at=_utc_or_none(next_at),
        last_sent_at=_utc_or_none(last_sent),
        last_retry_error=last_error,
        failures=failures,
        destinations=destinations,
    )


def _channels(settings: Settings, rows: Sequence[Any]) -> list[ChannelStatus]:
    """Every route with messages, and every configured channel (even without any)."""
    counts: dict[str, dict[str, int]] = {}
    last: dict[str, datetime | None] = {}
    for route, state, count, sent_at in rows:
        counts.setdefault(route, {})[state] = int(count)
        sent = _utc_or_none(sent_at)
        if sent is not None and (last.get(route) is None or sent > last[route]):  # type: ignore[operator]
            last[route] = sent
    for channel in settings.alerts.channels:
        counts.setdefault(channel_route(channel.name), {})
    return [ChannelStatus(r, counts[r], last.get(r)) for r in sorted(counts)]


def _utc_or_none(value: Any) -> datetime | None:
    # Aggregates (min/max) come back untyped on SQLite: bring them back to aware UTC.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value  # type: ignore[no-any-return]


def render_status(status: OutboxStatus) -> str:
    """The text of ``reconciler alerts status``."""
    now = status.now
    lines = []
    if status.waiting:
        oldest = status.oldest_pending_at
        text = f"queue: {plural(status.waiting, 'message')} waiting"
        if oldest is not None:
            text += f", oldest queued {format_age((now - oldest).total_seconds())} ago"
        lines.append(text)
        next_at = status.next_attempt_at
        if next_at is not None and next_at > now:
            lines.append(f"next attempt in {format_age((next_at - now).total_seconds())}")
        if status.last_retry_error:
            lines.append(f"retrying after: {status.last_retry_error}")
    else:
        lines.append("queue: empty")
    if status.delivery_failing:
        lines.append("delivery: FAILING (see below)")
    if status.last_sent_at is not None:
        age = format_age((now - status.last_sent_at).total_seconds())
        lines.append(f"last success: {_iso(status.last_sent_at)} ({age} ago)")
    else:
        lines.append("last success: never")
    counts = f"sent: {status.counts.get(SENT, 0)}, failed: {status.counts.get(FAILED, 0)}"
    if status.counts.get(WITHDRAWN):
        counts += f", withdrawn (acknowledged before delivery): {status.counts[WITHDRAWN]}"
    lines.append(counts)
    for failure in status.failures:
        run = f" run {failure.run_id}" if failure.run_id is not None else ""
        lines.append(
            f"  failed #{failure.id} ({failure.kind}, source {failure.source}{run}, "
            f"{plural(failure.attempts, 'attempt')}): {failure.reason}"
        )
    for channel in status.channels:
        if not channel.route.startswith("channel:"):
            continue  # Slack's own counts are the lines above
        c = channel.counts
        last = _iso(channel.last_sent_at) or "never"
        name = channel.route.removeprefix("channel:")
        lines.append(
            f"channel {name}: {c.get(SENT, 0)} sent, {c.get(FAILED, 0)} failed, "
            f"{c.get(PENDING, 0) + c.get(SENDING, 0)} waiting, last success {last}"
        )
    for destination in status.destinations:
        state = "configured" if destination.configured else "NOT configured"
        lines.append(f"webhook {destination.name}: {destination.waiting} waiting, URL {state}")
        if destination.blocked_reason:
            since = _iso(destination.blocked_at)
            lines.append(
                f"  STOPPED since {since}: {destination.blocked_reason}; its messages are kept: "
                "change its URL and reload, or run `reconciler alerts retry`"
            )
    if status.undelivered:
        lines.append(f"no webhook configured: {status.undelivered} messages kept undelivered")
        for destination in status.destinations:
            if destination.problem:
                lines.append(f"  {destination.problem}")
    return "\n".join(lines) + "\n"
