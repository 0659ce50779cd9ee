"""Keeping the memory a frame frees for the next frame (glibc's malloc thresholds).

PyTorch's CPU tensors come from ``malloc``. One forward pass of the network allocates and frees
tens of megabytes in tensors of 0.1-15 MB each, and with glibc's defaults most of that memory goes
back to the kernel as soon as it is freed: blocks above the *mmap threshold* are mapped and unmapped
one by one (the threshold adapts upwards only after such a block is freed, and every trim lowers what
it serves again), and the top of the heap is returned once more than the *trim threshold* (128 KiB) of
it is free. The next frame then faults the same pages in again, and the kernel zeroes every one:
measured on the 2-core development machine, the shipped network at 768x576 (a 640x480 camera at its
``inference_scale`` 1.2) took 82-91 ms per pair with the defaults and 70-72 ms with the thresholds
below, the outputs unchanged (``stereo_depth_bench_inference``; docs/performance.md, "Memory the
frames reuse").

:func:`keep_freed_memory` fixes the mmap threshold at 32 MiB (glibc's largest, so tensors up to
that size come from the heap), keeps up to 256 MiB of freed heap in the process, and makes every
thread allocate from the one main heap: a thread's own arena lives in 64 MiB heaps that are unmapped
as they empty whatever the trim threshold (both views at 768x576 in a thread of their own, as the
node's frame thread runs them: 155-165 ms with the thread's arena, 135-142 ms with the main heap,
as in the main thread; the few hundred allocations of a frame make the shared arena's lock cheap).
The process holds on to its peak working set instead of handing it back between frames, which for
a node that runs the same frames forever is the memory it needs anyway. It changes nothing when the environment
sets one of these glibc tunables itself (the user's choice stands) or ``STEREO_DEPTH_MALLOC=defaults``
(glibc as it comes, to measure the difference); on a C library without ``mallopt`` it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Mapping

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "keep_freed_memory", "user_tunes_malloc"]

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Blocks up to this size come from the heap (glibc's largest mmap threshold on 64-bit)."""
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
"""Free memory at the top of the heap kept in the process, up to this much."""

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

# The environment variables and GLIBC_TUNABLES names of the settings keep_freed_memory makes (and of
# the two that also fix the mmap threshold), glibc's spelling.
_TUNABLES = {"MALLOC_TRIM_THRESHOLD_": "glibc.malloc.trim_threshold",
             "MALLOC_MMAP_THRESHOLD_": "glibc.malloc.mmap_threshold",
             "MALLOC_TOP_PAD_": "glibc.malloc.top_pad",
             "MALLOC_MMAP_MAX_": "glibc.malloc.mmap_max",
             "MALLOC_ARENA_MAX": "glibc.malloc.arena_max"}


def user_tunes_malloc(environment: Mapping[str, str] | None = None) -> bool:
    """True when ``environment`` (default: this process's) asks for glibc's malloc as it is configured:
    ``STEREO_DEPTH_MALLOC=defaults``, or one of the tunables that :func:`keep_freed_memory` would set
    or that fix the mmap threshold (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_``, ``MALLOC_ARENA_MAX``, or their ``glibc.malloc.*`` names
    in ``GLIBC_TUNABLES``)."""
    env = os.environ if environment is None else environment
    if env.get("STEREO_DEPTH_MALLOC", "").strip().lower() == "defaults":
        return True
    tunables = env.get("GLIBC_TUNABLES", "").lower()
    return any(name in env or tunable in tunables for name, tunable in _TUNABLES.items())


def keep_freed_memory(environment: Mapping[str, str] | None = None) -> bool:
    """Set glibc's mmap and trim thresholds for frame-after-frame tensor work (module docstring).

    Call once, early in a process's entry point (the node's ``main`` and the tools that run the
    network frame after frame). Returns True when all three settings were made, False when the
    environment sets malloc tunables itself or the C library has no ``mallopt``.
    """
    if user_tunes_malloc(environment):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return all([bool(mallopt(parameter, value)) for parameter, value in settings])
