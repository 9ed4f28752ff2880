"""Local stand-ins for the alert channels: real aiohttp servers on loopback that check what
they receive the way the real services do.

- ``POST /webhook/{name}``: a receiver of the generic webhook that verifies the HMAC
  signature with its secret and refuses stale timestamps and replayed deliveries (401).
- ``POST /v2/enqueue``: PagerDuty's Events API v2: ``routing_key`` (32 characters),
  ``event_action`` (trigger, acknowledge, resolve), ``dedup_key`` (at most 255), and for a
  trigger a ``payload`` with ``summary`` (at most 1,024), ``source`` and ``severity``
  (critical, error, warning, info); 202 ``{"status": "success", ...}`` or 400
  ``{"status": "invalid event", ...}``. Open alerts are tracked by routing and dedup key.
- ``POST /teams/{name}``: a Teams Workflows webhook: a ``message`` with one Adaptive Card
  attachment (``AdaptiveCard``, version at most 1.5, a ``body`` of known elements), the
  request at most 28 KB; 202 or 400 / 413.

Every endpoint can be told to answer the next requests with a status (``answer_next``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from reconciler.alerts.channels.generic import verify

PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
TEAMS_MAX_BYTES = 28 * 1024
CARD_ELEMENTS = {"TextBlock", "Container", "ColumnSet", "FactSet", "Image", "RichTextBlock"}


class Invalid(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Canned:
    status: int
    body: str = ""
    retry_after: str | None = None


@dataclass
class ChannelStandIn:
    """The channel receivers on one loopback port (``async with``)."""

    host: str = "127.0.0.1"
    port: int = 0
    webhook_secrets: dict[str, bytes] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    webhooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    webhook_headers: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    webhook_raw: dict[str, list[bytes]] = field(default_factory=dict)
    pagerduty: list[dict[str, Any]] = field(default_factory=list)
    open_alerts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    teams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _canned: list[tuple[str, Canned]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def webhook_url(self, name: str) -> str:
        return f"{self.base_url}/webhook/{name}"

    def teams_url(self, name: str) -> str:
        return f"{self.base_url}/teams/{name}"

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/v2/enqueue"

    def answer_next(self, prefix: str, canned: Canned, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path starts with ``prefix``."""
        self._canned += [(prefix, canned)] * times

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=1024**2)
        app.router.add_post("/webhook/{name}", self._webhook)
        app.router.add_post("/v2/enqueue", self._pagerduty)
        app.router.add_post("/teams/{name}", self._teams)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _take_canned(self, path: str) -> web.Response | None:
        for index, (prefix, canned) in enumerate(self._canned):
            if path.startswith(prefix):
                del self._canned[index]
                headers = {"Retry-After": canned.retry_after} if canned.retry_after else None
                return web.Response(status=canned.status, text=canned.body, headers=headers)
        return None

    def _refuse(
        self, path: str, code: int, reason: str, body: dict[str, Any] | None = None
    ) -> web.Response:
        self.refused.append((path, code, reason))
        return web.json_response(body or {"error": reason}, status=code)

    async def _webhook(self, request: web.Request) -> web.Response:
        if (canned := self._take_canned(request.path)) is not None:
            return canned
        name = request.match_info["name"]
        secret = self.webhook_secrets.get(name)
        if secret is None:
            return self._refuse(request.path, 404, "no such webhook")
        raw = await request.read()
        headers = dict(request.headers)
        problem = verify(secret, headers, raw, now=self.clock(), seen=self._seen)
        if problem is not None:
            return self._refuse(request.path, 401, problem)
        self.webhooks.setdefault(name, []).append(json.loads(raw, parse_float=Decimal))
        self.webhook_headers.setdefault(name, []).append(headers)
        self.webhook_raw.setdefault(name, []).append(raw)
        return web.Response(status=204)

    async def _pagerduty(self, request: web.Request) -> web.Response:
        if (canned := self._take_canned(request.path)) is not None:
            return canned
        try:
            event = json.loads(await request.read())
            check_pagerduty_event(event)
        except (ValueError, Invalid) as e:
            body = {"status": "invalid event", "message": "Event object is invalid"}
            return self._refuse(request.path, 400, str(e), {**body, "errors": [str(e)]})
        self.pagerduty.append(event)
        key = (event["routing_key"], event["dedup_key"])
        if event["event_action"] == "trigger":
            self.open_alerts[key] = event
        elif event["event_action"] == "resolve":
            self.open_alerts.pop(key, None)
        body = {"status": "success", "message": "Event processed", "dedup_key": key[1]}
        return web.json_response(body, status=202)

    async def _teams(self, request: web.Request) -> web.Response:
        if (canned := self._take_canned(request.path)) is not None:
            return canned
        raw = await request.read()
        if len(raw) > TEAMS_MAX_BYTES:
            return self._refuse(request.path, 413, f"request of {len(raw)} bytes, over 28 KB")
        try:
            check_teams_message(json.loads(raw))
        except (ValueError, Invalid) as e:
            return self._refuse(request.path, 400, str(e))
        self.teams.setdefault(request.match_info["name"], []).append(json.loads(raw))
        return web.Response(status=202)


