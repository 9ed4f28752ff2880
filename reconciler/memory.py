"""Large buffers handed back to the system when freed (glibc only; elsewhere nothing changes).

glibc serves a request of 128 KiB or more with its own ``mmap`` and returns it on ``free``,
but raises that threshold to the size of each such block freed (up to 32 MiB). A pull
frees many large blocks (pages of a provider's JSON, a page's rows, SQLite's result and
parameter lists), so after the first few they come from the heap instead, where freed space
stays resident between them: a 1M-line pull peaked about 25 MiB higher. Setting the
threshold once turns that adjustment off.
"""

from __future__ import annotations

import sys
from typing import Final

MMAP_THRESHOLD_BYTES: Final = 128 * 1024  # glibc's own starting value
_M_MMAP_THRESHOLD: Final = -3  # from glibc's malloc.h


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold; True when it was set (False: not glibc or refused)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's soname
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
