"""sd_notify(3) over a plain datagram socket: readiness, status, reloads and the watchdog.

systemd passes ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for the abstract namespace)
to services of ``Type=notify``; each notification is one datagram of newline-separated
``KEY=VALUE`` assignments. Outside systemd the variable is absent and every call is a no-op,
so the daemon runs the same under a terminal, a container or a test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

logger = logging.getLogger(__name__)

# PID 1 drains its notify socket promptly; a send that still cannot complete in this long means
# systemd is wedged, and stalling the event loop further would not help it.
_SEND_TIMEOUT_S = 1.0


def _parse_address(value: str | None) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        # Abstract namespace: the leading '@' stands for the NUL byte that names it.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # Newer systemd can also hand out vsock addresses; this daemon runs on the host itself.
    logger.warning("NOTIFY_SOCKET %r is not a unix socket address; not notifying systemd", value)
    return None


def _parse_positive_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None


class SystemdNotifier:
    """Sends sd_notify messages to the service manager that started this process.

    ``environ`` defaults to ``os.environ``; it is read once, here. ``enabled`` is False when
    there is no usable ``NOTIFY_SOCKET``, and then every method does nothing.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _parse_address(env.get("NOTIFY_SOCKET"))
        self.enabled: bool = self._address is not None
        self._watchdog_usec = _parse_positive_int(env.get("WATCHDOG_USEC"))
        watchdog_pid = env.get("WATCHDOG_PID")
        self._watchdog_pid = None if watchdog_pid is None else _parse_positive_int(watchdog_pid)
        self._watchdog_pid_given = watchdog_pid is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram; True if it was sent.

        Send failures are logged at debug level and return False: losing a notification must
        never take the daemon down. A field without '=' or with a newline raises ValueError.
        """
        if not fields:
            raise ValueError("sd_notify needs at least one KEY=VALUE field")
        for field in fields:
            if "=" not in field or "\n" in field:
                raise ValueError(f"sd_notify field must be one KEY=VALUE line: {field!r}")
        if self._address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(_SEND_TIMEOUT_S)
                sock.sendto(message, self._address)
        except OSError as e:
            logger.debug("sd_notify %s failed: %s", ",".join(f.split("=", 1)[0] for f in fields), e)
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        """Startup is complete; systemd considers the service started from now on."""
        if status is None:
            self.notify("READY=1")
        else:
            self.notify("READY=1", _status_field(status))

    def status(self, text: str) -> None:
        """A one-line status for ``systemctl status`` (newlines are flattened to spaces)."""
        self.notify(_status_field(text))

    def stopping(self) -> None:
        """Shutdown has begun; systemd stops waiting on readiness or the watchdog."""
        self.notify("STOPPING=1")

    def reloading(self) -> None:
        """A configuration reload has begun; send ``ready()`` when it is done.

        ``MONOTONIC_USEC`` is what systemd 253+ requires to accept RELOADING=1 from a
        ``Type=notify-reload`` service; ``Type=notify`` ignores it.
        """
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def watchdog_interval_s(self) -> float | None:
        """Seconds between WATCHDOG=1 pings, or None when systemd does not watch this process.

        Half the ``WATCHDOG_USEC`` timeout, as sd_watchdog_enabled(3) recommends, so one late
        ping does not get the service killed. ``WATCHDOG_PID``, when set, must name this process:
        a child that inherited the environment is not the one being watched.
        """
        if not self.enabled or self._watchdog_usec is None:
            return None
        if self._watchdog_pid_given and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 2 / 1_000_000

    async def run_watchdog(self) -> None:
        """Ping the watchdog every ``watchdog_interval_s()`` until cancelled.

        The pings come from the event loop itself, so a loop blocked by a stuck callback stops
        them and systemd restarts the service. Returns at once if there is no watchdog.
        """
        interval_s = self.watchdog_interval_s()
        if interval_s is None:
            return
        logger.debug("pinging the systemd watchdog every %.3fs", interval_s)
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval_s)


def _status_field(text: str) -> str:
    return "STATUS=" + " ".join(text.splitlines())
