"""The process settings every cellpulse command applies to itself."""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from cellpulse.runtime import keep_freed_memory

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt tuning is glibc's")
def test_freed_memory_is_kept_for_reuse_on_glibc(tmp_path):
    assert keep_freed_memory() is True

    # Large blocks now come from the heap and are reused: a second allocation of the same
    # size after a free faults in (almost) no new pages.
    def minor_faults() -> int:
        return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])

    block = np.ones(50_000_000 // 8)  # 50 MB, above glibc's largest default mmap threshold
    del block
    before = minor_faults()
    again = np.ones(50_000_000 // 8)
    faults = minor_faults() - before
    assert again.sum() == again.size
    assert faults < 100  # a fresh mapping faults in about a thousand pages here (hugepages)
    assert os.environ.get("OMP_WAIT_POLICY") == "PASSIVE"  # set by the test session too
