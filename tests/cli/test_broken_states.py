"""No command answers a fault a user can cause with a Python traceback.

Every command runs, through the real entry point (in-process, so the whole table stays
quick), against each broken state; an exception escaping ``main()`` is the traceback a user
would see. A command may succeed (a reader does not need the write lock) or fail with one
``error:`` line; the line for each state is checked where it is known.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from reconciler.cli import cli, main
from tests.full_disk import on_tiny_filesystem
from tests.test_cli import _walk

CONFIG = """\
[state]
{state}

[[sources]]
name = "fastly"
provider = "fastly"
base_url = "http://127.0.0.1:9"
token_env = "BROKEN_STATE_TOKEN"
max_retries = 0
"""

COMMANDS: dict[str, list[str]] = {
    "init": ["init"],
    "pull": ["pull"],
    "plan": ["plan", "--detailed-exitcode"],
    "apply": ["apply", "--auto-approve"],
    "findings": ["findings", "--json"],
    "state list": ["state", "list"],
    "state show": ["state", "show", "0123"],
    "state invoices": ["state", "invoices"],
    "report": ["report", "--format", "json", "--out", "r.json"],
    "db upgrade": ["db", "upgrade"],
    "db current": ["db", "current"],
    "db backup": ["db", "backup", "backup.db"],
    "alerts status": ["alerts", "status"],
    "alerts flush": ["alerts", "flush"],
    "alerts retry": ["alerts", "retry"],
    "alerts test": ["alerts", "test"],
    "config check": ["config", "check"],
}
# Commands that do not open the state: they may fail for their own reasons (no webhook).
STATELESS = {"config check", "alerts test"}
# Commands that serve until stopped or need no state; the daemon's busy port has its own test.
NOT_HERE = {"run", "check", "demo", "sandbox serve", "alerts", "config", "db", "state", "sandbox"}


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


Invoke = Callable[..., Ran]


@pytest.fixture
def invoke(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Invoke]:
    import logging

    for key in list(os.environ):
        if key.startswith(("RECONCILER_", "SLACK_", "FASTLY_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BROKEN_STATE_TOKEN", "token")
    monkeypatch.chdir(tmp_path)
    handlers = logging.getLogger().handlers[:]

    def run(*args: str) -> Ran:
        monkeypatch.setattr(sys, "argv", ["reconciler", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    yield run
    logging.getLogger().handlers[:] = handlers


def test_the_table_covers_every_command() -> None:
    names = {" ".join(path) for path, command in _walk(cli) if isinstance(command, click.Command)}
    assert names - NOT_HERE == set(COMMANDS)


def _write_config(directory: Path, state: str) -> None:
    (directory / "reconciler.toml").write_text(CONFIG.format(state=state), encoding="utf-8")


def _sqlite_state(directory: Path, invoke: Invoke) -> Path:
    _write_config(directory, 'directory = "state"')
    assert invoke("init").code == 0
    return directory / "state" / "state.db"


def _corrupt(db: Path) -> None:
    db.write_bytes(os.urandom(40_000))
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _truncate(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


CORRUPT = (
    "error: the state database is corrupt (file is not a database): restore it from a backup, "
    "or move it aside and run 'reconciler init' for a new state"
)
TRUNCATED = "error: the state database is corrupt (database disk image is malformed)"
LOCKED = "error: the state database is locked by another process"
NO_DRIVER = (
    "error: [state] database_url needs an async driver (module 'psycopg' is not one): use "
    "postgresql+asyncpg://… or sqlite+aiosqlite:///…"
)


def _check(ran: Ran, expected: str | None, name: str) -> None:
    assert "Traceback" not in ran.stdout + ran.stderr, name
    assert ran.code in (0, 1, 2), (name, ran)
    if ran.code == 1:
        errors = [line for line in ran.stderr.splitlines() if line.startswith("error: ")]
        assert errors or "FAILED" in ran.stdout or "problems" in ran.stderr, (name, ran)
        if expected is not None and errors:
            assert errors[0].startswith(expected), (name, errors[0])


@pytest.mark.parametrize("fault", ["corrupt", "truncated"])
def test_a_corrupt_or_truncated_sqlite_state(tmp_path: Path, invoke: Invoke, fault: str) -> None:
    db = _sqlite_state(tmp_path, invoke)
    (_corrupt if fault == "corrupt" else _truncate)(db)
    expected = CORRUPT if fault == "corrupt" else TRUNCATED
    failed = 0
    for name, args in COMMANDS.items():
        ran = invoke(*args)
        _check(ran, expected if name not in STATELESS else None, name)
        failed += ran.code == 1
    assert failed >= len(COMMANDS) - 2  # config check and alerts test need no state


def test_a_sqlite_state_locked_past_the_busy_timeout(
    tmp_path: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _sqlite_state(tmp_path, invoke)
    monkeypatch.setattr("reconciler.store.db.SQLITE_BUSY_TIMEOUT_MS", 0)  # no waiting here
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")  # so that readers are locked out too
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for name, args in COMMANDS.items():
            _check(invoke(*args), LOCKED if name not in STATELESS else None, name)
    finally:
        holder.rollback()
        holder.close()


def test_a_missing_state_directory_and_a_state_directory_that_is_a_file(
    tmp_path: Path, invoke: Invoke
) -> None:
    _write_config(tmp_path, 'directory = "missing"')
    for name, args in COMMANDS.items():
        if name != "init":
            _check(invoke(*args), None, name)
    (tmp_path / "afile").write_text("not a directory")
    _write_config(tmp_path, 'directory = "afile"')
    for name, args in COMMANDS.items():
        _check(invoke(*args), None, name)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.postgres
def test_postgres_missing_unreachable_or_without_its_driver(
    tmp_path: Path, invoke: Invoke, postgres_admin_url: str
) -> None:
    from sqlalchemy.engine import make_url

    admin = make_url(postgres_admin_url)
    missing = admin.set(database=f"missing_{uuid.uuid4().hex[:8]}")
    states = {
        missing.render_as_string(hide_password=False): "error: PostgreSQL: database ",
        admin.set(port=_free_port()).render_as_string(hide_password=False): (
            "error: cannot connect to the database server: "
        ),
        missing.set(drivername="postgresql").render_as_string(hide_password=False): NO_DRIVER,
    }
    for url, expected in states.items():
        _write_config(tmp_path, f'directory = "state"\ndatabase_url = "{url}"')
        for name, args in COMMANDS.items():
            _check(invoke(*args), expected if name not in STATELESS else None, name)


def test_the_daemon_on_a_busy_port_is_one_line(tmp_path: Path, invoke: Invoke) -> None:
    _sqlite_state(tmp_path, invoke)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = (tmp_path / "reconciler.toml").read_text()
        (tmp_path / "reconciler.toml").write_text(
            config + f'\n[daemon]\nlisten = "127.0.0.1:{port}"\n'
        )
        ran = invoke("run")
    assert ran.code == 1
    assert ran.stderr.splitlines()[-1] == (
        f"error: cannot listen: error while attempting to bind on address ('127.0.0.1', {port})"
        ": address already in use: another process uses the port; stop it or change "
        "[daemon] listen ('' turns the HTTP endpoint off)"
    )
    assert errno.EADDRINUSE  # the errno the message is built from


FULL_DISK_SCRIPT = """
"$PY" -m reconciler init > /dev/null
"$PY" -m reconciler pull > /dev/null 2>&1
fill_disk
for command in "$@"; do
  echo "=== $command" >&2
  $command
  echo "=== exit $?" >&2
done
"""


def test_a_full_disk(tmp_path: Path) -> None:
    """A real full filesystem: a 1 MiB tmpfs in a private mount namespace, filled up."""
    import shlex

    (tmp_path / "state").mkdir()
    _write_config(tmp_path, 'directory = "state"')
    py = shlex.quote(sys.executable)
    commands = [f"{py} -m reconciler {' '.join(args)}" for args in COMMANDS.values()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    result = on_tiny_filesystem(
        tmp_path / "state",
        FULL_DISK_SCRIPT,
        commands,
        cwd=tmp_path,
        env={**env, "PY": sys.executable, "BROKEN_STATE_TOKEN": "token"},
    )
    assert "Traceback" not in result.stdout + result.stderr
    blocks = result.stderr.split("=== ")[1:]
    exits = [b for b in blocks if b.startswith("exit ")]
    assert len(exits) == len(COMMANDS), result.stderr
    assert all(b.split()[1] in ("0", "1", "2") for b in exits), result.stderr
    assert "free space" in result.stderr + result.stdout
