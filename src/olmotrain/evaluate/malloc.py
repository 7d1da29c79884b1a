"""glibc's allocator, told to keep freed memory, for evaluating on CPU.

A forward pass allocates and frees its activations and its [batch, length, vocab] logits
(hundreds of MB) every batch. glibc hands blocks that large back to the kernel (``mmap``, and
trimming the heap), so the next batch page-faults all of it in again, zeroed: measured here on
olmo2_14m, 16 x 512 tokens, one thread, 1.0 s of CPU a batch of which 0.3 s in the kernel
(130-190k page faults); 0.68 s and no page fault with freed memory kept.
The process keeps its peak memory instead of returning it, which an evaluation can afford.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""``mallopt`` parameters (glibc's malloc.h)."""
MMAP_THRESHOLD = 2**30
"""Blocks up to this size come from the heap, not fresh ``mmap``s."""
TRIM_THRESHOLD = 2**31 - 1
"""Free memory at the top of the heap kept up to this much (``mallopt`` takes an int)."""


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed memory instead of returning it to the kernel; whether
    it could (``False`` for another C library: nothing changes)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