def check_pagerduty_event(event: Any) -> None:
    """Raise :class:`Invalid` where PagerDuty would answer 400."""
    if not isinstance(event, dict):
        raise Invalid("the event is not a JSON object")
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        raise Invalid("'routing_key' must be a 32-character integration key")
    if event.get("event_action") not in PD_ACTIONS:
        raise Invalid(f"'event_action' must be one of {sorted(PD_ACTIONS)}")
    dedup = event.get("dedup_key")
    if event["event_action"] != "trigger" and not dedup:
        raise Invalid("'dedup_key' is required to acknowledge or resolve")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        raise Invalid("'dedup_key' must be a string of at most 255 characters")
    if event["event_action"] != "trigger":
        return
    payload = event.get("payload")
    if not isinstance(payload, dict):
        raise Invalid("'payload' is required for a trigger")
    summary = payload.get("summary")
    if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
        raise Invalid("'payload.summary' must be 1 to 1024 characters")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        raise Invalid("'payload.source' is required")
    if payload.get("severity") not in PD_SEVERITIES:
        raise Invalid(f"'payload.severity' must be one of {sorted(PD_SEVERITIES)}")


def check_teams_message(message: Any) -> None:
    """Raise :class:`Invalid` where a Teams Workflows webhook would refuse the card."""
    if not isinstance(message, dict) or message.get("type") != "message":
        raise Invalid("the body must be a message")
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        raise Invalid("exactly one attachment expected")
    attachment = attachments[0]
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        raise Invalid("the attachment must be an Adaptive Card")
    card = attachment.get("content")
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        raise Invalid("content.type must be AdaptiveCard")
    version = str(card.get("version", ""))
    if version not in {"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"}:
        raise Invalid(f"unsupported card version {version!r}")
    body = card.get("body")
    if not isinstance(body, list) or not body:
        raise Invalid("the card has no body")

    def check(element: Any, path: str) -> None:
        if not isinstance(element, dict) or element.get("type") not in CARD_ELEMENTS:
            raise Invalid(f"{path}: unknown element")
        if element["type"] == "TextBlock" and not isinstance(element.get("text"), str):
            raise Invalid(f"{path}: a TextBlock needs text")
        for index, child in enumerate(element.get("items", [])):
            check(child, f"{path}.items[{index}]")

    for index, element in enumerate(body):
        check(element, f"body[{index}]")
    for action in card.get("actions", []):
        if action.get("type") != "Action.OpenUrl" or not str(action.get("url", "")).startswith(
            ("https://", "http://")
        ):
            raise Invalid("only Action.OpenUrl actions with a URL are expected")
