"""Faults a user can cause, as one line each: the cause and what to do about it.

A full disk, a locked or corrupt SQLite file, an unreachable or missing PostgreSQL database,
a database URL without an async driver, a busy listen port: none of these is a bug, so none
of them may reach the user as a Python traceback. :func:`explain` finds the root cause in an
exception (through SQLAlchemy's wrappers, exception chains and groups) and says it in one
line; anything it does not recognise is left alone (a bug keeps its traceback).
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

NOTHING_STORED = "nothing was stored"
_DB_DRIVERS = {"psycopg", "psycopg2", "pg8000", "pysqlite2", "MySQLdb", "pymysql", "cx_Oracle"}


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception behind it, nearest first, each once."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)
        for behind in (current.__cause__, current.__context__):
            if behind is not None:
                pending.append(behind)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_SQLITE_FAULTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("database is locked", "database table is locked"),
        "the state database is locked by another process (a daemon, a pull or an open "
        "sqlite3 shell) for longer than the busy timeout: wait for it to finish or stop it, "
        f"then try again ({NOTHING_STORED})",
    ),
    (
        ("database or disk is full", "disk i/o error"),
        "cannot write the state database ({detail}): the disk holding the state directory is "
        f"full or failing; free space there and try again ({NOTHING_STORED})",
    ),
    (
        ("file is not a database", "malformed", "database corrupt"),
        "the state database is corrupt ({detail}): restore it from a backup, or move it "
        "aside and run 'reconciler init' for a new state",
    ),
    (
        ("readonly database", "read-only"),
        "the state database is read-only ({detail}): check the permissions and mount of "
        "the state directory and its files",
    ),
    (
        ("unable to open database file",),
        "cannot open the state database ({detail}): check that the state directory exists "
        "and is writable ([state] directory, or run 'reconciler init')",
    ),
    (
        ("no such table",),
        "the state database has lost its tables ({detail}): restore it from a backup, or "
        "move it aside and run 'reconciler init' for a new state",
    ),
)


def _sqlite(error: sqlite3.Error) -> str:
    detail = _first_line(error)
    lowered = detail.lower()
    for needles, message in _SQLITE_FAULTS:
        if any(needle in lowered for needle in needles):
            return message.format(detail=detail)
    return f"the state database failed: {detail}"


_POSTGRES_HINTS = {
    "InvalidCatalogNameError": "create the database (createdb) or fix [state] database_url",
    "InvalidAuthorizationSpecificationError": "check the user in [state] database_url",
    "InvalidPasswordError": "check the credentials in [state] database_url",
    "CannotConnectNowError": "the server is starting or shutting down; try again shortly",
    "ConnectionDoesNotExistError": f"check the server and try again ({NOTHING_STORED})",
    "ConnectionFailureError": f"check the server and try again ({NOTHING_STORED})",
    "AdminShutdownError": f"the server was shut down; try again ({NOTHING_STORED})",
    "TooManyConnectionsError": "the server has no free connection slots; try again later",
}


def _postgres(error: BaseException) -> str | None:
    name = type(error).__name__
    module = type(error).__module__
    if not module.startswith("asyncpg"):
        return None
    hint = _POSTGRES_HINTS.get(name)
    if hint is None and "connection" in _first_line(error).lower():
        hint = f"check the server and try again ({NOTHING_STORED})"
    if hint is None:
        return f"PostgreSQL: {_first_line(error)}"
    return f"PostgreSQL: {_first_line(error)}: {hint}"


def _os_error(error: OSError) -> str | None:
    where = f" ({error.filename})" if error.filename else ""
    reason = error.strerror or _first_line(error)
    if error.errno == errno.ENOSPC:
        return f"no space left on device{where}: free space and try again ({NOTHING_STORED})"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{reason}{where}: check the permissions and mount of the state directory"
    if error.errno == errno.EADDRINUSE:
        return (
            f"cannot listen: {reason}: another process uses the port; stop it or change "
            "[daemon] listen ('' turns the HTTP endpoint off)"
        )
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        return (
            f"{reason}{where}: a file is where a directory should be; fix the path in the "
            "configuration or move the file"
        )
    if error.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
        return (
            f"cannot connect to the database server: {reason}: check that it is running and "
            "that [state] database_url names it"
        )
    if error.filename:  # a file of the user's: missing, unreadable, on a failing disk
        return f"{reason}{where}: check the path and its permissions"
    return None


def _url_problem(error: BaseException) -> str | None:
    if isinstance(error, ModuleNotFoundError) and error.name in _DB_DRIVERS:
        return (
            f"[state] database_url needs an async driver (module {error.name!r} is not one): "
            "use postgresql+asyncpg://… or sqlite+aiosqlite:///…"
        )
    if isinstance(error, sa_exc.NoSuchModuleError):
        return (
            "[state] database_url names an unknown database: use postgresql+asyncpg://… "
            "or sqlite+aiosqlite:///…"
        )
    if isinstance(error, sa_exc.InvalidRequestError) and "async driver" in str(error):
        return (
            "[state] database_url needs an async driver: use postgresql+asyncpg://… or "
            "sqlite+aiosqlite:///…"
        )
    if isinstance(error, sa_exc.ArgumentError) and "URL" in str(error):
        return f"[state] database_url is not a database URL: {_first_line(error)}"
    return None


def explain(error: BaseException) -> str | None:
    """One line for a fault the user can fix, or None for anything else (a bug)."""
    for cause in _chain(error):
        if isinstance(cause, sqlite3.Error):
            return _sqlite(cause)
        message = _postgres(cause) or _url_problem(cause)
        if message is None and isinstance(cause, OSError):
            message = _os_error(cause)
        if message is not None:
            return message
    for cause in _chain(error):
        if isinstance(cause, TimeoutError | sa_exc.TimeoutError):
            return "timed out waiting for the state database: check the database server"
    return None
