"""The daemon's loopback HTTP endpoint: /healthz, /readyz and /metrics."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

Readiness = Callable[[], Awaitable[list[str]]]
MetricsRender = Callable[[], Awaitable[tuple[bytes, str]]]


def create_health_app(readiness: Readiness, metrics: MetricsRender) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        # Answering at all proves the event loop is alive.
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        problems = await readiness()
        body = {"status": "ready" if not problems else "not ready", "problems": problems}
        return web.Response(
            text=json.dumps(body),
            status=200 if not problems else 503,
            content_type="application/json",
        )

    async def metrics_endpoint(_: web.Request) -> web.Response:
        payload, content_type = await metrics()
        response = web.Response(body=payload)
        response.headers["Content-Type"] = content_type
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


class HealthServer:
    """Runs the endpoint on ``host:port`` until stopped."""

    def __init__(self, listen: str, readiness: Readiness, metrics: MetricsRender) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self._runner = web.AppRunner(create_health_app(readiness, metrics), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()

    async def stop(self) -> None:
        await self._runner.cleanup()
