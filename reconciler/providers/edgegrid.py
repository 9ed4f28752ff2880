"""Akamai EdgeGrid ``EG1-HMAC-SHA256`` request signing and verification.

The client signs every Akamai request with :func:`authorization_header` (or
:func:`sign_aiohttp_request`); the sandbox checks those signatures with
:func:`verify_authorization`. Both build the same tab-joined string to sign::

    METHOD, scheme, host[:port], /path?query, canonical headers, content hash, auth

where ``auth`` is ``EG1-HMAC-SHA256 client_token=..;access_token=..;timestamp=..;nonce=..;``.
The key is ``base64(HMAC-SHA256(client_secret, timestamp))`` (the secret used as text) and the
header sent is ``auth + "signature=" + base64(HMAC-SHA256(key, data_to_sign))``.

The path and query must be signed exactly as they go on the wire. aiohttp turns a ``str`` URL
into ``yarl.URL(url)``, which re-quotes it (``%7E`` becomes ``~``, a space in the query becomes
``+``...), and then writes ``url.raw_path_qs`` in the request line and
``url.host_port_subcomponent`` in the ``Host`` header. So the signer parses a ``str`` URL the
same way and signs those two values. Callers must therefore pass the full URL, query included,
both here and to aiohttp: no ``params=``, no session ``base_url``, no plain-HTTP proxy, and
``allow_redirects=False`` (a redirect would resend the signature made for the old URL).
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import yarl
from pydantic import SecretStr

from reconciler.errors import ConfigError

__all__ = [
    "AUTH_SCHEME",
    "DEFAULT_MAX_BODY",
    "EdgeGridCredentials",
    "EdgeGridVerificationError",
    "authorization_header",
    "canonical_headers",
    "check_header_value",
    "content_hash",
    "data_to_sign",
    "edgegrid_timestamp",
    "parse_authorization",
    "sign_aiohttp_request",
    "signature",
    "signing_key",
    "verify_authorization",
]

AUTH_SCHEME: Final = "EG1-HMAC-SHA256"
_TIMESTAMP_FORMAT: Final = "%Y%m%dT%H:%M:%S+0000"
_TIMESTAMP_RE: Final = re.compile(r"^\d{8}T\d{2}:\d{2}:\d{2}\+0000$")
_SIGNATURE_RE: Final = re.compile(r"^[A-Za-z0-9+/]{43}=$")
_FIELDS: Final = ("client_token", "access_token", "timestamp", "nonce", "signature")
# The rule Akamai's reference client (through requests) applies to header values: no leading
# whitespace and no CR/LF. A receiver strips leading whitespace, so it could not be verified.
_CLEAN_HEADER_VALUE_RE: Final = re.compile(r"^\S[^\r\n]*$|^$")
_WHITESPACE_RE: Final = re.compile(r"\s+")


_EDGERC_KEYS: Final = ("client_secret", "host", "access_token", "client_token")
DEFAULT_MAX_BODY: Final = 131072


@dataclass(frozen=True)
class EdgeGridCredentials:
    """One Akamai API client's EdgeGrid credentials; the secret is masked in every repr.

    ``host`` is ``name[:port]``; a leading ``https://`` (or ``http://``, which sets ``scheme``,
    for a local stand-in) is split off.
    """

    client_token: str
    client_secret: SecretStr
    access_token: str
    host: str
    max_body: int = DEFAULT_MAX_BODY
    scheme: str = "https"

    def __post_init__(self) -> None:
        scheme, sep, rest = self.host.partition("://")
        if sep:
            object.__setattr__(self, "scheme", scheme.lower())
            object.__setattr__(self, "host", rest)
        object.__setattr__(self, "host", self.host.strip().rstrip("/"))
        if self.scheme not in ("https", "http"):
            raise ValueError(f"host must start with https:// or no scheme, got {self.scheme}://")
        if not self.host or "/" in self.host:
            raise ValueError(f"host must be a host name with an optional port, got {self.host!r}")
        if self.max_body <= 0:
            raise ValueError(f"max-body must be a positive number of bytes, got {self.max_body}")

    @property
    def base_url(self) -> yarl.URL:
        """``https://<host>``: the root that API paths are joined to."""
        return yarl.URL(f"{self.scheme}://{self.host}")

    @classmethod
    def from_edgerc(cls, path: Path, section: str = "default") -> EdgeGridCredentials:
        """Read one section of an ``.edgerc`` INI file.

        Keys: client_secret, host, access_token, client_token and optional max-body (or
        max_body). Problems raise ``ConfigError`` naming the file, section and key, never a
        value that could be the secret.
        """
        where = str(path)
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with path.expanduser().open(encoding="utf-8") as f:
                parser.read_file(f, source=where)
        except OSError as e:
            raise ConfigError([f"cannot read the .edgerc file: {e.strerror or e}"], where) from e
        except UnicodeDecodeError:
            raise ConfigError(["the .edgerc file is not UTF-8 text"], where) from None
        except configparser.Error as e:
            # configparser quotes the offending line, which may hold the secret: drop it.
            raise ConfigError([_describe_parse_error(e)], where) from None
        if not parser.has_section(section):
            found = ", ".join(f"[{name}]" for name in parser.sections()) or "none"
            raise ConfigError([f"section [{section}] not found (sections: {found})"], where)
        values = parser[section]
        problems = [
            f"[{section}]: missing key '{key}'" for key in _EDGERC_KEYS if not values.get(key)
        ]
        raw_max_body = values.get("max-body") or values.get("max_body") or str(DEFAULT_MAX_BODY)
        if not raw_max_body.strip().isdigit():
            problems.append(
                f"[{section}]: max-body must be a whole number of bytes, got {raw_max_body!r}"
            )
        if problems:
            raise ConfigError(problems, where)
        try:
            return cls(
                client_token=values["client_token"].strip(),
                client_secret=SecretStr(values["client_secret"].strip()),
                access_token=values["access_token"].strip(),
                host=values["host"].strip(),
                max_body=int(raw_max_body),
            )
        except ValueError as e:
            raise ConfigError([f"[{section}]: {e}"], where) from None


