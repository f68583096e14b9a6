"""Other paraeval runs computing on this machine at the same time: they share its cores.

An in-process run (``--executor local``) starts one PyTorch thread per core, so two of them
at once oversubscribe the cores and their OpenMP threads wait on each other: on this
project's 2-core machine, part 7 of `reproduce` beside a second run finished no cell in 9
minutes with two threads each, and 11 cells in 110 s with ``OMP_NUM_THREADS=1`` each
(docs/usage.md). A run cannot fix that alone (the other run keeps its threads), so it says so:
every computing run holds a lock file ``<cache>/running/<pid>.lock`` while it computes, and a
run that finds another one held names it with the remedy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from paraeval.core.cache import cache_dir, claim, held_elsewhere

FOLDER = "running"


@contextmanager
def registered() -> Iterator[list[int]]:
    """Hold this run's lock while the block runs; yields the pids of the other live runs
    (sharing this cache, i.e. this user's runs). Files of dead runs are removed."""
    folder = cache_dir() / FOLDER
    try:
        others = live_runs()
    except OSError:  # a cache this run cannot write: nothing to say, nothing to hold
        others = []
    with ExitStack() as held:
        with suppress(OSError):
            claim(folder / str(os.getpid()), held)
        yield [pid for pid in others if pid != os.getpid()]


def live_runs() -> list[int]:
    """The pids whose run lock is held now."""
    folder = cache_dir() / FOLDER
    live = []
    for lock in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        if not lock.stem.isdigit():
            continue
        if held_elsewhere(lock.with_suffix("")):
            live.append(int(lock.stem))
        else:
            lock.unlink(missing_ok=True)  # its run ended (or was killed)
    return live


def oversubscription_note(others: list[int], threads: int) -> str | None:
    """What to tell the user when other runs compute beside this one with several threads."""
    if not others or threads < 2:
        return None
    pids = ", ".join(map(str, others))
    return (
        f"{len(others)} other paraeval run(s) compute on this machine (pid {pids}) and this one "
        f"uses {threads} threads: together they oversubscribe the cores (much slower); give "
        "each run OMP_NUM_THREADS=1 or split the cores between them (docs/usage.md)"
    )
