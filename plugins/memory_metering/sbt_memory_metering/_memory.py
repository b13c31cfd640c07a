"""Give freed heap back to the operating system after bulk work (glibc only; a no-op elsewhere).

Why: a bulk load allocates and frees many large temporary arrays. glibc raises its mmap threshold
after the first such free, so later temporaries come from the heap, and the freed heap stays resident.
``malloc_trim(0)`` returns it, as Dask's workers do periodically. It only releases memory that is
already free, so it is safe to call at any time; it costs a few milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

__all__ = ["release_free_heap"]


def _load_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load_trim()


def release_free_heap() -> bool:
    """Return free heap pages to the OS; True when the allocator supports it."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
