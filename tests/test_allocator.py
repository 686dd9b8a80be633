"""medtune's allocator settings (allocator.py): freed memory is reused without faulting its pages in again."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# a training step's pattern in small: blocks of 1-8 MiB allocated, every page written, all freed, again
STEPS = """
import json, resource, sys
if sys.argv[1] == "keep":
    from medtune.allocator import keep_freed_memory
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for step in range(5):
    before = faults()
    blocks = [bytearray(size * 2 ** 20) for size in (1, 2, 4, 8, 6, 3) * 4]
    del blocks
    counts.append(faults() - before)
print(json.dumps(counts))
"""


def page_faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_without_page_faults():
    default, kept = page_faults("default"), page_faults("keep")
    pages = 96 * 2 ** 20 // 4096  # what one step writes
    assert min(default) > pages // 2  # glibc's own settings hand the memory back and fault it in each step
    assert kept[0] > pages // 2 and max(kept[1:]) < pages // 20


def test_other_c_libraries_are_left_alone(monkeypatch):
    from medtune import allocator

    monkeypatch.setattr(allocator.platform, "system", lambda: "Darwin")
    assert allocator.keep_freed_memory() is False
