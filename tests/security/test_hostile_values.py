"""Values a database cannot store, from a provider, on SQLite and PostgreSQL.

NUL characters (PostgreSQL text cannot hold them), lone surrogates (no UTF-8 form), control
characters, and strings longer than the state's columns. A pull either stores a safe form of
the value or fails with a BadProviderDataError naming the source; it never escapes as a
database or encoding error, and it never leaves anything behind in the tracked state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.providers.http import HttpClient
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.sandbox import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.ingest import lines_t
from tests.security.support import Tamper, tampered_sandbox

CASES = {
    # name: (sandbox string to replace, hostile value, stored safely (True) or refused)
    "NUL in a product name": ("Web Application Accelerator", "Web\x00Accelerator", True),
    "lone surrogate in a usage type": ("North America Bandwidth", "Band\ud800width", True),
    "escape sequence in a region": ("North America", "North\x1b[2J America", True),
    "bidi override in a service name": ("www.example.com", "moc.elpmaxe\u202e.www", True),
    "a 600-character product name": ("Web Application Accelerator", "W" * 600, False),
    "a 300-character region": ("North America", "R" * 300, False),
    "a 100-character unit": ("GB", "G" * 100, False),
    "a 20-letter currency code": ("USD", "U" * 20, False),
}


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[SandboxServer, Tamper]]:
    async with tampered_sandbox() as pair:
        yield pair


async def pull_both(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> list[RunOutcome]:
    edgerc = tmp_path / "sandbox.edgerc"
    edgerc.write_text(sandbox.edgerc_text())
    edgerc.chmod(0o600)
    common = {"base_url": sandbox.base_url, "max_retries": 0, "lookback_months": 3}
    settings = settings_from_mapping(
        {
            "sources": [
                {"name": "fastly", "provider": "fastly", **common},
                {"name": "akamai", "provider": "akamai", "edgerc": str(edgerc), **common},
            ]
        }
    )
    env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
    async with HttpClient() as http:
        return [
            await refresh_source(
                engine, settings, name, http, environ=env, today=sandbox.state.today
            )
            for name in ("fastly", "akamai")
        ]


@pytest.mark.parametrize("case", list(CASES))
async def test_unstorable_values_are_cleaned_or_refused(
    case: str,
    engine: AsyncEngine,
    sandbox: tuple[SandboxServer, Tamper],
    tmp_path: Path,
) -> None:
    server, tamper = sandbox
    old, new, stored = CASES[case]
    tamper.replacements = {old: new}

    outcomes = await pull_both(engine, server, tmp_path)  # nothing but an outcome escapes

    errors = [o.error for o in outcomes if o.error]
    async with engine.connect() as conn:
        lines = (await conn.execute(select(func.count()).select_from(lines_t))).scalar_one()
        texts = " ".join(
            " ".join(map(str, row))
            for row in (
                await conn.execute(
                    select(
                        lines_t.c.product_name,
                        lines_t.c.usage_type,
                        lines_t.c.region,
                        lines_t.c.service_name,
                        lines_t.c.unit,
                    )
                )
            ).all()
        )
    if stored:
        assert errors == []
        assert lines > 0
        assert "\ufffd" in texts  # the unsafe character, replaced
        for unsafe in ("\x00", "\ud800", "\x1b", "\u202e"):
            assert unsafe not in texts
    else:
        assert errors, "an over-long value was stored"
        assert all(e.startswith("source '") for e in errors)
        assert any("longer than" in e for e in errors), errors
        failed = [o.source for o in outcomes if o.error]
        async with engine.connect() as conn:
            kept = (
                await conn.execute(
                    select(func.count()).select_from(lines_t).where(lines_t.c.source.in_(failed))
                )
            ).scalar_one()
        assert kept == 0  # the failed source's pull left nothing behind
