"""The control API under ``/_sandbox/``: what only the sandbox has, and needs no credentials.

- ``GET /_sandbox/clock`` → ``{"today": "YYYY-MM-DD"}`` (and ``"now"`` once it is set);
  ``POST /_sandbox/clock`` with ``{"today": "YYYY-MM-DD"}`` or ``{"advance_days": N}`` moves
  the simulated day; ``{"now": "<ISO instant>"}`` or ``{"advance_seconds": S}`` sets or moves
  the instant that daemons run with ``--sandbox-clock`` time their slots and leases by
  (until it is set they use their database's clock).
- ``GET|POST|DELETE /_sandbox/events``: list, add (one object or a list), clear events.
- ``GET|POST|DELETE /_sandbox/faults``: list (with how often each fired), add, clear faults.
- ``GET|DELETE /_sandbox/stats``: request counts per route and status, in-flight maxima.
- ``POST /_sandbox/options`` with ``{"fastly_service_usage_shape": "current" | "nested"}``.
- ``POST /_sandbox/reset``: the scenario's day, no events, no faults, zero counters.
- ``GET /_sandbox/credentials``: token, ``.edgerc`` text, contract ids, a config snippet.
- ``GET /_sandbox/scenario``: the scenario's parameters.
- ``GET /_sandbox/``: this list, as JSON.

A bad request body answers 400 ``{"error": "..."}``.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from typing import Any

from aiohttp import web

from reconciler.sandbox import jsonout
from reconciler.sandbox.credentials import config_snippet
from reconciler.sandbox.state import STATE_KEY, SandboxState


def _ok(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=jsonout.dump_bytes(payload), status=status, content_type="application/json"
    )


def _bad(message: str) -> web.Response:
    return _ok({"error": message}, status=400)


async def _json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the request body is not JSON") from None


def _state(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]


def _clock(state: SandboxState) -> dict[str, Any]:
    clock = {"today": state.today.isoformat()}
    if state.schedule_now is not None:
        clock["now"] = state.schedule_now.isoformat()
    return clock


async def get_clock(request: web.Request) -> web.Response:
    return _ok(_clock(_state(request)))


async def post_clock(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        body = await _json(request)
        if isinstance(body, dict) and isinstance(body.get("today"), str):
            state.set_today(date.fromisoformat(body["today"]))
        elif isinstance(body, dict) and type(body.get("advance_days")) is int:
            state.advance(body["advance_days"])
        elif isinstance(body, dict) and isinstance(body.get("now"), str):
            state.set_schedule_now(datetime.fromisoformat(body["now"]))
        elif isinstance(body, dict) and type(body.get("advance_seconds")) in (int, float):
            state.advance_schedule(float(body["advance_seconds"]))
        else:
            raise ValueError(
                'send {"today": "YYYY-MM-DD"}, {"advance_days": N}, {"now": "<ISO instant>"} '
                'or {"advance_seconds": S}'
            )
    except ValueError as e:
        return _bad(str(e))
    return _ok(_clock(state))


def _listed(body: Any) -> list[Any]:
    return body if isinstance(body, list) else [body]


async def get_events(request: web.Request) -> web.Response:
    return _ok([e.to_json() for e in _state(request).events])


async def post_events(request: web.Request) -> web.Response:
    try:
        added = _state(request).add_events(_listed(await _json(request)))
    except ValueError as e:
        return _bad(str(e))
    return _ok([e.to_json() for e in added], status=201)


async def delete_events(request: web.Request) -> web.Response:
    _state(request).events.clear()
    return _ok([])


async def get_faults(request: web.Request) -> web.Response:
    return _ok([f.to_json() for f in _state(request).faults.faults])


async def post_faults(request: web.Request) -> web.Response:
    try:
        added = _state(request).add_faults(_listed(await _json(request)))
    except ValueError as e:
        return _bad(str(e))
    return _ok([f.to_json() for f in added], status=201)


async def delete_faults(request: web.Request) -> web.Response:
    _state(request).clear_faults()
    return _ok([])


async def get_stats(request: web.Request) -> web.Response:
    return _ok(_state(request).stats.snapshot())


async def delete_stats(request: web.Request) -> web.Response:
    _state(request).stats.reset()
    return _ok(_state(request).stats.snapshot())


async def post_options(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        body = await _json(request)
        if not isinstance(body, dict) or set(body) != {"fastly_service_usage_shape"}:
            raise ValueError('send {"fastly_service_usage_shape": "current" | "nested"}')
        state.set_service_usage_shape(str(body["fastly_service_usage_shape"]))
    except ValueError as e:
        return _bad(str(e))
    return _ok({"fastly_service_usage_shape": state.service_usage_shape})


async def post_reset(request: web.Request) -> web.Response:
    state = _state(request)
    state.reset()
    return _ok({"today": state.today.isoformat()})


def credentials_document(state: SandboxState, host: str, scheme: str = "http") -> dict[str, Any]:
    """Everything a client config needs to reach this sandbox at ``host`` (``address:port``)."""
    base_url = f"{scheme}://{host}"
    contracts = list(state.akamai.contracts)
    creds = state.credentials
    return {
        "base_url": base_url,
        "fastly": {"token": creds.fastly_token, "customer_id": state.scenario.fastly_customer_id},
        "akamai": {
            "edgerc": creds.edgerc_text(host),
            "client_token": creds.client_token,
            "access_token": creds.access_token,
            "client_secret": creds.client_secret,
            "account_id": state.scenario.akamai_account_id,
            "contracts": contracts,
        },
        "config_snippet": config_snippet(
            base_url, contracts, finalize_after_days=state.scenario.finalize_after_days
        ),
    }


async def get_credentials(request: web.Request) -> web.Response:
    return _ok(credentials_document(_state(request), request.host, request.scheme))


async def get_scenario(request: web.Request) -> web.Response:
    scenario = dataclasses.asdict(_state(request).scenario)
    scenario["today"] = scenario["today"].isoformat()
    scenario["first_month"] = str(_state(request).scenario.first_month)
    return _ok(scenario)


async def get_index(request: web.Request) -> web.Response:
    routes = sorted(
        {f"{r.method} {r.resource.canonical}" for r in request.app.router.routes() if r.resource}
    )
    return _ok({"today": _state(request).today.isoformat(), "routes": routes})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sandbox/", get_index, name="sandbox.index")
    r.add_get("/_sandbox/clock", get_clock, name="sandbox.clock")
    r.add_post("/_sandbox/clock", post_clock, name="sandbox.clock_set")
    r.add_get("/_sandbox/events", get_events, name="sandbox.events")
    r.add_post("/_sandbox/events", post_events, name="sandbox.events_add")
    r.add_delete("/_sandbox/events", delete_events, name="sandbox.events_clear")
    r.add_get("/_sandbox/faults", get_faults, name="sandbox.faults")
    r.add_post("/_sandbox/faults", post_faults, name="sandbox.faults_add")
    r.add_delete("/_sandbox/faults", delete_faults, name="sandbox.faults_clear")
    r.add_get("/_sandbox/stats", get_stats, name="sandbox.stats")
    r.add_delete("/_sandbox/stats", delete_stats, name="sandbox.stats_clear")
    r.add_post("/_sandbox/options", post_options, name="sandbox.options")
    r.add_post("/_sandbox/reset", post_reset, name="sandbox.reset")
    r.add_get("/_sandbox/credentials", get_credentials, name="sandbox.credentials")
    r.add_get("/_sandbox/scenario", get_scenario, name="sandbox.scenario")
