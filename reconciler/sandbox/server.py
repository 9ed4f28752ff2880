"""Run the sandbox in-process on a real socket::

    async with SandboxServer(named_scenario("default"), port=0) as sb:
        url = sb.base_url + "/billing/v3/usage-metrics?start_month=2024-05&end_month=2024-07"
        headers = {"Fastly-Key": sb.fastly_token}
        sb.state.advance(30)  # or POST /_sandbox/clock

``state`` is the live :class:`~reconciler.sandbox.state.SandboxState` (clock, events, faults,
request stats); the control API changes the same object.
"""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from reconciler.sandbox.app import create_app
from reconciler.sandbox.control import credentials_document
from reconciler.sandbox.credentials import SandboxCredentials, config_snippet
from reconciler.sandbox.scenario import DEFAULT, Scenario
from reconciler.sandbox.state import SandboxState

SHUTDOWN_TIMEOUT_S = 5.0


class SandboxServer:
    """The sandbox app served on ``host:port`` (``port=0``: any free port) while in use."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: SandboxCredentials | None = None,
    ) -> None:
        self.state = SandboxState(scenario or DEFAULT, credentials)
        self.app = create_app(state=self.state)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])
                break

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def scenario(self) -> Scenario:
        return self.state.scenario

    @property
    def address(self) -> str:
        """``host:port`` as clients reach it (a wildcard bind is reached on loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    @property
    def fastly_token(self) -> str:
        return self.state.credentials.fastly_token

    @property
    def contracts(self) -> list[str]:
        return list(self.state.akamai.contracts)

    def edgerc_text(self, section: str = "default") -> str:
        return self.state.credentials.edgerc_text(self.address, section)

    def config_snippet(
        self, *, edgerc_path: str = "sandbox.edgerc", section: str = "default"
    ) -> str:
        return config_snippet(
            self.base_url,
            self.contracts,
            edgerc_path=edgerc_path,
            section=section,
            finalize_after_days=self.scenario.finalize_after_days,
        )

    def credentials_document(self) -> dict[str, object]:
        return credentials_document(self.state, self.address)
