"""The sandbox's fixed credentials and the client configuration that goes with them.

The defaults are public on purpose: the sandbox guards nothing, it only checks that clients
send credentials the way the real providers demand (``Fastly-Key``; EdgeGrid signatures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_FASTLY_TOKEN = "sandbox-fastly-token"
DEFAULT_CLIENT_TOKEN = "akab-sandbox-client-token"
DEFAULT_ACCESS_TOKEN = "akab-sandbox-access-token"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret="
DEFAULT_MAX_BODY = 131072


@dataclass(frozen=True, slots=True)
class SandboxCredentials:
    """What the sandbox accepts: a Fastly API token and one EdgeGrid client."""

    fastly_token: str = DEFAULT_FASTLY_TOKEN
    client_token: str = DEFAULT_CLIENT_TOKEN
    access_token: str = DEFAULT_ACCESS_TOKEN
    client_secret: str = DEFAULT_CLIENT_SECRET
    max_body: int = DEFAULT_MAX_BODY

    def lookup_secret(self, client_token: str) -> tuple[str, str] | None:
        """EdgeGrid lookup: ``(client_secret, access_token)`` of a known client token."""
        if client_token == self.client_token:
            return self.client_secret, self.access_token
        return None

    def edgerc_text(self, host: str, section: str = "default") -> str:
        """An ``.edgerc`` section for this client; ``host`` is ``address:port``."""
        return (
            f"[{section}]\n"
            f"client_secret = {self.client_secret}\n"
            f"host = {host}\n"
            f"access_token = {self.access_token}\n"
            f"client_token = {self.client_token}\n"
            f"max-body = {self.max_body}\n"
        )


# The sandbox serves a day's usage on that day: its data has no lag.
_LAG = 'data_lag = "0s"\n'


def config_snippet(
    base_url: str,
    contracts: Sequence[str],
    *,
    edgerc_path: str = "sandbox.edgerc",
    section: str = "default",
    token_env: str = "FASTLY_API_TOKEN",
    finalize_after_days: int = 3,
) -> str:
    """``[[sources]]`` tables for reconciler.toml pointing both providers at the sandbox."""
    contract_list = ", ".join(f'"{c}"' for c in contracts)
    return (
        f"# Sources served by the provider sandbox at {base_url}\n"
        "[[sources]]\n"
        'name = "fastly-sandbox"\n'
        'provider = "fastly"\n'
        f'base_url = "{base_url}"\n'
        f'token_env = "{token_env}"\n'
        f"finalize_after_days = {finalize_after_days}\n"
        f"{_LAG}"
        "\n"
        "[[sources]]\n"
        'name = "akamai-sandbox"\n'
        'provider = "akamai"\n'
        f'base_url = "{base_url}"\n'
        f'edgerc = "{edgerc_path}"\n'
        f'section = "{section}"\n'
        f"contracts = [{contract_list}]\n"
        f"{_LAG}"
    )
