"""The provider sandbox: a local, faithful Fastly and Akamai billing API.

Tests, benchmarks and the demo run against it over real HTTP on loopback. Start it with
``reconciler sandbox serve`` or in-process with :class:`SandboxServer`; drive its clock,
events and faults through ``server.state`` or the ``/_sandbox/`` control API.
"""

from __future__ import annotations

from reconciler.sandbox.app import create_app
from reconciler.sandbox.credentials import SandboxCredentials
from reconciler.sandbox.scenario import SCENARIOS, Scenario, named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.sandbox.state import STATE_KEY, SandboxState

__all__ = [
    "SCENARIOS",
    "STATE_KEY",
    "SandboxCredentials",
    "SandboxServer",
    "SandboxState",
    "Scenario",
    "create_app",
    "named_scenario",
]
