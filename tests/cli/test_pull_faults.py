"""One source's database fault fails that source alone: ``pull`` goes on to the others.

The fault is raised by the real database in the middle of a real pull, when the Fastly source
stages its first page: on SQLite a trigger on the run's progress (written with each staged
page; the lines themselves go to a temp table) fails with SQLITE_FULL's message, on
PostgreSQL a trigger on the staging table terminates the pull's own connection.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from reconciler.store.db import create_engine
from tests.security.support import cli, tampered_sandbox, write_config

SQLITE_FULL = """
CREATE TRIGGER fail_fastly BEFORE UPDATE OF lines_read ON pull_runs
WHEN NEW.source = 'fastly' AND NEW.status = 'running'
BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END
"""
PG_FUNCTION = """
CREATE FUNCTION fail_fastly() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.source = 'fastly' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
  RETURN NEW;
END $$
"""
PG_TRIGGER = (
    "CREATE TRIGGER fail_fastly BEFORE INSERT ON staging_lines "
    "FOR EACH ROW EXECUTE FUNCTION fail_fastly()"
)


async def _plant(url: str, statements: list[str]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def test_a_database_fault_in_one_source_does_not_stop_the_others(
    tmp_path: Path, backend: str, state_url: str
) -> None:
    url = state_url
    async with tampered_sandbox() as (sandbox, _):
        if backend == "sqlite":
            state = {"directory": str(tmp_path / "state")}
            planted = [SQLITE_FULL]
            expected = (
                "fastly: FAILED after 0.0s (0 API calls, 0 retries): cannot write the state "
                "database (database or disk is full): the disk holding the state directory is "
                "full or failing; free space there and try again (nothing was stored)"
            )
        else:
            state = {"directory": str(tmp_path / "state"), "database_url": url}
            planted = [PG_FUNCTION, PG_TRIGGER]
            expected = (
                "fastly: FAILED after 0.0s (0 API calls, 0 retries): PostgreSQL: connection was "
                "closed in the middle of operation: terminating connection due to administrator "
                "command: check the server and try again (nothing was stored)"
            )
        write_config(tmp_path, sandbox, state=state)
        env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
        assert (await cli("init", cwd=tmp_path, env=env)).code == 0
        await _plant(url, planted)
        ran = await cli("pull", "--as-of", "2024-07-10", cwd=tmp_path, env=env)
    assert "Traceback" not in ran.output
    assert ran.code == 1, ran.output
    fastly, akamai = ran.stdout.splitlines()
    assert fastly == expected
    assert akamai.startswith("akamai: ") and " lines read, " in akamai, akamai
