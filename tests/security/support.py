"""A provider sandbox that misbehaves on purpose, unique secrets, and the CLI as a process.

:class:`Tamper` is a middleware added to a real sandbox app: it rewrites string values in the
JSON the providers answer (hostile product names, usage types, regions), and on request
answers with an error that echoes the credentials it received, as a careless provider might.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from reconciler.cli.setup_cmds import to_toml
from reconciler.sandbox import SandboxServer, named_scenario
from reconciler.sandbox.credentials import SandboxCredentials

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TIMEOUT_S = 120


def unique_credentials() -> SandboxCredentials:
    """Credentials nobody else uses, so finding one in an output means it leaked."""
    return SandboxCredentials(
        fastly_token=f"fastly-{secrets.token_hex(16)}",
        client_token=f"akab-client-{secrets.token_hex(12)}",
        access_token=f"akab-access-{secrets.token_hex(12)}",
        client_secret=f"{secrets.token_urlsafe(24)}=",
    )


class Tamper:
    """Rewrites provider JSON and, when ``leak`` is set, echoes credentials in an error."""

    def __init__(self) -> None:
        self.replacements: dict[str, str] = {}
        self.leak = False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.leak and not request.path.startswith("/_sandbox"):
            received = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            body = {
                "msg": f"invalid credentials {received.get('Fastly-Key', '')}",
                "detail": f"we received {json.dumps(received)}",
            }
            return web.json_response(body, status=500)
        response = await handler(request)
        if not self.replacements or not isinstance(response, web.Response):
            return response
        if response.content_type != "application/json" or response.body is None:
            return response
        text = bytes(response.body).decode()  # type: ignore[arg-type]
        for old, new in self.replacements.items():
            text = text.replace(json.dumps(old), json.dumps(new))
        return web.Response(
            text=text, status=response.status, content_type="application/json", charset="utf-8"
        )


@asynccontextmanager
async def tampered_sandbox(
    credentials: SandboxCredentials | None = None,
) -> AsyncIterator[tuple[SandboxServer, Tamper]]:
    """The default scenario on loopback, behind a :class:`Tamper`."""
    server = SandboxServer(named_scenario("default"), host="127.0.0.1", credentials=credentials)
    tamper = Tamper()
    server.app.middlewares.append(tamper.middleware)
    async with server:
        yield server, tamper


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> Ran:
    """``python -m reconciler ARGS`` (the real entry point) in ``cwd``; never hangs."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECONCILER_", "FASTLY_", "SLACK_", "NOTIFY_", "JOURNAL_"))
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler",
        *args,
        cwd=cwd,
        env={**base, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return Ran(proc.returncode or 0, out.decode(), err.decode())


def write_config(
    directory: Path,
    sandbox: SandboxServer,
    *,
    expectations: list[dict[str, Any]] | None = None,
    webhook_env: str = "SLACK_WEBHOOK_URL",
    edgerc_mode: int = 0o600,
    **extra: Any,
) -> Path:
    """reconciler.toml for both sandbox providers, state and reports under ``directory``."""
    edgerc = directory / "sandbox.edgerc"
    edgerc.write_text(sandbox.edgerc_text())
    edgerc.chmod(edgerc_mode)
    common = {"base_url": sandbox.base_url, "lookback_months": 3, "max_retries": 0}
    data: dict[str, Any] = {
        "state": {"directory": str(directory / "state")},
        "sources": [
            {"name": "fastly", "provider": "fastly", "finalize_after_days": 3, **common},
            {
                "name": "akamai",
                "provider": "akamai",
                "edgerc": str(edgerc),
                "contracts": sandbox.contracts,
                **common,
            },
        ],
        "expectations": expectations or [],
        "alerts": {"slack": {"webhook_url_env": webhook_env, "min_severity": "info"}},
        **extra,
    }
    path = directory / "reconciler.toml"
    path.write_text(to_toml(data))
    return path


def write_backend_config(directory: Path, sandbox: SandboxServer, backend: str, url: str) -> Path:
    """:func:`write_config` with the state on ``backend``: a SQLite file under
    ``directory/state``, or the PostgreSQL database ``url``."""
    state = {"directory": str(directory / "state")}
    if backend != "sqlite":
        state["database_url"] = url
    return write_config(directory, sandbox, state=state)


@asynccontextmanager
async def initialized_state(
    directory: Path, backend: str, url: str
) -> AsyncIterator[tuple[SandboxServer, dict[str, str]]]:
    """The default sandbox, ``reconciler.toml`` for it in ``directory`` with the state on
    ``backend`` (see :func:`write_backend_config`), and ``reconciler init`` run: the sandbox
    and the environment a CLI command needs."""
    async with tampered_sandbox() as (sandbox, _):
        write_backend_config(directory, sandbox, backend, url)
        env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
        ran = await cli("init", cwd=directory, env=env)
        assert ran.code == 0, ran.output
        yield sandbox, env


def files_text(directory: Path) -> str:
    """Every file under ``directory``, as text (binary files as latin-1)."""
    parts = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def sqlite_dump(db: Path) -> str:
    """Every row of every table of a SQLite file, as text."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        lines = [repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')]
    finally:
        conn.close()
    return "\n".join(lines)
