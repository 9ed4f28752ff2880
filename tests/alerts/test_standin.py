"""The Slack stand-in: Slack's payload rules, programmable answers and the HTTP control API."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.alerts.slack import render_resolved_message, render_run_message
from reconciler.domain import PlanItem
from reconciler.sandbox.slack import Answer, InvalidMessage, SlackStandIn, check_message
from tests.alerts.helpers import plan_items


def _text(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": kind, "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _text(text)}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": _text(text, "plain_text")}


@pytest.mark.parametrize(
    ("payload", "error", "detail"),
    [
        ({"text": "hi"}, None, None),
        ({"blocks": [_section("hi")]}, None, None),
        ({"text": "x", "blocks": [_header("h" * 150), _section("s" * 3000)]}, None, None),
        ({"text": "x", "blocks": [{"type": "divider"}] * 50}, None, None),
        ({"text": "x", "blocks": [{"type": "context", "elements": [_text("c")]}]}, None, None),
        ([], "invalid_payload", "not a JSON object"),
        ({"text": 5}, "invalid_payload", "text: must be a string"),
        ({}, "no_text", "neither text nor blocks"),
        ({"text": "", "blocks": []}, "no_text", "neither text nor blocks"),
        ({"text": "x", "blocks": {}}, "invalid_blocks", "blocks: must be a list"),
        ({"text": "x", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks", "51, more than 50"),
        ({"text": "x", "blocks": [_header("h" * 151)]}, "invalid_blocks", "151 characters"),
        ({"text": "x", "blocks": [_section("s" * 3001)]}, "invalid_blocks", "3001 characters"),
        (
            {"text": "x", "blocks": [{"type": "header", "text": _text("h")}]},
            "invalid_blocks",
            "blocks[0].text.type: must be plain_text",
        ),
        ({"text": "x", "blocks": [{"type": "banner"}]}, "invalid_blocks", "unknown block type"),
        ({"text": "x", "blocks": ["section"]}, "invalid_blocks", "blocks[0]: must be an object"),
        ({"text": "x", "blocks": [{"type": "section"}]}, "invalid_blocks", "needs text or fields"),
        ({"text": "x", "blocks": [_section("")]}, "invalid_blocks", "non-empty string"),
        (
            {"text": "x", "blocks": [{"type": "section", "text": {"type": "html", "text": "a"}}]},
            "invalid_blocks",
            "must be plain_text or mrkdwn",
        ),
        (
            {"text": "x", "blocks": [{"type": "section", "text": {**_text("a"), "emoji": True}}]},
            "invalid_blocks",
            "unexpected keys ['emoji']",
        ),
        (
            {"text": "x", "blocks": [{"type": "section", "text": {**_text("a"), "verbatim": "y"}}]},
            "invalid_blocks",
            "verbatim: must be a boolean",
        ),
        (
            {"text": "x", "blocks": [{"type": "divider", "text": _text("a")}]},
            "invalid_blocks",
            "unexpected keys ['text']",
        ),
        (
            {"text": "x", "blocks": [{"type": "context", "elements": []}]},
            "invalid_blocks",
            "list of 1 to 10",
        ),
        (
            {"text": "x", "blocks": [{"type": "section", "fields": [_text("f" * 2001)]}]},
            "invalid_blocks",
            "2001 characters",
        ),
        (
            {"text": "x", "blocks": [{**_section("a"), "block_id": "b"}] * 2},
            "invalid_blocks",
            "duplicate 'b'",
        ),
    ],
)
def test_check_message_follows_slack_rules(
    payload: Any, error: str | None, detail: str | None
) -> None:
    if error is None:
        check_message(payload)
        return
    with pytest.raises(InvalidMessage) as caught:
        check_message(payload)
    assert caught.value.error == error
    assert detail is not None and detail in caught.value.detail


async def _post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with asyncio.timeout(10), session.post(url, data=data) as response:
        return response.status, await response.text(), response.headers.get("Retry-After")


async def test_accepts_records_and_rejects_with_reason(
    slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    url = slack.webhook_url("alerts")
    assert url == slack.webhook_url("alerts")
    assert url.startswith(f"{slack.base_url}/services/T000/B000/")
    assert await _post(session, url, {"text": "hello"}) == (200, "ok", None)
    too_many = {"text": "x", "blocks": [{"type": "divider"}] * 51}
    assert await _post(session, url, too_many) == (400, "invalid_blocks", None)
    assert await _post(session, url, b"{not json") == (400, "invalid_payload", None)
    wrong = url.rsplit("/", 1)[0] + "/nope"
    assert await _post(session, wrong, {"text": "x"}) == (404, "no_service", None)

    assert slack.received == {"alerts": [{"text": "hello"}]}
    assert [(r.webhook, r.error) for r in slack.rejected] == [
        ("alerts", "invalid_blocks"),
        ("alerts", "invalid_payload"),
    ]
    assert slack.rejected[0].detail == "blocks: 51, more than 50"
    assert [a.status for a in slack.attempts] == [200, 400, 400, 404]


async def test_programmed_answers_next_n_per_webhook_and_until_cleared(
    slack: SlackStandIn, session: aiohttp.ClientSession
) -> None:
    a, b = slack.webhook_url("a"), slack.webhook_url("b")
    slack.answer_next(Answer(429, "rate_limited", retry_after="3"), times=2, webhook="a")
    slack.answer_next("server_error")
    assert await _post(session, b, {"text": "1"}) == (500, "rollup_error", None)
    assert await _post(session, a, {"text": "2"}) == (429, "rate_limited", "3")
    assert await _post(session, a, {"text": "3"}) == (429, "rate_limited", "3")
    assert await _post(session, a, {"text": "4"}) == (200, "ok", None)

    slack.answer_all("channel_not_found")
    for _ in range(3):
        assert await _post(session, b, {"text": "5"}) == (404, "channel_not_found", None)
    slack.clear_behaviour()
    assert await _post(session, b, {"text": "6"}) == (200, "ok", None)
    assert slack.received == {"a": [{"text": "4"}], "b": [{"text": "6"}]}

    slack.clear_received()
    assert slack.received == {"a": [], "b": []}
    assert slack.attempts == [] and slack.rejected == []
    with pytest.raises(ValueError, match="unknown answer 'nope'"):
        slack.answer_next("nope")


async def test_http_control_api(slack: SlackStandIn, session: aiohttp.ClientSession) -> None:
    control = f"{slack.base_url}/_slack"
    async with asyncio.timeout(10):
        async with session.get(f"{control}/webhooks/ops") as response:
            url = (await response.json())["url"]
        assert url == slack.webhook_url("ops")
        behaviour = {"answer": "rate_limited", "retry_after": 7, "times": 1, "webhook": "ops"}
        async with session.post(f"{control}/behaviour", json=behaviour) as response:
            assert response.status == 204
        assert await _post(session, url, {"text": "a"}) == (429, "rate_limited", "7")
        async with session.post(
            f"{control}/behaviour", json={"status": 410, "body": "channel_is_archived"}
        ) as response:
            assert response.status == 204
        assert await _post(session, url, {"text": "b"}) == (410, "channel_is_archived", None)
        async with session.delete(f"{control}/behaviour") as response:
            assert response.status == 204
        assert await _post(session, url, {"text": "c"}) == (200, "ok", None)
        assert await _post(session, url, {"text": ""}) == (400, "no_text", None)
        async with session.get(f"{control}/received") as response:
            state = await response.json()
        assert state["received"] == {"ops": [{"text": "c"}]}
        assert [(r["webhook"], r["error"]) for r in state["rejected"]] == [("ops", "no_text")]
        assert [a["status"] for a in state["attempts"]] == [429, 410, 200, 400]
        for bad in ({"answer": "nope"}, {"status": "x"}, {"times": "2"}, [1]):
            async with session.post(f"{control}/behaviour", json=bad) as response:
                assert response.status == 400
        async with session.delete(f"{control}/received") as response:
            assert response.status == 204
        assert slack.received == {"ops": []}


@pytest.fixture(scope="module")
def threaded_slack() -> Iterator[SlackStandIn]:
    """A stand-in on its own event loop thread, so synchronous hypothesis tests can POST."""
    started = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        async with SlackStandIn() as stand_in:
            state["slack"], state["stop"] = stand_in, asyncio.Event()
            state["loop"] = asyncio.get_running_loop()
            started.set()
            await state["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the stand-in did not start"
    yield state["slack"]
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def _post_sync(url: str, payload: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(plan_items, max_size=60),
    resolved=st.lists(plan_items, max_size=4),
    source=st.text(max_size=200),
)
def test_stand_in_accepts_every_rendered_message(
    threaded_slack: SlackStandIn, items: list[PlanItem], resolved: list[PlanItem], source: str
) -> None:
    url = threaded_slack.webhook_url("render")
    run = render_run_message(source=source, run_id=1, items=items, resolved=resolved)
    assert _post_sync(url, run) == (200, "ok"), threaded_slack.rejected[-1:]
    if resolved:
        notice = render_resolved_message(source=source, items=resolved)
        assert _post_sync(url, notice) == (200, "ok"), threaded_slack.rejected[-1:]
