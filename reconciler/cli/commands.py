"""Imports every command module so that each registers its commands on the group."""

from __future__ import annotations

from reconciler.cli import (  # noqa: F401
    alerts_cmds,
    cli,
    daemon_cmds,
    demo_cmd,
    invoice_cmds,
    report_cmd,
    review_cmds,
    setup_cmds,
    state_cmds,
)
from reconciler.sandbox.cli import sandbox_group

cli.add_command(sandbox_group)
