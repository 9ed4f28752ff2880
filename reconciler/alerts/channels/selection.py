"""Which channel gets which of a run's items: ``[[alerts.routes]]`` by source (name or glob),
team (the item's owner, see ``[[teams]]``), severity and money impact; without routes, every
channel gets every source's items from its own ``min_severity`` (PagerDuty: critical only)."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from reconciler.domain import PlanItem, Severity
from reconciler.money import Money
from reconciler.reconcile.spend import below_min_impact
from reconciler.settings import AlertRouteSettings, ChannelSettings, Settings

CHANNEL_PREFIX = "channel:"


def channel_route(name: str) -> str:
    """The outbox route of a channel's messages."""
    return f"{CHANNEL_PREFIX}{name}"


def channel_name(route: str) -> str | None:
    return route[len(CHANNEL_PREFIX) :] if route.startswith(CHANNEL_PREFIX) else None


def _passes(item: PlanItem, severity: Severity, min_impact: Money | None) -> bool:
    """At the severity, and not below the money threshold (an item no rate prices, or
    priced in another currency, is never below it: it cannot be told)."""
    return item.severity.rank >= severity.rank and not below_min_impact(item, min_impact)


def _routes_for(
    settings: Settings, channel: ChannelSettings, source: str
) -> list[AlertRouteSettings]:
    return [
        r
        for r in settings.alerts.routes
        if channel.name in r.channels and fnmatchcase(source, r.source)
    ]


def select_for_channel(
    settings: Settings, channel: ChannelSettings, source: str, items: Sequence[PlanItem]
) -> list[PlanItem]:
    """The items of ``items`` this channel should hear about, in their order."""
    if not settings.alerts.routes:
        return [i for i in items if _passes(i, channel.default_severity, None)]
    routes = _routes_for(settings, channel, source)
    return [
        i
        for i in items
        if any(
            (r.team is None or r.team == i.team)
            and _passes(i, r.min_severity or channel.default_severity, r.min_impact)
            for r in routes
        )
    ]
