"""A local stand-in for Slack incoming webhooks: a real aiohttp server on loopback.

It checks every payload the way Slack does (JSON, text or blocks, 50 blocks, 150 characters
per header, 3,000 per section text, known block types, well-formed text objects), records
what it accepted and rejected, and can be told to answer the next requests, or all of them
until cleared, with 429 + ``Retry-After``, 500, 404 ``channel_not_found`` and so on.

In process::

    async with SlackStandIn() as slack:
        url = slack.webhook_url("alerts")
        slack.answer_next("rate_limited", times=2)
        ...
        assert slack.received["alerts"]

Out of process, the same controls are served over HTTP: ``GET /_slack/webhooks/{name}``
(the webhook URL), ``GET /_slack/received``, ``DELETE /_slack/received``,
``POST /_slack/behaviour`` (``{"answer": "server_error", "times": 3}`` or
``{"status": 429, "body": "rate_limited", "retry_after": "2"}``) and
``DELETE /_slack/behaviour``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

from aiohttp import web

MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_CHARS = 3_000
MAX_FIELD_CHARS = 2_000
MAX_BLOCK_ID_CHARS = 255
KNOWN_BLOCKS = frozenset(
    {"actions", "context", "divider", "file", "header", "image", "input"}
    | {"markdown", "rich_text", "section", "video"}
)
_TEXT_KEYS = {
    "plain_text": ("emoji", {"type", "text", "emoji"}),
    "mrkdwn": ("verbatim", {"type", "text", "verbatim"}),
}


@dataclass(frozen=True, slots=True)
class Answer:
    """How to answer a request; ``status=None`` means "handle it normally" (after ``delay_s``)."""

    status: int | None
    body: str = ""
    retry_after: str | None = None
    delay_s: float = 0.0


ANSWERS = {
    "rate_limited": Answer(429, "rate_limited", retry_after="1"),
    "server_error": Answer(500, "rollup_error"),
    "invalid_payload": Answer(400, "invalid_payload"),
    "invalid_blocks": Answer(400, "invalid_blocks"),
    "no_text": Answer(400, "no_text"),
    "action_prohibited": Answer(403, "action_prohibited"),
    "channel_not_found": Answer(404, "channel_not_found"),
    "channel_is_archived": Answer(410, "channel_is_archived"),
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """A payload refused by validation: Slack's error code and the exact reason."""

    webhook: str
    error: str
    detail: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request to a webhook URL and the status it got."""

    webhook: str
    status: int
    body: str


@dataclass(slots=True)
class _Rule:
    answer: Answer
    remaining: int | None
    webhook: str | None


class InvalidMessage(ValueError):
    def __init__(self, error: str, detail: str) -> None:
        self.error = error
        self.detail = detail
        super().__init__(f"{error}: {detail}")


def _text_object(value: object, path: str, limit: int, *, plain_only: bool = False) -> None:
    if not isinstance(value, dict):
        raise InvalidMessage("invalid_blocks", f"{path}: must be a text object")
    kind = value.get("type")
    if kind not in _TEXT_KEYS or (plain_only and kind != "plain_text"):
        allowed = "plain_text" if plain_only else "plain_text or mrkdwn"
        raise InvalidMessage("invalid_blocks", f"{path}.type: must be {allowed}, got {kind!r}")
    flag, keys = _TEXT_KEYS[kind]
    if extra := set(value) - keys:
        raise InvalidMessage("invalid_blocks", f"{path}: unexpected keys {sorted(extra)}")
    if flag in value and not isinstance(value[flag], bool):
        raise InvalidMessage("invalid_blocks", f"{path}.{flag}: must be a boolean")
    text = value.get("text")
    if not isinstance(text, str) or not text:
        raise InvalidMessage("invalid_blocks", f"{path}.text: must be a non-empty string")
    if len(text) > limit:
        raise InvalidMessage(
            "invalid_blocks", f"{path}.text: {len(text)} characters, more than {limit}"
        )


def _keys(block: dict[str, Any], path: str, allowed: set[str]) -> None:
    if extra := set(block) - allowed - {"type", "block_id"}:
        raise InvalidMessage("invalid_blocks", f"{path}: unexpected keys {sorted(extra)}")


def _element_list(value: object, path: str, most: int) -> list[Any]:
    if not isinstance(value, list) or not 1 <= len(value) <= most:
        raise InvalidMessage("invalid_blocks", f"{path}: must be a list of 1 to {most} items")
    return value


def _block(block: object, path: str) -> None:
    if not isinstance(block, dict):
        raise InvalidMessage("invalid_blocks", f"{path}: must be an object")
    kind = block.get("type")
    if kind not in KNOWN_BLOCKS:
        raise InvalidMessage("invalid_blocks", f"{path}.type: unknown block type {kind!r}")
    if kind == "header":
        _keys(block, path, {"text"})
        _text_object(block.get("text"), f"{path}.text", MAX_HEADER_CHARS, plain_only=True)
    elif kind == "section":
        _keys(block, path, {"text", "fields", "accessory", "expand"})
        if "text" not in block and "fields" not in block:
            raise InvalidMessage("invalid_blocks", f"{path}: needs text or fields")
        if "text" in block:
            _text_object(block["text"], f"{path}.text", MAX_SECTION_CHARS)
        if "fields" in block:
            for i, field in enumerate(_element_list(block["fields"], f"{path}.fields", 10)):
                _text_object(field, f"{path}.fields[{i}]", MAX_FIELD_CHARS)
        if "accessory" in block and not isinstance(block["accessory"], dict):
            raise InvalidMessage("invalid_blocks", f"{path}.accessory: must be an object")
    elif kind == "context":
        _keys(block, path, {"elements"})
        for i, element in enumerate(_element_list(block.get("elements"), f"{path}.elements", 10)):
            if isinstance(element, dict) and element.get("type") == "image":
                continue
            _text_object(element, f"{path}.elements[{i}]", MAX_SECTION_CHARS)
    elif kind == "divider":
        _keys(block, path, set())


def check_message(payload: object) -> None:
    """Raise :class:`InvalidMessage` with Slack's error code if Slack would refuse ``payload``."""
    if not isinstance(payload, dict):
        raise InvalidMessage("invalid_payload", "the body is not a JSON object")
    text, blocks = payload.get("text"), payload.get("blocks")
    if text is not None and not isinstance(text, str):
        raise InvalidMessage("invalid_payload", "text: must be a string")
    if blocks is not None and not isinstance(blocks, list):
        raise InvalidMessage("invalid_blocks", "blocks: must be a list")
    if not text and not blocks:
        raise InvalidMessage("no_text", "neither text nor blocks")
    blocks = blocks or []
    if len(blocks) > MAX_BLOCKS:
        raise InvalidMessage("invalid_blocks", f"blocks: {len(blocks)}, more than {MAX_BLOCKS}")
    ids: set[str] = set()
    for index, block in enumerate(blocks):
        path = f"blocks[{index}]"
        _block(block, path)
        if "block_id" in block:
            block_id = block["block_id"]
            if not isinstance(block_id, str) or not 0 < len(block_id) <= MAX_BLOCK_ID_CHARS:
                raise InvalidMessage("invalid_blocks", f"{path}.block_id: invalid")
            if block_id in ids:
                raise InvalidMessage("invalid_blocks", f"{path}.block_id: duplicate {block_id!r}")
            ids.add(block_id)