def _describe_parse_error(error: configparser.Error) -> str:
    if isinstance(error, configparser.MissingSectionHeaderError):
        return f"line {error.lineno}: expected a [section] header first"
    if isinstance(error, configparser.ParsingError):
        lines = ", ".join(str(lineno) for lineno, _ in error.errors)
        return f"cannot parse line(s) {lines}"
    if isinstance(error, configparser.DuplicateOptionError):
        return f"[{error.section}]: key '{error.option}' appears twice (line {error.lineno})"
    if isinstance(error, configparser.DuplicateSectionError):
        return f"section [{error.section}] appears twice (line {error.lineno})"
    return f"cannot parse the .edgerc file ({type(error).__name__})"


class EdgeGridVerificationError(Exception):
    """An ``Authorization`` header failed EdgeGrid verification; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def edgegrid_timestamp(now: datetime) -> str:
    """``now`` (aware) in UTC as ``YYYYMMDDTHH:MM:SS+0000``."""
    if now.tzinfo is None:
        raise ValueError("edgegrid_timestamp needs an aware datetime")
    return now.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)


def _b64_hmac_sha256(key: str, message: str) -> str:
    digest = hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signing_key(client_secret: str, timestamp: str) -> str:
    """The per-request key: base64 HMAC-SHA256 of the timestamp keyed by the secret's text."""
    return _b64_hmac_sha256(client_secret, timestamp)


def signature(key: str, data: str) -> str:
    """base64 HMAC-SHA256 of ``data`` keyed by the text of ``key`` (from :func:`signing_key`)."""
    return _b64_hmac_sha256(key, data)


def content_hash(method: str, body: bytes, max_body: int) -> str:
    """base64 SHA-256 of the first ``max_body`` bytes of a POST body; empty for anything else."""
    if method.upper() != "POST" or not body:
        return ""
    return base64.b64encode(hashlib.sha256(body[:max_body]).digest()).decode("ascii")


def check_header_value(value: str) -> None:
    """Refuse a header value that cannot be sent and verified as signed."""
    if not _CLEAN_HEADER_VALUE_RE.match(value):
        raise ValueError(
            "Invalid leading whitespace, reserved character(s), or return character(s) "
            f"in header value: {value!r}"
        )


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def canonical_headers(headers: Mapping[str, str], headers_to_sign: Sequence[str]) -> str:
    """``name:value`` for each header to sign that is present, in the order given, tab-joined.

    Names are lower-cased; values are trimmed and inner whitespace runs collapse to one space.
    """
    present = _lowered(headers)
    return "\t".join(
        f"{name.lower()}:{_WHITESPACE_RE.sub(' ', present[name.lower()].strip())}"
        for name in headers_to_sign
        if name.lower() in present
    )


def data_to_sign(
    method: str,
    scheme: str,
    host: str,
    path_with_query: str,
    *,
    headers: Mapping[str, str],
    headers_to_sign: Sequence[str],
    body: bytes,
    max_body: int,
    auth_header: str,
) -> str:
    """The tab-joined string whose HMAC is the signature (``auth_header`` unsigned, last)."""
    return "\t".join(
        [
            method.upper(),
            scheme.lower(),
            host,
            path_with_query,
            canonical_headers(headers, headers_to_sign),
            content_hash(method, body, max_body),
            auth_header,
        ]
    )


def _unsigned_auth(client_token: str, access_token: str, timestamp: str, nonce: str) -> str:
    return (
        f"{AUTH_SCHEME} client_token={client_token};access_token={access_token};"
        f"timestamp={timestamp};nonce={nonce};"
    )


def _wire_url(url: str | yarl.URL, *, encoded: bool) -> yarl.URL:
    parsed = url if isinstance(url, yarl.URL) else yarl.URL(url, encoded=encoded)
    if not parsed.absolute:
        raise ValueError(f"EdgeGrid needs an absolute URL, got {str(parsed)!r}")
    return parsed


