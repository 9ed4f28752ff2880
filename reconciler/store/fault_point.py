"""A point where the chaos suite and the tests stop a pull: inside the reconcile transaction,
everything written, just before it commits.

With ``RECONCILER_TEST_HOLD_BEFORE_COMMIT=PATH`` in its environment, a pull writes its pid to
PATH there and holds the open transaction until the process is killed, so a SIGKILL lands
inside the commit every time, whatever the machine's speed; deleting PATH lets the pull go on
and commit (a test that watches the open commit from outside). Unset (as in every real use),
the point does nothing. It is read here alone, not a setting: nothing configures it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

HOLD_BEFORE_COMMIT_ENV = "RECONCILER_TEST_HOLD_BEFORE_COMMIT"
# How often a held pull looks whether its marker was deleted (a poll, not a deadline).
RELEASE_POLL_S = 0.05


async def hold_before_commit() -> None:
    """Hold here while the test environment asks for it; else return at once."""
    marker = os.environ.get(HOLD_BEFORE_COMMIT_ENV)
    if not marker:
        return
    held = Path(marker)
    await asyncio.to_thread(held.write_text, f"{os.getpid()}\n", encoding="utf-8")
    # Until killed, or released: the marker is deleted from outside (maybe another process),
    # so there is no event to wait for, only the file to look at.
    while await asyncio.to_thread(held.exists):  # noqa: ASYNC110
        await asyncio.sleep(RELEASE_POLL_S)
