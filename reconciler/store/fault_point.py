"""A point where the chaos suite and the tests stop a pull: inside the reconcile transaction,
everything written, just before it commits.

With ``RECONCILER_TEST_HOLD_BEFORE_COMMIT=PATH`` in its environment, a pull writes its pid to
PATH there and holds the open transaction until the process is killed, so a SIGKILL lands
inside the commit every time, whatever the machine's speed. Unset (as in every real use), the
point does nothing. It is read here alone, not a setting: nothing configures it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

HOLD_BEFORE_COMMIT_ENV = "RECONCILER_TEST_HOLD_BEFORE_COMMIT"


async def hold_before_commit() -> None:
    """Hold here for good when the test environment asks for it; else return at once."""
    marker = os.environ.get(HOLD_BEFORE_COMMIT_ENV)
    if not marker:
        return
    await asyncio.to_thread(Path(marker).write_text, f"{os.getpid()}\n", encoding="utf-8")
    await asyncio.Event().wait()  # until killed
