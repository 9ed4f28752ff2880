"""Large freed buffers go back to the system: glibc's mmap threshold is fixed for work."""

from __future__ import annotations

import platform
import sys

import pytest

from reconciler.memory import return_large_buffers


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc only",
)
def test_glibc_accepts_the_fixed_threshold() -> None:
    assert return_large_buffers() is True


def test_elsewhere_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert return_large_buffers() is False
