"""Giving freed memory back to the operating system between large, short-lived buffers.

Publishing and reading a set pass gigabytes of image bytes through Arrow and Python one shard or
batch at a time. Both allocators keep what is freed for reuse (Arrow's mimalloc, glibc's heap),
and with buffers of ever-different sizes the kept memory grows with the set instead of staying at
one shard's worth: measured on 120 shards of 48 rows of 0.1–2 MB images, peak RSS 565 MiB
without releasing, 138 MiB releasing after each shard.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import pyarrow as pa

__all__ = ["release_memory"]


@functools.cache
def _malloc_trim() -> object | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_memory() -> None:
    """Hand memory freed by Arrow and by the C heap back to the OS (no-op where unsupported)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)  # type: ignore[operator]
