"""glibc's malloc thresholds for frame-after-frame tensor work: large blocks come from the heap and
stay there when freed; the environment's own choice stands."""

import ctypes
import os
import subprocess
import sys

import pytest

from stereo_depth_ros.core.allocator import keep_freed_memory, user_tunes_malloc

# In a fresh process (the thresholds are process-wide): allocate and free a 16 MiB block and report
# how much of it was mapped apart and how much of the heap it left behind.
_PROBE = """
import ctypes, sys
from stereo_depth_ros.core.allocator import keep_freed_memory
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
import threading
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
blocks = int(sys.argv[2])
result = []
def probe():
    before = libc.mallinfo2()
    held = [libc.malloc(16 << 20) for _ in range(blocks)]
    during = libc.mallinfo2()
    for block in held:
        libc.free(block)
    after = libc.mallinfo2()
    result.extend([during.hblkhd - before.hblkhd, after.fordblks - before.fordblks])
if sys.argv[3] == "thread":  # as the node's frame thread
    worker = threading.Thread(target=probe)
    worker.start()
    worker.join()
else:
    probe()
print(int(kept), *result)
"""


def _probe(mode: str, blocks: int = 1, where: str = "main", **env: str) -> tuple[bool, int, int]:
    result = subprocess.run([sys.executable, "-c", _PROBE, mode, str(blocks), where], capture_output=True, text=True,
                            check=True, env={**os.environ, **env})
    kept, mapped, free_in_heap = (int(v) for v in result.stdout.split()[-3:])
    return bool(kept), mapped, free_in_heap


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc >= 2.33 (mallinfo2)")
def test_freed_blocks_stay_in_the_heap_unless_the_environment_says_otherwise():
    block = 16 << 20
    kept, mapped, free_in_heap = _probe("default")
    assert not kept and mapped >= block and free_in_heap < 0.1 * block  # glibc's defaults: mapped, unmapped on free
    kept, mapped, free_in_heap = _probe("keep")
    assert kept and mapped == 0 and free_in_heap > 0.9 * block  # from the heap, and kept there for the next frame
    # A thread's 96 MiB: more than one of a thread arena's 64 MiB heaps, which glibc unmaps as they empty.
    kept, mapped, free_in_heap = _probe("keep", 6, "thread")
    assert kept and mapped == 0 and free_in_heap > 0.9 * 6 * block
    kept, mapped, _ = _probe("keep", STEREO_DEPTH_MALLOC="defaults")
    assert not kept and mapped >= block
    kept, _, _ = _probe("keep", MALLOC_TRIM_THRESHOLD_="131072")  # the user's own setting stands
    assert not kept


def test_the_environments_own_tunables_are_recognised():
    assert not user_tunes_malloc({}) and not user_tunes_malloc({"MALLOC_CHECK_": "0"})
    for env in ({"MALLOC_TRIM_THRESHOLD_": "1"}, {"MALLOC_MMAP_THRESHOLD_": "1"}, {"MALLOC_TOP_PAD_": "1"},
                {"MALLOC_MMAP_MAX_": "0"}, {"MALLOC_ARENA_MAX": "4"},
                {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                {"STEREO_DEPTH_MALLOC": "Defaults"}):
        assert user_tunes_malloc(env), env
        assert keep_freed_memory(env) is False
