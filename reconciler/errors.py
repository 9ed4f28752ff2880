"""The ReconcilerError tree.

Every error a user can meet is one of these: its message names the source, endpoint or
config key involved and never contains a secret. The CLI prints ``error: <message>`` and
exits non-zero.
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base of every error reconciler reports to a user."""


class ConfigError(ReconcilerError, ValueError):
    """The configuration is invalid; ``problems`` lists each one with its key path."""

    def __init__(self, problems: list[str], path: str | None = None) -> None:
        self.problems = problems
        self.path = path
        where = f" in {path}" if path else ""
        super().__init__(f"invalid configuration{where}:\n  " + "\n  ".join(problems))


class MissingSecretError(ConfigError):
    """A secret was referenced but could not be found where the config says it lives."""


class StateError(ReconcilerError, RuntimeError):
    """The state database cannot be used as it is."""


class SchemaOutOfDateError(StateError):
    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"the state database is at schema {current or 'empty'}, this reconciler needs {head}: "
            "run 'reconciler db upgrade' (or 'reconciler init' for a new state directory)"
        )


class ProviderError(ReconcilerError, RuntimeError):
    """A provider request failed in a way that retrying did not or could not fix."""

    def __init__(
        self,
        source: str,
        endpoint: str,
        message: str,
        *,
        status: int | None = None,
    ) -> None:
        self.source = source
        self.endpoint = endpoint
        self.status = status
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"source '{source}': {endpoint}{code}: {message}")


class ProviderAuthError(ProviderError):
    """The provider rejected our credentials (401/403)."""


class BadProviderDataError(ProviderError, ValueError):
    """The provider answered, but with data that cannot be trusted (bad JSON, types, values)."""


class StalePlanError(ReconcilerError, RuntimeError):
    """A saved plan no longer matches the state it was made from."""


class AlertDeliveryError(ReconcilerError, RuntimeError):
    """Slack refused a message permanently (configuration error)."""


class SourceBusyError(ReconcilerError, RuntimeError):
    """Another process is pulling the same source."""
