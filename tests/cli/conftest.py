"""A state worth reviewing: the demo's, made once per test session and copied for each test.

Under pytest-xdist the workers share one: the first to ask makes it while holding a lock, the
others wait for it and read it (each test works on its own copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.demo import run_demo
from reconciler.demo_directory import prepare_directory


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def demo_made(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    if worker_id == "master":  # not under xdist: this session's own
        shared = tmp_path_factory.mktemp("demo-made")
    else:  # the directory above every worker's own base
        shared = tmp_path_factory.getbasetemp().parent / "demo-made"
        shared.mkdir(exist_ok=True)
    directory = shared / "demo"
    with _locked(shared / "lock"):
        if not (shared / "made").exists():
            prepare_directory(directory)
            asyncio.run(run_demo(directory))
            (shared / "made").touch()
    return directory


@pytest.fixture
def demo_state(demo_made: Path, tmp_path: Path) -> Path:
    """A copy of the demo's directory: its config and a state with items to review."""
    copy = tmp_path / "demo"
    shutil.copytree(demo_made, copy)
    return copy
