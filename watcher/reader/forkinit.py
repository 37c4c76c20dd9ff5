"""Imported first by the parse workers' forkserver, before anything it preloads.

A worker's memory limit is the address space it maps at start plus `memory_mb`. glibc gives
each thread that allocates a malloc arena of its own (64 MB of reserved address space), and a
forked child inherits the arenas of threads that do not exist in it; when the worker's main
heap reached the limit, malloc carried on in such an arena, already counted as "mapped at
start": 64 MB past the limit (measured: 196 MB of room under a 128 MB limit), which took a
parse bomb past the memory error into the deadline on a slower machine. So the forkserver
keeps one arena for all threads, and starts no BLAS threads (parse workers do no heavy
numeric work; a numeric library may start one thread per core as it loads).
"""

from __future__ import annotations

import ctypes
import os

_M_ARENA_MAX = -8  # glibc's mallopt parameter number

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"


def one_arena() -> bool:
    """Make every thread allocate from the main arena; False where libc has no mallopt."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # -8 is glibc's number for M_ARENA_MAX
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, ValueError, AttributeError):  # musl, macOS: no such arenas to fear
        return False
    return bool(mallopt(_M_ARENA_MAX, 1))


ONE_ARENA = one_arena()