def _to_json(value: object) -> web.Response:
    return web.json_response(text=json.dumps(value, default=str, ensure_ascii=False))


class SlackStandIn:
    """A Slack incoming-webhook server on loopback for tests and local runs."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.rejected: list[Rejection] = []
        self.attempts: list[Attempt] = []
        self._tokens: dict[str, str] = {}
        self._rules: list[_Rule] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        # Called with each accepted message before it is answered (a test makes its fault
        # happen in the instant between Slack's acceptance and the sender's record of it).
        self.on_accepted: Callable[[str, Any], None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def webhook_url(self, name: str = "default") -> str:
        """The URL of webhook ``name`` (created on first use; stable afterwards)."""
        token = self._tokens.get(name)
        if token is None:
            token = secrets.token_urlsafe(18)
            self._tokens[name] = token
            self.received.setdefault(name, [])
        return f"{self.base_url}/services/T000/B000/{token}"

    def revoke(self, name: str) -> None:
        """Revoke webhook ``name``: its URL answers 404 ``no_service`` from now on, as
        Slack does for a removed or rotated webhook (``webhook_url(name)`` makes a new one)."""
        self._tokens.pop(name, None)

    def answer_next(
        self, answer: Answer | str, times: int = 1, *, webhook: str | None = None
    ) -> None:
        """Answer the next ``times`` requests (to ``webhook``, or any) with ``answer``."""
        if times < 1:
            raise ValueError("times must be at least 1")
        self._rules.append(_Rule(_answer(answer), times, webhook))

    def answer_all(self, answer: Answer | str, *, webhook: str | None = None) -> None:
        """Answer every request (to ``webhook``, or any) with ``answer`` until cleared."""
        self._rules.append(_Rule(_answer(answer), None, webhook))

    def clear_behaviour(self) -> None:
        self._rules.clear()

    def clear_received(self) -> None:
        for messages in self.received.values():
            messages.clear()
        self.rejected.clear()
        self.attempts.clear()

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/services/{team}/{bot}/{token}", self._webhook)
        app.router.add_get("/_slack/webhooks/{name}", self._get_webhook)
        app.router.add_get("/_slack/received", self._get_received)
        app.router.add_delete("/_slack/received", self._delete_received)
        app.router.add_post("/_slack/behaviour", self._post_behaviour)
        app.router.add_delete("/_slack/behaviour", self._delete_behaviour)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _next_answer(self, webhook: str) -> Answer | None:
        for rule in self._rules:
            if rule.webhook in (None, webhook):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                return rule.answer
        return None

    def _reply(
        self, webhook: str, status: int, body: str, retry_after: str | None = None
    ) -> web.Response:
        self.attempts.append(Attempt(webhook, status, body))
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return web.Response(status=status, text=body, headers=headers)

    def _reject(self, webhook: str, problem: InvalidMessage, payload: Any) -> web.Response:
        self.rejected.append(Rejection(webhook, problem.error, problem.detail, payload))
        return self._reply(webhook, 400, problem.error)

    async def _webhook(self, request: web.Request) -> web.Response:
        names = {token: name for name, token in self._tokens.items()}
        name = names.get(request.match_info["token"])
        if name is None:
            return self._reply("(unknown)", 404, "no_service")
        raw = await request.read()
        answer = self._next_answer(name)
        if answer is not None:
            if answer.delay_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), answer.delay_s)
            if answer.status is not None:
                return self._reply(name, answer.status, answer.body, answer.retry_after)
        payload: Any = None
        try:
            payload = json.loads(raw, parse_float=Decimal)
            check_message(payload)
        except InvalidMessage as e:
            return self._reject(name, e, payload)
        except ValueError:  # not UTF-8 or not JSON
            return self._reject(name, InvalidMessage("invalid_payload", "not JSON"), None)
        self.received.setdefault(name, []).append(payload)
        if self.on_accepted is not None:
            self.on_accepted(name, payload)
        return self._reply(name, 200, "ok")

    async def _get_webhook(self, request: web.Request) -> web.Response:
        return _to_json({"url": self.webhook_url(request.match_info["name"])})

    async def _get_received(self, request: web.Request) -> web.Response:
        return _to_json(
            {
                "received": self.received,
                "rejected": [asdict(r) for r in self.rejected],
                "attempts": [asdict(a) for a in self.attempts],
            }
        )

    async def _delete_received(self, request: web.Request) -> web.Response:
        self.clear_received()
        return web.Response(status=204)

    async def _post_behaviour(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            if not isinstance(spec, dict):
                raise ValueError("the body must be a JSON object")
            answer, times, webhook = answer_from_spec(spec)
            if times is None:
                self.answer_all(answer, webhook=webhook)
            else:
                self.answer_next(answer, times, webhook=webhook)
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.Response(status=204)

    async def _delete_behaviour(self, request: web.Request) -> web.Response:
        self.clear_behaviour()
        return web.Response(status=204)


def answer_from_spec(spec: dict[str, Any]) -> tuple[Answer, int | None, str | None]:
    """Read a behaviour request: a named answer and/or status, body, retry_after, delay_s."""
    answer = _answer(spec["answer"]) if "answer" in spec else Answer(status=None)
    status = spec.get("status", answer.status)
    times, webhook = spec.get("times"), spec.get("webhook")
    if status is not None and (not isinstance(status, int) or not 200 <= status <= 599):
        raise ValueError(f"status must be an HTTP status code, got {status!r}")
    if times is not None and not isinstance(times, int):
        raise ValueError(f"times must be an integer or null, got {times!r}")
    if webhook is not None and not isinstance(webhook, str):
        raise ValueError(f"webhook must be a name or null, got {webhook!r}")
    retry_after = spec.get("retry_after", answer.retry_after)
    try:
        delay_s = float(spec.get("delay_s", answer.delay_s))
    except (TypeError, ValueError):
        raise ValueError("delay_s must be a number of seconds") from None
    answer = Answer(
        status=status,
        body=str(spec.get("body", answer.body)),
        retry_after=None if retry_after is None else str(retry_after),
        delay_s=delay_s,
    )
    return answer, times, webhook


def _answer(answer: Answer | str) -> Answer:
    if isinstance(answer, Answer):
        return answer
    try:
        return ANSWERS[answer]
    except KeyError:
        raise ValueError(f"unknown answer {answer!r}; known: {', '.join(ANSWERS)}") from None
