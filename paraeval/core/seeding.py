"""Seeds and deterministic contexts (DESIGN "Determinism").

Every cell, every victim and every parasite runs under a seed derived from names and numbers
(:func:`derive_seed`, stable across processes, unlike ``hash()``), in a block that seeds python's
``random``, numpy and torch and restores their state afterwards (:func:`seeded`), so results do
not depend on the order cells run in. Training runs on one intra-op thread
(:func:`single_threaded`) so that weights do not depend on the machine's core count.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import torch


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across processes (unlike hash())."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed python's random, numpy and torch: the start of every cell and every training."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the global RNGs for a block, then restore them (keeps cells order-independent)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def protection_seeding(defense: str, seed: int) -> AbstractContextManager[None]:
    """The seeding under which `defense` protects a victim for `seed`: a run's cell and
    `paraeval.protect` both build the protected model under it, so that the two give the same
    model (one derivation, never two that could drift)."""
    return seeded(derive_seed("cell", defense, seed))


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run a block on one intra-op thread, then restore the previous thread count.

    A parasite's weights depend on how the convolution reductions are split across threads
    (measured: 2 threads vs 1 differ by 0.04 after 2 epochs), so parasites are always trained
    on one thread: the same seed gives the same parasite on any machine, and several parasites
    train in parallel processes (`pretrain_parasites`), which is faster on small convolutions
    than splitting one across cores (docs/parasite-fit.md).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