def _host(url: yarl.URL, headers: Mapping[str, str]) -> str:
    # An explicit Host header wins, as in Akamai's reference client; otherwise the value
    # aiohttp puts in Host (the port only when it is not the scheme's default).
    explicit = _lowered(headers).get("host")
    return explicit if explicit else url.host_port_subcomponent or ""


def authorization_header(
    creds: EdgeGridCredentials,
    method: str,
    url: str | yarl.URL,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    headers_to_sign: Sequence[str] = (),
    timestamp: str | None = None,
    nonce: str | None = None,
) -> str:
    """The ``Authorization`` value for a request to ``url`` (the full URL as it will be sent).

    ``timestamp`` defaults to now and ``nonce`` to a fresh UUID4; pass them only to reproduce
    a known signature.
    """
    headers = headers or {}
    for value in headers.values():
        check_header_value(value)
    wire = _wire_url(url, encoded=False)
    timestamp = timestamp or edgegrid_timestamp(datetime.now(UTC))
    nonce = nonce or str(uuid.uuid4())
    auth = _unsigned_auth(creds.client_token, creds.access_token, timestamp, nonce)
    data = data_to_sign(
        method,
        wire.scheme,
        _host(wire, headers),
        wire.raw_path_qs,
        headers=headers,
        headers_to_sign=headers_to_sign,
        body=body,
        max_body=creds.max_body,
        auth_header=auth,
    )
    key = signing_key(creds.client_secret.get_secret_value(), timestamp)
    return f"{auth}signature={signature(key, data)}"


def sign_aiohttp_request(
    creds: EdgeGridCredentials, method: str, url: str | yarl.URL, body: bytes = b""
) -> dict[str, str]:
    """Headers to add to an aiohttp request sent to exactly ``url`` with exactly ``body``.

    Pass the same ``url`` to aiohttp, with no ``params=`` and no session ``base_url``: see the
    module docstring for why.
    """
    return {"Authorization": authorization_header(creds, method, url, body=body)}


def parse_authorization(value: str) -> dict[str, str]:
    """Split an EdgeGrid ``Authorization`` value into its five fields.

    Each of client_token, access_token, timestamp, nonce and signature must appear once, with
    signature last; anything else raises ``EdgeGridVerificationError``.
    """
    malformed = EdgeGridVerificationError("malformed authorization header")
    scheme, _, params = value.partition(" ")
    if scheme != AUTH_SCHEME or not params:
        raise malformed
    fields: dict[str, str] = {}
    names: list[str] = []
    for part in params.split(";"):
        name, sep, field = part.partition("=")
        if not sep or not field or name not in _FIELDS or name in fields:
            raise malformed
        fields[name] = field
        names.append(name)
    if len(fields) != len(_FIELDS) or names[-1] != "signature":
        raise malformed
    if not _TIMESTAMP_RE.match(fields["timestamp"]) or not _SIGNATURE_RE.match(fields["signature"]):
        raise malformed
    return fields


def verify_authorization(
    value: str,
    *,
    method: str,
    url: str | yarl.URL,
    body: bytes,
    lookup_secret: Callable[[str], tuple[str, str] | None],
    now: datetime,
    max_skew_s: int = 300,
    max_body: int = DEFAULT_MAX_BODY,
    headers: Mapping[str, str] | None = None,
    headers_to_sign: Sequence[str] = (),
) -> None:
    """Check an EdgeGrid ``Authorization`` value against the request as received.

    ``url`` is the URL as received (aiohttp's ``request.url``; a ``str`` is taken as already
    encoded). ``lookup_secret`` maps a client token to ``(client_secret, access_token)``, or
    ``None`` when unknown. Raises ``EdgeGridVerificationError`` on any mismatch.
    """
    fields = parse_authorization(value)
    known = lookup_secret(fields["client_token"])
    if known is None:
        raise EdgeGridVerificationError("unknown client token")
    client_secret, access_token = known
    if not hmac.compare_digest(fields["access_token"].encode(), access_token.encode()):
        raise EdgeGridVerificationError("access token mismatch")
    try:
        signed_at = datetime.strptime(fields["timestamp"], _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError as e:
        raise EdgeGridVerificationError("malformed authorization header") from e
    if abs((now - signed_at).total_seconds()) > max_skew_s:
        raise EdgeGridVerificationError("timestamp too far off")
    headers = headers or {}
    wire = _wire_url(url, encoded=True)
    # The client signed its own text of the header, everything before "signature=<sig>".
    auth = value[: len(value) - len("signature=" + fields["signature"])]
    data = data_to_sign(
        method,
        wire.scheme,
        _host(wire, headers),
        wire.raw_path_qs,
        headers=headers,
        headers_to_sign=headers_to_sign,
        body=body,
        max_body=max_body,
        auth_header=auth,
    )
    expected = signature(signing_key(client_secret, fields["timestamp"]), data)
    if not hmac.compare_digest(expected.encode(), fields["signature"].encode()):
        raise EdgeGridVerificationError("The signature does not match")
