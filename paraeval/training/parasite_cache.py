"""The parasites' weight cache: each trained once (:mod:`paraeval.training.parasites`), cached
as safetensors by config hash, many at once in a process pool or as grouped banks.

A config is a plain dict; its hash (with the training code's version) names the cache file,
so any change of hyper-parameter trains a new model and a stale file is never reused.
Training shows its progress (a bar on a terminal, a line every few seconds in a log); a cache
hit loads in well under a second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from concurrent.futures import Executor, as_completed
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from paraeval.core.allocator import keep_freed_memory_once, process_pool
from paraeval.core.cache import (
    cache_dir,
    claim,
    config_key,
    entry_lock,
    held_elsewhere,
    install_entry,
    load_or_none,
    save_weights,
)
from paraeval.core.console import progress, status
from paraeval.training.bank import banks, train_bank
from paraeval.training.parasites import (
    ParasiteConfig,
    TrainedParasite,
    parasite_model,
    train_parasite,
)


def parasite_path(config: ParasiteConfig) -> Path:
    """The parasite's cache entry (shipped to remote workers with the cells that need it)."""
    return cache_dir() / "parasites" / f"{config_key(config.as_dict())}.safetensors"


def _parasite_from(
    config: ParasiteConfig, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> TrainedParasite:
    model = parasite_model(config)
    noise = tensors.pop("__noise__")
    model.load_state_dict(tensors)
    return TrainedParasite(model=model.eval(), noise=noise, fit=meta["fit"])


def load_or_train_parasite(config: ParasiteConfig) -> TrainedParasite:
    """The cached parasite for `config`, training (and caching) it on a miss; when another run
    is training it (:func:`~paraeval.core.cache.entry_lock`), its file once that run is done."""
    cached = _cached_parasite(config)
    if cached is not None:
        return cached
    with entry_lock(parasite_path(config)):
        cached = _cached_parasite(config)  # the run that held the lock may have trained it
        return cached if cached is not None else _train_and_save(config)


def _cached_parasite(config: ParasiteConfig) -> TrainedParasite | None:
    return load_or_none(
        parasite_path(config), lambda tensors, meta: _parasite_from(config, tensors, meta)
    )


def _train_and_save(config: ParasiteConfig) -> TrainedParasite:
    started = time.perf_counter()
    trained = train_parasite(config) if config.device == "cpu" else train_bank([config])[0]
    save_parasite(config, trained, time.perf_counter() - started)
    return trained


def save_parasite(config: ParasiteConfig, trained: TrainedParasite, seconds: float) -> None:
    """The parasite's cache entry: weights, noise, config and fit (the same format whether
    trained alone or in a bank)."""
    meta: dict[str, Any] = {"config": config.as_dict(), "fit": trained.fit}
    meta["train_seconds"] = round(seconds, 2)
    tensors = {**trained.model.state_dict(), "__noise__": trained.noise}
    save_weights(parasite_path(config), tensors, meta)


def is_cached(config: ParasiteConfig) -> bool:
    """Whether a readable entry exists (a damaged one is reported and moved aside)."""
    return load_or_none(parasite_path(config), lambda _tensors, _meta: True) is not None


def default_workers() -> int:
    """The cores this process may use (each parasite trains on one of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parasite_entry(config: ParasiteConfig) -> bytes:
    """The parasite's cache file, trained first if this machine lacks it: what an executor's
    worker (possibly on another machine) sends back to the run's own cache."""
    keep_freed_memory_once()
    load_or_train_parasite(config)
    return parasite_path(config).read_bytes()


def pretrain_parasites(
    configs: Iterable[ParasiteConfig], workers: int | None = None, pool: Executor | None = None
) -> int:
    """Train (and cache) every parasite of `configs` not cached yet, `workers` at a time.

    Each worker is a separate process training one parasite on one thread; the convolutions
    have 1-2 channels, too small to split well across threads, so on 2 cores two workers train
    ~2x as many 28x28 parasites (~1.2x as many 16x16 ones) as one process with both threads.
    The weights are the same as those `load_or_train_parasite` would train inline. With `pool`
    (a run's executor, e.g. a Dask cluster) the parasites train there and their files come
    back into this machine's cache. Returns how many were trained.
    """
    missing = _others_last([c for c in dict.fromkeys(configs) if not is_cached(c)])
    on_gpu = [c for c in missing if c.device != "cpu"]
    if on_gpu:
        train_banks(on_gpu)
        missing = [c for c in missing if c.device == "cpu"]
    workers = min(workers or default_workers(), len(missing))
    if not missing:
        return len(on_gpu)
    with ExitStack() as stack:
        if pool is None and workers > 1:
            pool = stack.enter_context(process_pool(workers))
        bar = stack.enter_context(progress("training parasites", len(missing)))
        if pool is None:
            for config in missing:
                load_or_train_parasite(config)
                bar.advance()
            return len(missing) + len(on_gpu)
        futures = {pool.submit(parasite_entry, config): config for config in missing}
        for future in as_completed(futures):
            install_entry(parasite_path(futures[future]), future.result())
            bar.advance()
    return len(missing) + len(on_gpu)


def _others_last(configs: list[ParasiteConfig]) -> list[ParasiteConfig]:
    """`configs` with those another run is training now moved to the end (with a note): this
    run trains the rest first, and by the time it asks for those their files are likely there
    (:func:`load_or_train_parasite` waits for them rather than training them twice)."""
    elsewhere = [c for c in configs if held_elsewhere(parasite_path(c))]
    if elsewhere:
        status.print(
            f"[yellow]note:[/] another run is training {len(elsewhere)} of these parasite(s); "
            "this run waits for their files, not training them again"
        )
    return [c for c in configs if c not in elsewhere] + elsewhere


def train_banks(configs: list[ParasiteConfig]) -> None:
    """Train and cache GPU parasites, each bank (one shape and recipe) at once, in this
    process (the GPU is the parallelism; :mod:`paraeval.training.bank`). Parasites another
    run is training stay out of the banks; their files are awaited after."""
    with ExitStack() as held:
        mine = [c for c in configs if claim(parasite_path(c), held) and not is_cached(c)]
        grouped = banks(mine)
        with progress("training parasite banks", len(grouped)) as bar:
            for bank in grouped:
                for config, trained in zip(bank, train_bank(bank), strict=True):
                    save_parasite(config, trained, seconds=0.0)
                bar.advance(status=f"{len(bank)} parasites")
    for config in configs:
        if config not in mine and not is_cached(config):
            load_or_train_parasite(config)  # waits for the run training it
