"""Ctrl-C and SIGTERM stop a run within seconds, in every phase, keeping what is complete.

The run's own process turns SIGINT and SIGTERM into :class:`Interrupted` (a BaseException, so
neither a plugin's ``except Exception`` nor the CLI framework's Ctrl-C handling swallows it);
pool workers ignore SIGINT (the terminal sends it to the whole process group) and are
terminated by :class:`StoppingPool` when the run unwinds, with their queued work dropped.
What finished stays: every cell is stored in one transaction and every model file is written
atomically, so a rerun of the same command resumes (docs/usage.md, "Resume").

A signal can land while Python runs a finalizer (a ``__del__``, a weakref callback, garbage
collection), where any exception is printed as "Exception ignored in ..." and dropped: the
Ctrl-C would be lost and the run would go on. So every received signal is also remembered;
:func:`raise_if_interrupted` stops the run at its next checkpoint (every progress step, and
the command's end), and the dropped exception is not printed.
"""

from __future__ import annotations

import logging
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from types import FrameType, TracebackType

#: Exit statuses of a run stopped by SIGINT and SIGTERM (128 + the signal's number).
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
RESUME_LINE = (
    "interrupted: finished cells stay stored and trained models cached; rerun the same "
    "command to resume"
)


class Interrupted(BaseException):
    """The run was asked to stop (Ctrl-C or SIGTERM); `status` is the exit status it owes."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.status = EXIT_STATUS.get(signal.Signals(signum), 128 + signum)


#: The signals this process received, so that one whose exception a finalizer dropped is not lost.
_received: list[int] = []


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def raise_if_interrupted() -> None:
    """A checkpoint: raise :class:`Interrupted` if a signal arrived whose exception was dropped
    (or not yet handled); a no-op in a process that received none."""
    if _received:
        raise Interrupted(_received[-1])


def _quiet_when_interrupted(unraisable: sys.UnraisableHookArgs) -> None:
    """An `Interrupted` dropped in a finalizer is remembered, not printed (the run stops at
    its next checkpoint); anything else goes to Python's own hook."""
    if not isinstance(unraisable.exc_value, Interrupted):
        sys.__unraisablehook__(unraisable)


def install_handlers() -> None:
    """In the run's main process: SIGINT and SIGTERM raise :class:`Interrupted`."""
    _received.clear()  # a command starts uninterrupted, even a second one in this process
    for signum in EXIT_STATUS:
        signal.signal(signum, _raise_interrupted)
    sys.unraisablehook = _quiet_when_interrupted


def ignore_interrupts_in_worker() -> None:
    """In a pool worker: Ctrl-C is the run's to handle (it stops the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: What a Dask worker logs, with a traceback, when its scheduler went away first: the run
#: closing its local cluster after Ctrl-C (seen on a loaded machine). Nothing is lost.
SCHEDULER_GONE = "Failed to communicate with scheduler during heartbeat"


def _not_scheduler_gone(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(SCHEDULER_GONE)


def dask_setup(_worker: object) -> None:
    """A Dask worker's start (this module is the local cluster's worker preload): Ctrl-C in a
    terminal reaches every process of the run, and a worker that died of it before the run
    closed its cluster printed a 30-line traceback; the run closes the cluster instead, and
    a worker that outlives the scheduler while it closes does not print one either."""
    ignore_interrupts_in_worker()
    logging.getLogger("distributed.worker").addFilter(_not_scheduler_gone)


class StoppingPool(ProcessPoolExecutor):
    """A process pool that, left by an exception (an interrupt, a failure), drops its queued
    work and terminates its workers at once instead of waiting for every queued task."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        if exc_type is None:
            return super().__exit__(exc_type, exc, traceback)
        self.stop_now()
        return None

    def stop_now(self) -> None:
        """Cancel what has not started, terminate the workers, wait briefly for them to go."""
        processes = list((getattr(self, "_processes", None) or {}).values())
        self.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
