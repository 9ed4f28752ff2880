"""Akamai at 50 ms a request: does a pull keep ``max_concurrency`` requests in flight?

The sandbox runs as its own process (this script with ``--serve``), serving Billing API v1
for 25 contracts of 8 products each, every Akamai request held 50 ms by a ``latency`` fault;
each answer is rendered once and then served from memory (see :class:`ResponseCache`), so the
server costs little besides the latency, as a real provider's would. This process then runs
:class:`~reconciler.providers.akamai.AkamaiProvider` as the engine does (the contracts, each
contract's products, then one monthly summary per product over ``--months`` months) once for
each ``max_concurrency``, and prints:

- the requests the pull made and the most the sandbox counted in flight at once;
- the wall time, the ideal ``requests × latency / concurrency`` and their ratio (1.00: the
  latency fully overlapped; the contracts list is asked for before anything else, and a
  contract's summaries only once its products are listed, so a round or two of waiting
  always adds up);
- the floor: the same requests, signed the same way, sent with plain aiohttp under a
  semaphore of the same size, no dependency between them: what this machine allows right now
  (on a busy machine the floor is far from the ideal too);
- the client's CPU time for the pull.

    .venv/bin/python benchmarks/akamai_concurrency.py [--latency-ms 50] [--months 12]
        [--concurrency 1 4 8 16 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from reconciler.sandbox.app import route_name

CONTRACTS = 25
PRODUCTS_PER_CONTRACT = 8
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ResponseCache:
    """Keeps each Akamai answer the sandbox rendered and serves it again from memory.

    Added after the sandbox's own middlewares (counting, faults, the EdgeGrid check), so every
    request is still counted, delayed by the latency fault and authenticated; only rendering
    an answer, the same on every run, is not repeated. ``GET /_bench/urls`` lists the
    requests seen, for the floor to replay.
    """

    def __init__(self) -> None:
        self.bodies: dict[str, tuple[int, str, bytes]] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not route_name(request).startswith("akamai."):
            return await handler(request)
        kept = self.bodies.get(request.path_qs)
        if kept is not None:
            status, content_type, body = kept
            return web.Response(status=status, body=body, content_type=content_type)
        response = await handler(request)
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            self.bodies[request.path_qs] = (response.status, response.content_type, response.body)
        return response

    async def urls(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.bodies))


async def serve(latency_ms: int) -> None:
    """The sandbox, until stdin closes; its first line says where it is (JSON)."""
    from reconciler.sandbox import SandboxServer, named_scenario

    scenario = named_scenario("default").replace(
        akamai_contracts=CONTRACTS,
        akamai_products_per_contract=PRODUCTS_PER_CONTRACT,
        akamai_oddities=False,
    )
    cache = ResponseCache()
    server = SandboxServer(scenario, host="127.0.0.1", port=0)
    server.app.middlewares.append(cache.middleware)
    server.app.router.add_get("/_bench/urls", cache.urls)
    async with server:
        latency = {"kind": "latency", "latency_ms": latency_ms, "endpoint": "akamai"}
        server.state.add_faults([latency])
        where = {
            "base_url": server.base_url,
            "today": server.state.today.isoformat(),
            "edgerc": server.edgerc_text(),
        }
        print(json.dumps(where), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _control(session: aiohttp.ClientSession, method: str, url: str) -> Any:
    async with session.request(method, url) as response:
        response.raise_for_status()
        return await response.json() if response.status != 204 else None


async def pull_once(
    where: dict[str, Any], edgerc: Path, concurrency: int, months: int
) -> tuple[int, int, int, float, float]:
    """(requests, max in flight, lines, wall s, client CPU s) of one Akamai pull."""
    from reconciler.providers.akamai import AkamaiProvider
    from reconciler.providers.base import open_provider
    from reconciler.providers.http import HttpClient
    from reconciler.settings import AkamaiSourceSettings

    base_url = where["base_url"]
    settings = AkamaiSourceSettings(
        name="akamai-bench",
        provider="akamai",
        base_url=base_url,
        edgerc=edgerc,
        lookback_months=months,
        max_concurrency=concurrency,
        max_retries=0,
    )
    async with aiohttp.ClientSession() as control:
        await _control(control, "DELETE", f"{base_url}/_sandbox/stats")
        async with HttpClient() as http:
            provider = open_provider(settings, 0, http, {})
            assert isinstance(provider, AkamaiProvider)
            lines = 0
            started, cpu_started = time.perf_counter(), time.process_time()
            async for page in provider.pull(date.fromisoformat(where["today"])):
                lines += len(page)
            wall_s = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_started
        routes = (await _control(control, "GET", f"{base_url}/_sandbox/stats"))["routes"]
    in_flight = max(r["max_in_flight"] for name, r in routes.items() if name.startswith("akamai."))
    return provider.stats.api_calls, in_flight, lines, wall_s, cpu_s


async def floor_once(where: dict[str, Any], edgerc: Path, concurrency: int) -> float:
    """Wall time of the same requests, signed, sent with plain aiohttp ``concurrency`` at once."""
    import yarl

    from reconciler.providers.edgegrid import EdgeGridCredentials, sign_aiohttp_request

    credentials = EdgeGridCredentials.from_edgerc(edgerc)
    base_url = where["base_url"]
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        paths = await _control(session, "GET", f"{base_url}/_bench/urls")

        async def get(path: str) -> None:
            url = yarl.URL(base_url + path, encoded=True)
            async with limit:
                headers = sign_aiohttp_request(credentials, "GET", url)
                async with session.get(url, headers=headers) as response:
                    json.loads(await response.read())

        started = time.perf_counter()
        await asyncio.gather(*(get(path) for path in paths))
        return time.perf_counter() - started


async def main(latency_ms: int, months: int, concurrencies: list[int]) -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        "--latency-ms",
        str(latency_ms),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None and server.stdin is not None
    try:
        async with asyncio.timeout(60):
            where = json.loads(await server.stdout.readline())
        with tempfile.TemporaryDirectory(prefix="akamai-bench-") as tmp:
            edgerc = Path(tmp) / "sandbox.edgerc"
            fd = os.open(edgerc, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(where["edgerc"])
            await pull_once(where, edgerc, max(concurrencies), months)  # renders every answer
            print(
                f"Akamai sandbox (own process): {CONTRACTS} contracts x {PRODUCTS_PER_CONTRACT} "
                f"products, {months} months, {latency_ms} ms a request"
            )
            print(
                "concurrency requests in-flight  lines    wall   ideal  ratio   floor  "
                "ratio  client CPU"
            )
            for concurrency in concurrencies:
                requests, in_flight, lines, wall_s, cpu_s = await pull_once(
                    where, edgerc, concurrency, months
                )
                floor_s = await floor_once(where, edgerc, concurrency)
                ideal_s = requests * latency_ms / 1000 / concurrency
                print(
                    f"{concurrency:>11} {requests:>8} {in_flight:>9} {lines:>6} "
                    f"{wall_s:>6.2f}s {ideal_s:>6.2f}s {wall_s / ideal_s:>6.2f} "
                    f"{floor_s:>6.2f}s {wall_s / floor_s:>6.2f} {cpu_s:>10.2f}s",
                    flush=True,
                )
    finally:
        server.stdin.close()
        try:
            async with asyncio.timeout(10):
                await server.wait()
        except TimeoutError:
            server.kill()
            await server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=50, help="each request's latency")
    parser.add_argument("--months", type=int, default=12, help="lookback_months")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4, 8, 16, 32], help="max_concurrency"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.latency_ms))
    else:
        asyncio.run(main(args.latency_ms, args.months, args.concurrency))
