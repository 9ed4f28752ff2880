"""The sandbox application: both providers and the control API on one aiohttp app.

Routes (one port serves all of them):

- Fastly (``Fastly-Key``): ``/billing/v3/usage-metrics``, ``/billing/v3/service-usage-metrics``,
  ``/billing/v3/invoices``, ``/billing/v3/invoices/month-to-date``.
- Akamai (EdgeGrid): ``/billing/v1/contracts/{contractId}/products``,
  ``/billing/v1/contracts/{contractId}/products/{productId}/usage/monthly-summary``,
  ``/contract-api/v1/contracts/identifiers``,
  ``/contract-api/v1/contracts/{contractId}/products/summaries``,
  ``/invoicing-api/v3/contracts/{contractId}/invoices`` (Invoicing API v3).
- Control, no auth: ``/_sandbox/...`` (see :mod:`reconciler.sandbox.control`).

Each provider request goes through: counting (per route and status, with in-flight maxima),
then faults (which may delay it or answer in its place), then the provider's auth check,
then the handler, whose JSON the fired data faults may alter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from reconciler.sandbox import akamai, akamai_invoices, control, fastly
from reconciler.sandbox.credentials import SandboxCredentials
from reconciler.sandbox.faults import BEFORE_HANDLER, FaultKind
from reconciler.sandbox.responses import DATA_FAULTS, fault_status, html_error_page
from reconciler.sandbox.scenario import DEFAULT, Scenario
from reconciler.sandbox.state import STATE_KEY, SandboxState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_name(request: web.Request) -> str:
    """The route's name (``fastly.usage_metrics``...), or ``unmatched``."""
    route = request.match_info.route
    return route.name if route is not None and route.name else "unmatched"


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    stats = request.app[STATE_KEY].stats
    route = route_name(request)
    stats.started(route)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away first
        raise
    finally:
        stats.finished(route, status)


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    route = route_name(request)
    if not route.startswith(("fastly.", "akamai.")):
        return await handler(request)
    fired = state.faults.draw(route, request.path, has_cursor=bool(request.query.get("cursor")))
    for fault in fired:
        if fault.kind is FaultKind.LATENCY:
            await asyncio.sleep(fault.latency_ms / 1000)
        elif fault.kind is FaultKind.HANG:
            released = state.release_hangs
            try:
                await asyncio.wait_for(released.wait(), fault.hang_s)
            except TimeoutError:
                pass
            else:
                return fault_status(request, 503, "seconds", 1)
        elif fault.kind is FaultKind.STATUS:
            return fault_status(request, fault.status, fault.retry_after, fault.retry_after_s)
        elif fault.kind is FaultKind.HTML:
            return html_error_page()
    request[DATA_FAULTS] = [f for f in fired if f.kind not in BEFORE_HANDLER]
    return await handler(request)


@web.middleware
async def check_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    route = route_name(request)
    denied = None
    if route.startswith("fastly."):
        denied = fastly.check_token(request, state)
    elif route.startswith("akamai."):
        denied = await akamai.check_signature(request, state)
    return denied if denied is not None else await handler(request)


def create_app(
    scenario: Scenario | None = None,
    *,
    credentials: SandboxCredentials | None = None,
    state: SandboxState | None = None,
) -> web.Application:
    """The sandbox app for ``scenario`` (default: the ``default`` scenario).

    Pass ``state`` to share one state object with the caller; otherwise one is made from
    ``scenario`` and ``credentials`` and is reachable as ``app[STATE_KEY]``.
    """
    if state is None:
        state = SandboxState(scenario or DEFAULT, credentials)
    app = web.Application(middlewares=[count_requests, inject_faults, check_auth])
    app[STATE_KEY] = state
    fastly.add_routes(app)
    akamai.add_routes(app)
    akamai_invoices.add_routes(app)
    control.add_routes(app)

    async def release_hung_requests(app: web.Application) -> None:
        app[STATE_KEY].release()

    app.on_shutdown.append(release_hung_requests)
    return app
