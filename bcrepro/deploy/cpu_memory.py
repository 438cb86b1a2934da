"""Keep freed CPU memory inside the process while timing inference (glibc's malloc).

glibc gives every block above its mmap threshold (at most 32 MiB on 64-bit) a fresh ``mmap`` and hands it back to the
kernel when it is freed. A LeNet-5 forward pass at batch 1024 allocates 10-50 MB activations and at batch 8192 up to
400 MB, so every pass pays the page faults of touching fresh, zeroed pages, and the larger the tensors the more it
pays. That is a large share of a forward pass, and it varies from pass to pass, so it both inflates the times
``bcrepro speedup`` measures and makes repeated measurements of one model disagree (``docs/benchmarks.md``).

``keep_freed_memory()`` tells glibc to serve every allocation from the heap (``M_MMAP_MAX = 0``) and not to trim it
(``M_TRIM_THRESHOLD`` at its largest), the effect of the allocators PyTorch's CPU performance guide recommends
(jemalloc, tcmalloc) without installing one. After a few passes the heap holds every block a pass needs and the
faults stop. The price: the process keeps its freed memory, up to a few times the largest pass's activations. The
setting is process-wide and lasts until the process ends, which is why ``bcrepro speedup`` applies it and the
training loop does not.
"""
from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1   # glibc's malloc.h
M_MMAP_MAX = -4
LARGEST_TRIM_THRESHOLD = 2 ** 31 - 1  # mallopt takes a C int

KEEP_FREED = "keep-freed"
SYSTEM = "system"

_applied = False


def _glibc_mallopt():
    """glibc's ``mallopt`` of the running process, or None where the C library is not glibc (macOS, musl)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def keep_freed_memory() -> bool:
    """From now on, serve every allocation from the heap and keep freed memory in the process (glibc only).

    Returns True where applied, False where the C library is not glibc: there the allocator stays as it is and
    ``allocator()`` says so.
    """
    global _applied
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; both settings are needed, the first without the second would trim the heap.
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, LARGEST_TRIM_THRESHOLD) == 1
    return _applied


def allocator() -> str:
    """``keep-freed`` once ``keep_freed_memory()`` has been applied in this process, else ``system``."""
    return KEEP_FREED if _applied else SYSTEM
