"""A channel's destination, resolved when a message is sent: its secrets and how to send.

The key that paces and blocks a destination is a hash of its endpoint and secret, so a
rotated URL, routing key or password ends a block by itself (see ``alerts.blocks``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from reconciler.alerts.channels.email import build_message, send_email
from reconciler.alerts.channels.generic import signed_request
from reconciler.alerts.channels.pagerduty import with_routing_key
from reconciler.alerts.webhook import DeliveryResult, SlackWebhookClient
from reconciler.errors import MissingSecretError
from reconciler.logs import register_secret
from reconciler.secrets import resolve_secret
from reconciler.settings import ChannelSettings, Settings


@dataclass(frozen=True, slots=True)
class ChannelTarget:
    """One channel, ready to send (its secrets resolved, never shown in a repr)."""

    channel: ChannelSettings
    url: SecretStr | None = field(repr=False)
    secret: SecretStr | None = field(repr=False)
    unix_time: Callable[[], float] = time.time

    @property
    def name(self) -> str:
        return f"channel:{self.channel.name}"

    @property
    def key(self) -> str:
        parts = [self.channel.type, self.channel.events_url, str(self.channel.smtp_host)]
        parts += [s.get_secret_value() for s in (self.url, self.secret) if s is not None]
        return hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()

    async def send(
        self, client: SlackWebhookClient, payload: dict[str, Any], *, message_id: int, repeat: bool
    ) -> DeliveryResult:
        kind = self.channel.type
        secret = self.secret.get_secret_value() if self.secret is not None else ""
        if kind == "email":
            message = build_message(self.channel, payload, message_id=message_id, repeat=repeat)
            return await send_email(self.channel, message, password=secret or None)
        if kind == "pagerduty":
            # PagerDuty deduplicates by dedup_key: a repeat updates the same alert.
            event = with_routing_key(payload, secret)
            data = _json_bytes(event)
            url = SecretStr(self.channel.events_url)
            return await client.post_bytes(
                url, data, name=self.name, redact=(secret,), any_body=True
            )
        assert self.url is not None
        if kind == "webhook":
            data, headers = signed_request(
                payload,
                message_id=message_id,
                repeat=repeat,
                secret=secret.encode(),
                timestamp=int(self.unix_time()),
            )
            return await client.post_bytes(
                self.url, data, name=self.name, headers=headers, redact=(secret,), any_body=True
            )
        card = _mark_repeat_card(payload, message_id) if repeat else payload
        return await client.post_bytes(self.url, _json_bytes(card), name=self.name, any_body=True)


def _json_bytes(value: dict[str, Any]) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _mark_repeat_card(message: dict[str, Any], message_id: int) -> dict[str, Any]:
    import copy

    marked = copy.deepcopy(message)
    body = marked["attachments"][0]["content"]["body"]
    if body and body[0].get("type") == "TextBlock":
        body[0]["text"] = f"[possible repeat of alert #{message_id}] {body[0]['text']}"
    return marked


def find_channel(settings: Settings, name: str) -> tuple[int, ChannelSettings] | None:
    for index, channel in enumerate(settings.alerts.channels):
        if channel.name == name:
            return index, channel
    return None


def resolve_channel(
    settings: Settings, name: str, environ: Mapping[str, str] | None
) -> ChannelTarget:
    """The channel's target; raises MissingSecretError (with its problems) when a secret is
    missing, KeyError when the channel is no longer configured."""
    found = find_channel(settings, name)
    if found is None:
        raise KeyError(name)
    index, channel = found
    url = None
    if channel.type in ("webhook", "teams"):
        url = resolve_secret(channel.url_ref(index), environ)
        register_secret(url.get_secret_value())
    secret = None
    ref = channel.secret_ref(index)
    if ref is not None:
        secret = resolve_secret(ref, environ)
        register_secret(secret.get_secret_value())
    return ChannelTarget(channel, url, secret)


__all__ = ["ChannelTarget", "MissingSecretError", "find_channel", "resolve_channel"]
