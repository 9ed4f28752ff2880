"""The state marker: a small file that says "this database holds reconciler's state".

It is written in the state directory (beside ``state.db`` by default) once a database has
been migrated. A database that is empty (no schema at all) while its marker exists lost its
tables (truncated, replaced, dropped): migrating it silently would rebuild an empty state and
absorb every restatement and decrease that happened meanwhile without a finding. So only
``reconciler init`` may make a fresh state there; the daemon and ``db upgrade`` refuse.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from reconciler.errors import StateError


class LostStateError(StateError):
    """The database is empty although reconciler's state was kept there."""

    def __init__(self, where: str, marker: Path) -> None:
        super().__init__(
            f"the state database {where} is empty, but it held reconciler's state ({marker} "
            "says so): it lost its tables. Restore it from a backup; 'reconciler init' makes "
            "a fresh, empty state instead"
        )


def database_label(url: str) -> str:
    """The database's address without its password, for messages and the marker."""
    return make_url(url).render_as_string(hide_password=True)


def marker_path(state_directory: Path, url: str) -> Path:
    """The marker of the database at ``url``: one per database, in the state directory."""
    digest = hashlib.blake2b(database_label(url).encode(), digest_size=6).hexdigest()
    return state_directory / f"state-{digest}.marker"


def write_marker(path: Path, url: str, now: datetime) -> None:
    """Write (atomically, owner-only) the marker saying the database holds state."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps({"database": database_label(url), "since": now.isoformat()}) + "\n"
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    temporary.replace(path)
