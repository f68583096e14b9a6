"""Where a run's groups of cells are computed: `--executor local[:N]` or `dask[:N|ADDRESS]`.

* ``local`` (the default, ``local:1``): in this process, one group after the other, each cell
  stored as soon as it is computed.
* ``local:N``: N worker processes on this machine (spawned, one intra-op thread each when N
  is the number of cores; the allocator setting of :mod:`paraeval.core.allocator`).
* ``dask``: a Dask ``LocalCluster`` of one-thread worker processes, one per usable core;
  ``dask:N`` with N workers; ``dask:ADDRESS`` (``tcp://host:8786``) an existing cluster's
  scheduler. Dask is an optional extra (``pip install 'paraeval[dask]'``), imported only here.

Whatever the executor, the unit of work is one (victim, defense, seed) group
(:class:`~paraeval.run.groups.GroupTask`); shared artifacts (victims, parasites) are trained once,
before the groups, with the parasites trained by the executor's workers and their files
brought back to this machine's cache; the groups' tasks carry the files they need to workers
whose cache is not this one. Workers never open the results store: rows come back to the run,
which stores each cell in its own transaction (so a killed run loses only cells in flight).

Why Dask and not Ray or submitit: Dask's ``distributed`` is a small pure-Python install that
starts a local cluster in a few seconds and speaks ``concurrent.futures`` (one code path here
for processes and clusters); Ray is a 200 MB install with its own object store and seconds of
start-up; submitit drives SLURM only. See docs/performance.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from paraeval.errors import UserError
from paraeval.run.groups import GroupTask, Outcome, run_task
from paraeval.training.parasite_cache import default_workers

KINDS = ("local", "dask")


@dataclass(frozen=True)
class ExecutorSpec:
    """A parsed ``--executor`` value."""

    kind: str = "local"
    #: Worker processes (local) or LocalCluster workers (dask); None: one per usable core.
    workers: int | None = 1
    #: A Dask scheduler's address (dask only); None: start a LocalCluster.
    address: str | None = None

    def __str__(self) -> str:
        detail = self.address or (str(self.workers) if self.workers else "")
        return f"{self.kind}:{detail}" if detail else self.kind


def parse_executor(text: str) -> ExecutorSpec:
    """``local``, ``local:N``, ``dask``, ``dask:N`` or ``dask:ADDRESS``; errors exit 2."""
    kind, _, detail = text.strip().partition(":")
    if kind not in KINDS:
        raise UserError(f"unknown executor {kind!r}; valid: local[:N], dask[:N|ADDRESS]")
    if not detail:
        return ExecutorSpec(kind, workers=1 if kind == "local" else None)
    if detail.isdigit():
        if int(detail) < 1:
            raise UserError(f"--executor {text}: the number of workers must be >= 1")
        return ExecutorSpec(kind, workers=int(detail))
    if kind == "local":
        raise UserError(f"--executor {text}: local takes a number of workers (local:4)")
    return ExecutorSpec(kind, workers=None, address=detail)


@dataclass
class RunExecutor:
    """An open executor: a `concurrent.futures` pool (None: this process), how many groups it
    keeps in flight, the threads each worker uses and whether its workers share our cache."""

    spec: ExecutorSpec
    pool: Executor | None = None
    slots: int = 1
    threads: int | None = None
    shares_cache: bool = True

    @property
    def inline(self) -> bool:
        return self.pool is None

    def outcomes(
        self, tasks: Iterable[GroupTask], inline: Callable[[GroupTask], Iterator[Outcome]]
    ) -> Iterator[Outcome]:
        """Every cell of every task, as it completes; tasks are pulled lazily (at most
        `slots` in flight), so the caller may claim each group just before it is handed out."""
        if self.pool is None:
            for task in tasks:
                yield from inline(task)
            return
        pending: set[Future[list[Outcome]]] = set()
        queue = iter(tasks)
        while True:
            for task in queue:
                pending.add(self.pool.submit(run_task, task))
                if len(pending) >= self.slots:
                    break
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()


@contextmanager
def open_executor(spec: ExecutorSpec) -> Iterator[RunExecutor]:
    """Start the executor's workers (a cluster, processes, or none) and stop them after."""
    with ExitStack() as stack:
        if spec.kind == "dask":
            yield _dask(spec, stack)
        elif (spec.workers or default_workers()) > 1:
            yield _processes(spec, stack)
        else:
            yield RunExecutor(spec)


def _processes(spec: ExecutorSpec, stack: ExitStack) -> RunExecutor:
    from paraeval.core.allocator import process_pool

    workers = spec.workers or default_workers()
    pool = stack.enter_context(process_pool(workers))
    threads = max(1, default_workers() // workers)
    return RunExecutor(spec, pool, slots=2 * workers, threads=threads)


def _dask(spec: ExecutorSpec, stack: ExitStack) -> RunExecutor:
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UserError(
            "--executor dask needs Dask: pip install 'paraeval[dask]' (or dask[distributed])"
        ) from None
    if spec.address:
        try:
            client = stack.enter_context(Client(spec.address, timeout="10s"))
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {spec.address}: {exc}") from None
    else:
        # A Dask task runs in a worker thread, whose glibc arena ignores the heap settings
        # of paraeval.core.allocator for large tensors: convolutions measured several times
        # slower than in a local worker's main thread. One arena restores them (set before
        # the worker process starts, so glibc reads it).
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": 1}):
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=spec.workers or default_workers(),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                    preload=["paraeval.core.interrupts"],  # workers leave Ctrl-C to the run
                )
            )
        client = stack.enter_context(Client(cluster))
    threads = max(1, sum(client.nthreads().values()))  # tasks the cluster runs at once
    # A LocalCluster's workers share this machine's cache; a remote cluster's may not.
    shares_cache = spec.address is None
    return RunExecutor(spec, client.get_executor(), 2 * threads, 1, shares_cache)
