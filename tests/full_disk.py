"""A real full disk for tests: a tiny tmpfs mounted in a private mount namespace.

``unshare -rm`` gives the script its own user and mount namespaces, so it may mount a tmpfs
of ``size`` over ``directory`` without privileges and without the mount being seen outside;
a file written until the filesystem refuses more fills it. The network is not unshared:
servers on loopback in the test's process stay reachable from inside.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

# sh: mount the tmpfs over $1, then "$@" is the caller's arguments; fill_disk fills it.
PREAMBLE = """set -u
TINY="$1"
shift
mount -t tmpfs -o size={size} tmpfs "$TINY"
fill_disk() {{ dd if=/dev/zero of="$TINY/filler" bs=1k 2> /dev/null; }}
"""


def can_mount_tmpfs() -> bool:
    """Whether this machine lets an unprivileged mount namespace mount a tmpfs."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def on_tiny_filesystem(
    directory: Path,
    script: str,
    args: Sequence[str] = (),
    *,
    cwd: Path,
    env: Mapping[str, str],
    size: str = "1m",
    timeout_s: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run the sh ``script`` with a ``size`` tmpfs mounted over ``directory`` (``$TINY``;
    ``args`` are its ``"$@"``). The script fills it with ``fill_disk`` when it wants."""
    return subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            PREAMBLE.format(size=size) + script,
            "full-disk",
            str(directory),
            *args,
        ],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def fill(directory: Path) -> int:
    """Fill the filesystem of ``directory`` from Python; the bytes written."""
    written = 0
    chunk = b"\0" * 4096
    with (directory / "filler").open("wb", buffering=0) as out:
        try:
            while True:
                written += out.write(chunk)
        except OSError:
            pass
    return written


def free(directory: Path) -> None:
    """Free what :func:`fill` took."""
    (directory / "filler").unlink(missing_ok=True)
