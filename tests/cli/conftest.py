"""A state worth reviewing: the demo's, made once per session and copied for each test."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from reconciler.demo import run_demo
from reconciler.demo_directory import prepare_directory


@pytest.fixture(scope="session")
def demo_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo-made") / "demo"
    prepare_directory(directory)
    asyncio.run(run_demo(directory))
    return directory


@pytest.fixture
def demo_state(demo_made: Path, tmp_path: Path) -> Path:
    """A copy of the demo's directory: its config and a state with items to review."""
    copy = tmp_path / "demo"
    shutil.copytree(demo_made, copy)
    return copy
