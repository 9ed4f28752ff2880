"""The delivery guarantee README states, on a real full disk: at least once, and exactly once
while the deliverer lives. The state is a SQLite file on a tiny tmpfs (a private mount
namespace); the disk fills the instant the Slack stand-in accepts a message, so recording
Slack's answer fails for real (``database or disk is full``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.alerts.full_disk_delivery import broken_promises, on_full_disk
from tests.full_disk import can_mount_tmpfs

pytestmark = pytest.mark.skipif(
    not can_mount_tmpfs() and not os.environ.get("CI"),
    reason="this machine lets no user namespace mount a tmpfs",
)


def test_an_accepted_message_is_sent_once_and_a_repeat_after_a_crash_is_labelled(
    tmp_path: Path,
) -> None:
    phases = on_full_disk(tmp_path)
    assert broken_promises(phases) == []
    lives, dies, restarts = phases.lives, phases.dies, phases.restarts
    assert "database or disk is full" in phases.stderr  # the real fault, in one log line

    # The deliverer lives: Slack accepted #1 as the disk filled; its answer waits in memory,
    # nothing more is claimed while the disk stays full (past the claim's lease too), and once
    # space is freed #1 is recorded as sent (not sent again) before #2 is sent.
    assert lives["filled"] and lives["filled"][0] > 0
    assert lives["passes"] == [
        {"sent": 1, "attempted": 1, "unrecorded": 1},
        {"sent": 0, "attempted": 0, "unrecorded": 1},
        {"sent": 1, "attempted": 1, "unrecorded": 0},
    ]
    assert lives["received"] == ["reconciler · prod · run 1", "reconciler · prod · run 2"]
    assert lives["rows"] == [["sent", 1], ["sent", 1]]

    # The deliverer dies with the answer unrecorded: after its claim runs out, the message is
    # sent again, its title saying it may be a repeat.
    assert dies["passes"] == [{"sent": 1, "attempted": 1, "unrecorded": 1}]
    assert dies["received"] == ["reconciler · prod · run 1"]
    assert restarts["passes"] == [
        {"sent": 0, "attempted": 0, "unrecorded": 0},
        {"sent": 1, "attempted": 1, "unrecorded": 0},
    ]
    assert restarts["received"] == ["[possible repeat of alert #1] reconciler · prod · run 1"]
    assert restarts["rows"] == [["sent", 2]]
