from __future__ import annotations

import platform

import pytest

from paraeval.core.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_allocator_settings() -> None:
    """Both thresholds fit glibc's int parameters (an overflowed trim threshold becomes 0 and
    silently makes every free return memory to the OS, the opposite of the intent)."""
    from paraeval.core import allocator

    assert allocator.HEAP_LIMIT < 2**31
    assert keep_freed_memory() is True
