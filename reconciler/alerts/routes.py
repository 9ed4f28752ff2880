"""Where a source's alerts go: the global webhook or the source's own, and at what severity.

An outbox row names its destination without naming a URL: ``route`` is ``default`` (the
global webhook), ``source`` (the webhook of the row's source's own route) or ``team:<name>``
(a team's own webhook, ``[[alerts.slack.teams]]``). The URL is
resolved only when a message is sent, so a webhook can be configured, rotated or moved
to a credential file while messages wait, and no URL ever reaches the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import SecretStr

from reconciler.alerts.channels.selection import channel_name
from reconciler.alerts.channels.targets import resolve_channel
from reconciler.alerts.slack import mark_possible_repeat
from reconciler.alerts.webhook import DeliveryResult, SlackWebhookClient
from reconciler.domain import Severity
from reconciler.errors import MissingSecretError
from reconciler.logs import register_secret
from reconciler.money import Money
from reconciler.secrets import SecretRef, resolve_secret
from reconciler.settings import Settings

DEFAULT_ROUTE = "default"
SOURCE_ROUTE = "source"
TEAM_PREFIX = "team:"  # a team's own Slack webhook ([[alerts.slack.teams]])


def team_route(team: str) -> str:
    return f"{TEAM_PREFIX}{team}"


def team_of_route(route: str) -> str | None:
    return route[len(TEAM_PREFIX) :] if route.startswith(TEAM_PREFIX) else None


def team_routes(settings: Settings) -> list[tuple[str, Route]]:
    """Each ``[[alerts.slack.teams]]``: its team and route (first one per team)."""
    slack = settings.alerts.slack
    found: dict[str, Route] = {}
    for index, entry in enumerate(slack.teams):
        found.setdefault(
            entry.team,
            Route(
                team_route(entry.team),
                entry.min_severity or slack.min_severity,
                entry.webhook_ref(index),
                entry.min_impact,
            ),
        )
    return list(found.items())


@dataclass(frozen=True, slots=True)
class Route:
    """The route of one source: its outbox name, severity threshold and webhook secret."""

    name: str
    min_severity: Severity
    ref: SecretRef
    min_impact: Money | None = None


def route_for(settings: Settings, source: str) -> Route:
    """The source's own route (first ``[[alerts.slack.routes]]`` naming it) or the global one.

    Its ``min_impact`` is the route's, else the source's: smaller changes are not announced.

    A route without its own webhook only overrides the severity: its messages go to the
    global webhook (route ``default``).
    """
    slack = settings.alerts.slack
    for index, route in enumerate(slack.routes):
        if route.source != source:
            continue
        ref = route.webhook_ref(index)
        return Route(
            SOURCE_ROUTE if ref is not None else DEFAULT_ROUTE,
            route.min_severity or slack.min_severity,
            ref or slack.webhook_ref(),
            route.min_impact or _source_min_impact(settings, source),
        )
    return Route(
        DEFAULT_ROUTE, slack.min_severity, slack.webhook_ref(), _source_min_impact(settings, source)
    )


def _source_min_impact(settings: Settings, source: str) -> Money | None:
    return next((s.min_impact for s in settings.sources if s.name == source), None)


def destination_name(route: str, source: str) -> str:
    """How a destination is named in logs and status: ``default``, ``source:<name>`` or
    ``channel:<name>``."""
    if route == SOURCE_ROUTE:
        return f"source:{source}"
    if team_of_route(route) is not None:
        return route
    return route if channel_name(route) is not None else DEFAULT_ROUTE


def webhook_ref(settings: Settings, route: str, source: str) -> SecretRef:
    """The secret behind an outbox row's destination.

    A row routed to its source's own webhook whose route has since lost its webhook (or
    disappeared from the configuration) goes to the global webhook instead; a team's row
    whose route is gone waits (its team's webhook is not the global one).
    """
    if route == SOURCE_ROUTE:
        return route_for(settings, source).ref
    team = team_of_route(route)
    for name, found in team_routes(settings) if team is not None else []:
        if name == team:
            return found.ref
    if team is not None:
        raise MissingSecretError([f"alerts.slack.teams: no route for team '{team}' any more"])
    return settings.alerts.slack.webhook_ref()


@dataclass(frozen=True, slots=True)
class Webhook:
    """A resolved webhook: its display name, its URL (secret) and a key for pacing."""

    name: str
    url: SecretStr = field(repr=False)

    @property
    def key(self) -> str:
        """Identifies the URL (two routes may share one) without holding it in clear."""
        digest = hashlib.blake2b(self.url.get_secret_value().encode(), digest_size=8)
        return digest.hexdigest()

    async def send(
        self, client: SlackWebhookClient, payload: dict[str, Any], *, message_id: int, repeat: bool
    ) -> DeliveryResult:
        if repeat:
            payload = mark_possible_repeat(payload, message_id)
        return await client.post(self.url, payload, name=self.name)


class Target(Protocol):
    """Where one destination's messages go: a Slack webhook or a channel."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...

    async def send(
        self, client: SlackWebhookClient, payload: dict[str, Any], *, message_id: int, repeat: bool
    ) -> DeliveryResult: ...


class WebhookResolver:
    """Resolves and caches the webhook of each destination for one delivery pass."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._environ = environ
        self._cache: dict[tuple[str, str], Target | None] = {}
        self.problems: dict[str, str] = {}

    def get(self, route: str, source: str) -> Target | None:
        """The destination's webhook, or None when no URL is configured (see ``problems``)."""
        key = (route, source if route == SOURCE_ROUTE else "")
        if key not in self._cache:
            self._cache[key] = self._resolve(route, source)
        return self._cache[key]

    def _resolve(self, route: str, source: str) -> Target | None:
        name = destination_name(route, source)
        channel = channel_name(route)
        if channel is not None:
            try:
                return resolve_channel(self._settings, channel, self._environ)
            except MissingSecretError as e:
                self.problems[name] = "; ".join(e.problems)
            except KeyError:
                self.problems[name] = f"alerts.channels: no channel named '{channel}' any more"
            return None
        try:
            url = resolve_secret(webhook_ref(self._settings, route, source), self._environ)
        except MissingSecretError as e:
            self.problems[name] = "; ".join(e.problems)
            return None
        register_secret(url.get_secret_value())
        return Webhook(name, url)
