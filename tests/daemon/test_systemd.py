"""SystemdNotifier against real datagram sockets, and the unit file against systemd's own tools."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.daemon.systemd import SystemdNotifier

UNIT_FILE = Path(__file__).resolve().parents[2] / "config" / "reconciler.service"
MAX_EXPOSURE = 2.0


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket standing in for systemd, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, str(path)


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued on ``sock``, without waiting for more."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    received = []
    try:
        while True:
            received.append(sock.recv(4096))
    except BlockingIOError:
        return received
    finally:
        sock.settimeout(timeout)


# -- notifications ------------------------------------------------------------------------------


def test_without_notify_socket_everything_is_a_noop() -> None:
    notifier = SystemdNotifier({"WATCHDOG_USEC": "200000"})
    assert notifier.enabled is False
    assert notifier.notify("READY=1") is False
    notifier.ready("up")
    notifier.status("working")
    notifier.reloading()
    notifier.stopping()
    assert notifier.watchdog_interval_s() is None


async def test_run_watchdog_returns_at_once_without_a_watchdog(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    async with asyncio.timeout(5):
        await SystemdNotifier({}).run_watchdog()
        await SystemdNotifier({"NOTIFY_SOCKET": address}).run_watchdog()
    assert drain(sock) == []


def test_defaults_to_the_process_environment(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert SystemdNotifier().notify("READY=1") is True
    assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize(
    ("send", "datagram"),
    [
        (lambda n: n.ready(), b"READY=1"),
        (lambda n: n.ready("watching 2 sources"), b"READY=1\nSTATUS=watching 2 sources"),
        (lambda n: n.status("run 2024-05 done"), b"STATUS=run 2024-05 done"),
        (lambda n: n.status("two\nlines"), b"STATUS=two lines"),
        (lambda n: n.status("Ünïcode ✓"), "STATUS=Ünïcode ✓".encode()),
        (lambda n: n.stopping(), b"STOPPING=1"),
        (lambda n: n.notify("STATUS=a", "EXTEND_TIMEOUT_USEC=5000000"),
         b"STATUS=a\nEXTEND_TIMEOUT_USEC=5000000"),
    ],
)  # fmt: skip
def test_sends_exact_datagrams_to_a_path_socket(
    notify_socket: tuple[socket.socket, str],
    send: Callable[[SystemdNotifier], object],
    datagram: bytes,
) -> None:
    sock, address = notify_socket
    send(SystemdNotifier({"NOTIFY_SOCKET": address}))
    assert sock.recv(4096) == datagram
    assert drain(sock) == []


def test_reloading_carries_the_monotonic_clock(notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    SystemdNotifier({"NOTIFY_SOCKET": address}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, monotonic = sock.recv(4096).decode().split("\n")
    assert reloading == "RELOADING=1"
    key, value = monotonic.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_sends_to_an_abstract_namespace_socket() -> None:
    name = f"reconciler-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": f"@{name}"})
        assert notifier.enabled is True
        notifier.ready("abstract")
        assert sock.recv(4096) == b"READY=1\nSTATUS=abstract"


def test_a_send_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled is True
    with caplog.at_level(logging.DEBUG, logger="reconciler.daemon.systemd"):
        assert notifier.notify("READY=1") is False
        notifier.stopping()
    records = [r for r in caplog.records if r.name == "reconciler.daemon.systemd"]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.DEBUG]
    assert "sd_notify READY failed" in records[0].getMessage()
    assert "sd_notify STOPPING failed" in records[1].getMessage()


@pytest.mark.parametrize("value", ["", "vsock:2:1234", "relative/path"])
def test_unusable_notify_socket_disables_the_notifier(value: str) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "200000"})
    assert notifier.enabled is False
    assert notifier.notify("READY=1") is False
    assert notifier.watchdog_interval_s() is None


@pytest.mark.parametrize("fields", [(), ("READY",), ("STATUS=a\nREADY=1",)])
def test_malformed_fields_are_a_programming_error(
    notify_socket: tuple[socket.socket, str], fields: tuple[str, ...]
) -> None:
    sock, address = notify_socket
    with pytest.raises(ValueError, match="sd_notify"):
        SystemdNotifier({"NOTIFY_SOCKET": address}).notify(*fields)
    assert drain(sock) == []


# -- watchdog -----------------------------------------------------------------------------------

OWN_PID = str(os.getpid())


@pytest.mark.parametrize(
    ("environ", "interval_s"),
    [
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": OWN_PID}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "sixty"}, None),
        ({"WATCHDOG_PID": OWN_PID}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_the_watched_process(
    environ: dict[str, str], interval_s: float | None
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "@unused", **environ})
    assert notifier.watchdog_interval_s() == interval_s


async def test_run_watchdog_pings_repeatedly_until_cancelled(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    task = asyncio.create_task(notifier.run_watchdog())
    try:
        async with asyncio.timeout(5):
            pings = [await loop.sock_recv(sock, 4096) for _ in range(3)]
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pings == [b"WATCHDOG=1"] * 3


def _block_event_loop(seconds: float) -> None:
    # Deliberately synchronous: this is the stuck callback the watchdog exists to catch.
    time.sleep(seconds)


async def test_a_blocked_event_loop_sends_no_pings(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})
    task = asyncio.create_task(notifier.run_watchdog())
    try:
        async with asyncio.timeout(5):
            assert await loop.sock_recv(sock, 4096) == b"WATCHDOG=1"
        drain(sock)
        interval_s = notifier.watchdog_interval_s()
        assert interval_s is not None
        _block_event_loop(6 * interval_s)
        assert drain(sock) == [], "pings arrived while the event loop was blocked"
        async with asyncio.timeout(5):
            assert await loop.sock_recv(sock, 4096) == b"WATCHDOG=1"
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- CPython under MemoryDenyWriteExecute= ------------------------------------------------------

_MDWE_PROBE = textwrap.dedent(
    """
    import ctypes, errno, mmap, sys
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        print("unsupported", errno.errorcode[ctypes.get_errno()])
        sys.exit(3)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        sys.exit("a writable and executable mapping was allowed")
    import asyncio, ssl
    import aiohttp, aiosqlite, alembic, apscheduler, click, jinja2, prometheus_client
    import pydantic, pydantic_settings, sqlalchemy, sqlmodel, tenacity
    import reconciler.daemon.systemd

    class Model(pydantic.BaseModel):
        n: int

    async def main():
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine
        engine = create_async_engine("sqlite+aiosqlite:///:memory:")
        async with engine.connect() as conn:
            assert (await conn.execute(text("select 41 + 1"))).scalar() == 42
        await engine.dispose()
        ssl.create_default_context()
        assert Model(n="7").n == 7
        assert jinja2.Template("{{ x }}").render(x=1) == "1"

    asyncio.run(main())
    print("ok")
    """
)


def test_cpython_and_dependencies_run_with_write_xor_execute_memory() -> None:
    """The kernel's PR_SET_MDWE refuses what MemoryDenyWriteExecute=yes refuses."""
    result = subprocess.run(
        [sys.executable, "-c", _MDWE_PROBE], capture_output=True, text=True, timeout=120
    )
    if result.returncode == 3:
        pytest.skip(f"kernel has no PR_SET_MDWE (Linux 6.3+): {result.stdout.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- the unit file ------------------------------------------------------------------------------


def _systemd_analyze() -> str:
    search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/bin"])
    found = shutil.which("systemd-analyze", path=search_path)
    if found is None:
        reason = "systemd-analyze not found (it ships in the systemd package)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; it is required when CI is set")
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture
def installable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart= pointing at an executable that exists here, as verify demands."""
    script = Path(sys.executable).parent / "reconciler"
    executable = script if script.exists() else Path(shutil.which("true") or "/bin/true")
    text, count = re.subn(
        r"^ExecStart=/usr/local/bin/reconciler run$",
        f"ExecStart={executable} run",
        UNIT_FILE.read_text(),
        flags=re.MULTILINE,
    )
    assert count == 1, "ExecStart= no longer names /usr/local/bin/reconciler run"
    copy = tmp_path / UNIT_FILE.name
    copy.write_text(text)
    return copy


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120
    )


def test_unit_file_passes_systemd_analyze_verify(installable_unit: Path) -> None:
    analyze = _systemd_analyze()
    result = _run([analyze, "verify", str(installable_unit)], installable_unit.parent)
    ours = [line for line in result.stderr.splitlines() if installable_unit.name in line]
    assert ours == []
    assert result.returncode == 0, result.stderr


def test_unit_file_exposure_is_ok_or_better(installable_unit: Path) -> None:
    analyze = _systemd_analyze()
    result = _run(
        [analyze, "security", "--offline=yes", str(installable_unit)], installable_unit.parent
    )
    assert result.returncode == 0, result.stderr
    last_line = result.stdout.strip().splitlines()[-1]
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", last_line)
    assert match, f"unexpected systemd-analyze security output: {last_line!r}"
    exposure = float(match.group(1))
    print(f"systemd-analyze security: {installable_unit.name} exposure {exposure} {match[2]}")
    assert exposure <= MAX_EXPOSURE, result.stdout


def test_unit_file_declares_what_the_daemon_relies_on() -> None:
    lines = [line.strip() for line in UNIT_FILE.read_text().splitlines()]
    directives = [line for line in lines if line and not line.startswith(("#", "["))]
    credentials = {d.split("=", 1)[1].split(":", 1)[0] for d in directives
                   if d.startswith("LoadCredential=")}  # fmt: skip
    assert credentials == {"fastly-token", "akamai-edgerc", "slack-webhook-url"}
    for expected in ["Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID"]:
        assert expected in directives
