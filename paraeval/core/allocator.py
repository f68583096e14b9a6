"""Keep freed tensor memory in the process instead of handing it back to the OS.

glibc serves every allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) with a
fresh mmap and returns it with munmap when freed, so each batch of activations faults its pages
in again. For paraeval's workload (the same few large activation tensors allocated batch after
batch) that cost dominated: a cold `paraeval run --defenses table1,table2,table3` spent 23 % of
its CPU time in the kernel (359 million minor page faults), and the accuracy of a Table 2
model on the 10,000 test images took 6.7 s instead of 2.3 s. Raising the mmap and trim
thresholds once at start-up (mallopt) keeps that memory in the heap for reuse. No effect, and
no error, where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

#: mallopt parameters (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Allocations up to this size come from the heap and are reused, and up to this much free
#: memory stays at the top of the heap (a C int, so at most 2 GiB - 1).
HEAP_LIMIT = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True if applied."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    applied = mallopt(M_MMAP_THRESHOLD, HEAP_LIMIT) == 1
    return applied and mallopt(M_TRIM_THRESHOLD, HEAP_LIMIT) == 1


_applied: bool | None = None


def keep_freed_memory_once() -> bool:
    """:func:`keep_freed_memory`, applied at most once per process: an executor's workers call
    it at the start of every task, as local worker processes do at start-up."""
    global _applied
    if _applied is None:
        _applied = keep_freed_memory()
    return _applied


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes with this module's setting applied at start-up, which exit when the run
    that started them dies, ignore Ctrl-C and are terminated when the run stops on an
    interrupt (:mod:`paraeval.core.interrupts`). Spawned, not forked: forking after torch has
    started its threads can hang the child."""
    from paraeval.core.interrupts import StoppingPool

    context = multiprocessing.get_context("spawn")
    return StoppingPool(
        workers, mp_context=context, initializer=start_worker, initargs=(os.getpid(),)
    )


#: How often a worker checks that the run that started it is still alive (seconds).
PARENT_POLL_SECONDS = 1.0


def start_worker(parent: int) -> None:
    """A pool worker's start: the allocator setting, and a watchdog that ends the worker once
    its parent is gone (a killed run otherwise leaves its busy workers running, re-parented)."""
    from paraeval.core.interrupts import ignore_interrupts_in_worker

    ignore_interrupts_in_worker()
    keep_freed_memory()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="paraeval-parent-watch", daemon=True).start()
