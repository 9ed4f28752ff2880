"""Every configured secret masked from the moment the configuration is loaded.

A provider may echo any credential in an error before its own source is opened (a proxy
quoting a request, a misrouted answer naming another source's token), so the log's mask
cannot wait for each source to open: every secret the configuration can reach is resolved
and registered at load (CLI start, daemon start, each reload). What is missing or unreadable
is skipped here; ``config check`` and the source itself report it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from reconciler.errors import ReconcilerError
from reconciler.logs import register_secret
from reconciler.secrets import SecretRef, resolve_secret, secret_path
from reconciler.settings import AkamaiSourceSettings, Settings


def register_configured_secrets(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> int:
    """Register every secret ``settings`` names (tokens, EdgeGrid keys, webhooks); how many."""
    found = 0
    # A secret file readable by others is warned about here, once per process
    # (reconciler.secrets remembers it), not again when its source opens it.
    for value in _secret_values(settings, environ):
        register_secret(value)
        found += 1
    return found


def _secret_values(settings: Settings, environ: Mapping[str, str] | None) -> Iterator[str]:
    for index, source in enumerate(settings.sources):
        if isinstance(source, AkamaiSourceSettings):
            yield from _edgerc_values(source, index, environ)
        else:
            yield from _resolved(source.token_ref(index), environ)
    slack = settings.alerts.slack
    yield from _resolved(slack.webhook_ref(), environ)
    for index, route in enumerate(slack.routes):
        ref = route.webhook_ref(index)
        if ref is not None:
            yield from _resolved(ref, environ)


def _resolved(ref: SecretRef, environ: Mapping[str, str] | None) -> Iterator[str]:
    try:
        yield resolve_secret(ref, environ).get_secret_value()
    except (ReconcilerError, OSError):
        return


def _edgerc_values(
    source: AkamaiSourceSettings, index: int, environ: Mapping[str, str] | None
) -> Iterator[str]:
    from reconciler.providers.edgegrid import EdgeGridCredentials

    try:
        path = secret_path(source.edgerc_ref(index), environ)
        credentials = EdgeGridCredentials.from_edgerc(path, source.section)
    except (ReconcilerError, OSError, ValueError):
        return
    yield credentials.client_secret.get_secret_value()
    yield credentials.access_token
    yield credentials.client_token
