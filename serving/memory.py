"""Give freed native memory back to the system.

glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after
which Pillow's 16 MB image blocks come from per-thread heaps and stay there once freed:
a worker that decoded one 64-megapixel photo in each of its threads kept every one of
them. Measured: 8 concurrent requests of five 8000×8000 PNGs took a worker to 2.3 GB
although only one decode runs at a time. A fixed threshold (and fewer heaps) returns
each decoded image to the system when it is dropped.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def return_freed_memory(threshold: int = 1024 * 1024, arenas: int = 2) -> bool:
    """Fix glibc's mmap threshold and cap its heaps; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(M_ARENA_MAX, arenas))
