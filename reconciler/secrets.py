"""Where secrets come from: a file, a systemd credential, or an environment variable.

Secrets are returned as :class:`pydantic.SecretStr` and never put in a message. A secret
file that other users can read is accepted with a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from reconciler.errors import MissingSecretError

log = logging.getLogger(__name__)

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


@dataclass(frozen=True)
class SecretRef:
    """Where one secret may be found, in order: file, systemd credential, environment."""

    what: str
    key_path: str
    env: str | None = None
    file: Path | None = None
    credential: str | None = None

    def locations(self, environ: Mapping[str, str]) -> list[str]:
        places = []
        if self.file is not None:
            places.append(f"file {self.file}")
        if self.credential and environ.get(CREDENTIALS_ENV):
            places.append(f"systemd credential '{self.credential}'")
        if self.env:
            places.append(f"environment variable {self.env}")
        return places


def resolve_secret(ref: SecretRef, environ: Mapping[str, str] | None = None) -> SecretStr:
    """Find a secret or raise MissingSecretError naming every place that was looked at."""
    env = os.environ if environ is None else environ
    if ref.file is not None:
        return SecretStr(_read_secret_file(ref.file.expanduser(), ref))
    credentials_dir = env.get(CREDENTIALS_ENV)
    if ref.credential and credentials_dir:
        path = Path(credentials_dir) / ref.credential
        if path.is_file():
            return SecretStr(_read_secret_file(path, ref))
    if ref.env and env.get(ref.env, "").strip():
        return SecretStr(env[ref.env].strip())
    places = " or ".join(ref.locations(env)) or "nowhere (no location configured)"
    raise MissingSecretError([f"{ref.key_path}: {ref.what} not found: looked in {places}"])


def secret_path(ref: SecretRef, environ: Mapping[str, str] | None = None) -> Path:
    """For secrets that are whole files (an .edgerc): the file to read."""
    env = os.environ if environ is None else environ
    if ref.file is not None:
        path = ref.file.expanduser()
        if path.is_file():
            warn_if_readable_by_others(path, ref.what)
            return path
    credentials_dir = env.get(CREDENTIALS_ENV)
    if ref.credential and credentials_dir:
        path = Path(credentials_dir) / ref.credential
        if path.is_file():
            return path
    places = " or ".join(ref.locations(env)) or "nowhere"
    raise MissingSecretError([f"{ref.key_path}: {ref.what} not found: looked in {places}"])


def _read_secret_file(path: Path, ref: SecretRef) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise MissingSecretError(
            [f"{ref.key_path}: cannot read {ref.what} file {path}: {exc.strerror}"]
        ) from None
    if not text:
        raise MissingSecretError([f"{ref.key_path}: {ref.what} file {path} is empty"])
    warn_if_readable_by_others(path, ref.what)
    return text


_WARNED: set[tuple[Path, int]] = set()


def warn_if_readable_by_others(path: Path, what: str) -> bool:
    """Log a warning when group or others may read a secret file; True if it is readable.

    Once per file and mode in a process: the configuration's secrets are read both to mask
    them and to use them, and one warning per file is what a user needs.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        if (path, mode) in _WARNED:
            return True
        _WARNED.add((path, mode))
        log.warning(
            "%s file %s is readable by other users (mode %s): run 'chmod 600 %s'",
            what,
            path,
            oct(stat.S_IMODE(mode)),
            path,
        )
        return True
    return False
