"""glibc's malloc: keep freed memory for the next training step instead of handing it back to the kernel.

A training step allocates and frees the same activation-sized blocks every step. By default glibc gives the
free memory at the top of its heap back to the kernel (trimming) and grows the heap a little at a time, so
the next step faults the same pages in again, each one zeroed by the kernel: about 580,000 page faults in
p5's six SFT steps on the embedded model. Keeping up to 1 GiB of freed heap, growing it 256 MiB at a
time and serving blocks up to 32 MiB (glibc's largest threshold) from the heap cut them to about 460,000,
and the kernel's share of the time by a third; p5's bf16 SFT child ran about 9% faster, for -20 to +50 MB of
peak memory; in fp32 no gain was shown (docs/performance.md). Set by the ``medtune`` command and by the
benchmarks that time it, not on import: a program that imports medtune keeps its own allocator settings.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt's parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 32 * 2 ** 20, M_TRIM_THRESHOLD: 2 ** 30, M_TOP_PAD: 256 * 2 ** 20}


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory; False where the C library is not glibc (macOS, musl)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # all three together: setting any one switches off glibc's own adjusting of the mmap threshold
    return all(mallopt(option, value) == 1 for option, value in SETTINGS.items())
