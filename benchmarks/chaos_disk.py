"""Slack accepts a message the instant the disk fills: the delivery guarantee on a real full
disk (a 2 MiB tmpfs in a private mount namespace, ``unshare -rm``).

The same three phases as ``tests/alerts/test_outbox_full_disk.py``: a deliverer that lives
records the answer once space is freed and never posts the message again; one that dies
before recording leaves it to be sent again after its claim, labelled as a possible repeat.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from chaos_support import Results

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.alerts.full_disk_delivery import broken_promises, on_full_disk  # noqa: E402
from tests.full_disk import can_mount_tmpfs  # noqa: E402


async def run_disk(results: Results, work: Path) -> None:
    if not can_mount_tmpfs():
        results.add("disk", "full disk as Slack accepts", "no tmpfs in a user namespace", False)
        return
    began = time.monotonic()
    phases = await asyncio.to_thread(on_full_disk, work)
    broken = broken_promises(phases)
    sent = len(phases.lives["received"]) + len(phases.dies["received"])
    sent += len(phases.restarts["received"])
    results.add(
        "disk",
        "full disk as Slack accepts",
        f"{sent} posts for 3 messages: 0 repeats while the deliverer lived, 1 labelled repeat "
        f"after it died; {time.monotonic() - began:.0f}s",
        not broken,
        "; ".join(broken),
    )
