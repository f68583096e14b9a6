"""`paraeval bench`: how fast the pipeline's hot paths are, as ratios against baselines.

Every figure is the median wall time of a candidate over ``repetitions`` runs, divided by the
median of a baseline run in the same process on the same inputs (interleaved, after one
warm-up each), with the spread (the ratio's range over the repetitions). No timings appear in
the unit tests; CI runs this in a small configuration and checks the rows, not the numbers.

Rows:

* ``fgsm-sweep`` vs ``art-per-eps``: paraeval's sweep (only images not yet fooled are attacked
  at the next ε) against ART's FastGradientMethod on every image at every ε of the grid;
* ``fgsm-sweep`` vs ``per-image``: the same sweep against one image at a time;
* ``pgd`` vs ``torchattacks-pgd``: paraeval's PGD (torchattacks backend) at one ε against
  torchattacks.PGD called directly, same batch, ε, steps and step size;
* ``protected-<row>`` vs ``victim``: inference latency of a protected model against its victim,
  batch 256 (Table 1, 2, 3 configurations; then ART's ReverseSigmoid and, where its plugin is
  installed, DCP, on ``vm``);
* ``parasite-training``: seconds to train one parasite (one thread; the default recipe, or
  200 inputs with ``--quick``); no baseline, so no ratio;
* ``parasite-bank-cpu`` (and ``parasite-bank-cuda`` where CUDA is present) vs
  ``one-at-a-time``: :data:`BANK_SIZE` parasites of one recipe trained as one grouped network
  (:mod:`paraeval.training.bank`; on the CPU with one thread) against the same parasites
  trained one after the other on one CPU thread, as each worker of a CPU run trains them;
* ``executor-dask:2`` and ``executor-local:2`` vs ``local``: a whole `paraeval run` of
  :data:`EXECUTOR_GRID` (>= 20 groups; warm model cache, a fresh results store each time, the
  cluster's start-up included) against the default in-process executor; and ``dask:2``
  against ``local`` restricted to one intra-op thread (``local-1-thread``), the fair baseline
  for two one-thread workers: on a 2-core machine the in-process run already uses both cores
  through PyTorch's threads. Dask rows only where Dask is installed.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn

from paraeval.bench.timing import Row, paired
from paraeval.datasets.idx import MNIST, load_mnist
from paraeval.run.provenance import versions

if TYPE_CHECKING:
    from paraeval.run.dispatch import Phases

BENCH_COLUMNS = [
    "name", "baseline", "ratio", "ratio_low", "ratio_high", "candidate_s", "baseline_s",
    "repetitions", "size", "device",
]  # fmt: skip
#: The grid the executors are timed on: 24 (victim, defense, seed) groups; quick: 4.
EXECUTOR_GRID: dict[str, Any] = {
    "victims": ["vm", "vm-batch"], "defenses": "table1,table3", "attacks": "fgsm", "seeds": [0],
}  # fmt: skip
QUICK_EXECUTOR_GRID: dict[str, Any] = {
    "victims": ["vm"], "defenses": "none,t1-vm-after-nobn-small", "attacks": "fgsm",
    "seeds": [0, 1], "n_images": 20,
}  # fmt: skip
#: Paper rows timed for inference (one per table); ``quick`` keeps the first.
LATENCY_ROWS = ("t1-vm-after-bn-small", "t2-bn-small-sigma0.2", "t3-row01")
#: The companion output defenses timed beside them: ART's ReverseSigmoid (built in) and
#: DCP where its plugin (plugins/paraeval-dcp) is installed.
COMPANION_LATENCY_ROWS = ("reverse-sigmoid", "dcp")


#: The row groups `paraeval bench` times by default; `--rows` chooses among them and ``cold``
#: (the same as `--cold`; alone, ``--rows cold`` times that row only).
ROW_GROUPS = ("fgsm", "pgd", "latency", "parasite", "bank", "executors")


@dataclass
class BenchConfig:
    images: int = 200
    repetitions: int = 5
    quick: bool = False  # CI: few images, one latency row, tiny parasites
    data_dir: Path | None = None
    out: Path = Path("bench.csv")
    #: Also time :data:`COLD_GRID` from a fresh model cache (tens of minutes on 2 cores).
    cold: bool = False
    #: Which row groups to time (:data:`ROW_GROUPS`); all by default. A GPU machine's short
    #: lease times only ``bank`` and the cold row, say.
    rows: tuple[str, ...] = ()
    #: Keep the other rows of an existing `out` (:func:`merged`).
    merge: bool = False


def bench(config: BenchConfig) -> pd.DataFrame:
    """Every row (see the module docstring) as bench.csv's frame; also written to config.out."""
    from paraeval.run.lookup import victim_config
    from paraeval.training.victims import load_or_train_victim

    mnist = load_mnist(config.data_dir)
    n = 20 if config.quick else config.images
    images = MNIST.as_float(mnist.test_images[:n])
    labels = mnist.test_labels[:n]
    victim, _ = load_or_train_victim(victim_config("vm"), mnist)
    timed: dict[str, Callable[[], list[Row]]] = {
        "fgsm": lambda: _fgsm_rows(victim, images, labels, config.repetitions),
        "pgd": lambda: [_pgd_row(victim, images, labels, config.repetitions)],
        "latency": lambda: _latency_rows(mnist, config),
        "parasite": lambda: [_parasite_row(config)],
        "bank": lambda: _bank_rows(config),
        "executors": lambda: _executor_rows(config),
    }
    groups = [group for group in config.rows if group != "cold"]
    chosen = groups or ([] if config.rows else ROW_GROUPS)  # `--rows cold`: that row alone
    rows = [row for group in ROW_GROUPS if group in chosen for row in timed[group]()]
    rows += [_cold_row(config)] if config.cold or "cold" in config.rows else []
    found = versions()
    device = found["device"] + (f"; {found['gpu']}" if found.get("gpu") else "")
    frame = pd.DataFrame([row.record(device) for row in rows], columns=BENCH_COLUMNS)
    if config.merge and config.out.exists():
        frame = merged(pd.read_csv(config.out), frame)
    frame.to_csv(config.out, index=False)
    return frame


def merged(earlier: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """`--merge`: the earlier bench.csv with the rows measured now in place of theirs (same
    candidate and baseline), new ones appended: a row timed alone (the cold one, tens of
    minutes) joins the file without re-timing the others."""

    def key(frame: pd.DataFrame) -> pd.Series:
        return frame["name"] + "|" + frame["baseline"].fillna("").astype(str)

    updated = {k: row for k, row in zip(key(measured), measured.to_dict("records"), strict=True)}
    rows = [
        updated.pop(k) if k in updated else row
        for k, row in zip(key(earlier), earlier.to_dict("records"), strict=True)
    ]
    return pd.DataFrame([*rows, *updated.values()], columns=BENCH_COLUMNS)


def _fgsm_rows(
    victim: nn.Module, images: torch.Tensor, labels: torch.Tensor, repetitions: int
) -> list[Row]:
    from paraeval.attacks.backends import art_classifier, epsilon_grid
    from paraeval.attacks.fgsm import FGSMSweep

    sweep = FGSMSweep()

    def art_every_eps() -> None:
        from art.attacks.evasion import FastGradientMethod

        classifier = art_classifier(victim, images)
        for eps in epsilon_grid(0.05, 1.0):
            FastGradientMethod(classifier, eps=eps, batch_size=len(images)).generate(
                x=images.numpy(), y=labels.numpy()
            )

    def per_image() -> None:
        for i in range(len(images)):
            sweep.generate(victim, images[i : i + 1], labels[i : i + 1], seed=0)

    def run_sweep() -> None:
        sweep.generate(victim, images, labels, seed=0)

    size = f"{len(images)} images x 20 eps"
    art = Row("fgsm-sweep", "art-per-eps", *paired(run_sweep, art_every_eps, repetitions), size)
    few = max(1, repetitions // 2)  # the per-image loop is slow; fewer repetitions
    loop = Row("fgsm-sweep", "per-image", *paired(run_sweep, per_image, few), size)
    return [art, loop]


def _pgd_row(victim: nn.Module, images: torch.Tensor, labels: torch.Tensor, reps: int) -> Row:
    from paraeval.attacks.backends import torchattacks_module
    from paraeval.attacks.pgd import PGDSweep

    eps, steps = 0.1, 10
    ours = PGDSweep(backend="torchattacks", eps_step=eps, max_eps=eps, steps=steps)
    torchattacks = torchattacks_module()
    direct = torchattacks.PGD(
        victim, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=False
    )
    times = paired(
        lambda: ours.generate(victim, images, labels, seed=0),
        lambda: direct(images, labels),
        reps,
    )
    return Row("pgd", "torchattacks-pgd", *times, f"{len(images)} images, eps {eps}, {steps} steps")


def _latency_rows(mnist: MNIST, config: BenchConfig) -> list[Row]:
    from paraeval import registry
    from paraeval.api import Protected, RunContext
    from paraeval.run.lookup import victim_config
    from paraeval.training.victims import load_or_train_victim

    context = RunContext(
        MNIST.as_float(mnist.train_images), mnist.source, train_labels=mnist.train_labels
    )
    batch = MNIST.as_float(mnist.test_images[:256])
    found = []
    installed = set(registry.defenses().names())
    companions = [name for name in COMPANION_LATENCY_ROWS if name in installed]
    for name in LATENCY_ROWS[:1] if config.quick else (*LATENCY_ROWS, *companions):
        (entry,) = registry.configured_defenses(name)
        victim_name = entry.obj.victims[0] if entry.obj.victims else "vm"
        victim, _ = load_or_train_victim(victim_config(victim_name), mnist)
        protected = Protected.of(entry.obj.bind(context).protect(victim, seed=0)).model

        def infer(model: nn.Module = protected) -> None:
            with torch.no_grad():
                model(batch)

        def infer_victim(model: nn.Module = victim) -> None:
            with torch.no_grad():
                model(batch)

        times = paired(infer, infer_victim, config.repetitions * 4)
        found.append(Row(f"protected-{name}", "victim", *times, "batch 256"))
    return found


def _parasite_row(config: BenchConfig) -> Row:
    from paraeval.training.parasites import ParasiteConfig, train_parasite

    n_train = 200 if config.quick else 10_000
    parasite = ParasiteConfig(batch_norm=True, bias="small", n_train=n_train)
    times = []
    for seed in range(max(1, config.repetitions // 2)):
        started = time.perf_counter()
        train_parasite(dataclasses.replace(parasite, seed=seed))
        times.append(time.perf_counter() - started)
    size = f"seconds per 16x16 BN parasite, {n_train} training inputs, one thread"
    return Row("parasite-training", "", times, [], size)


#: Parasites per bank in the bank rows.
BANK_SIZE = 8


def _bank_rows(config: BenchConfig) -> list[Row]:
    from paraeval.core.seeding import single_threaded
    from paraeval.training.bank import train_bank
    from paraeval.training.parasites import ParasiteConfig, train_parasite

    n_train = 200 if config.quick else 2_000
    recipe = ParasiteConfig(batch_norm=True, bias="small", n_train=n_train, epochs=2)
    alone = [dataclasses.replace(recipe, seed=seed) for seed in range(BANK_SIZE)]

    def one_at_a_time() -> None:
        for parasite in alone:
            train_parasite(parasite)

    def bank_on(device: str) -> None:
        bank = [dataclasses.replace(parasite, device=device) for parasite in alone]
        if device == "cpu":
            with single_threaded():  # one core against one core: the baseline's one thread
                train_bank(bank)
        else:
            train_bank(bank)

    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    size = f"{BANK_SIZE} 16x16 BN parasites, {n_train} inputs, 2 epochs, one CPU thread"
    rows = []
    for device in devices:
        times = paired(
            functools.partial(bank_on, device), one_at_a_time, max(1, config.repetitions // 2)
        )
        rows.append(Row(f"parasite-bank-{device}", "one-at-a-time", *times, size))
    return rows


def _executor_rows(config: BenchConfig) -> list[Row]:
    import importlib.util

    variants = {"local": "local", "local-1-thread": "local", "local:2": "local:2"}
    if importlib.util.find_spec("distributed") is not None:
        variants["dask:2"] = "dask:2"
    grid = QUICK_EXECUTOR_GRID if config.quick else EXECUTOR_GRID
    _run_grid(grid, "local", config)  # warm-up: trains and caches what the grid needs
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(1 if config.quick else max(1, config.repetitions // 3)):
        for name, executor in variants.items():
            threads = 1 if name == "local-1-thread" else None
            times[name].append(_run_grid(grid, executor, config, threads)[0])
    size = f"{'quick grid' if config.quick else 'Tables 1 and 3'}, fgsm, seed 0, whole run"
    rows = [Row("executor-local:2", "local", times["local:2"], times["local"], size)]
    if "dask:2" in times:
        rows += [
            Row("executor-dask:2", "local", times["dask:2"], times["local"], size),
            Row(
                "executor-dask:2", "local-1-thread", times["dask:2"], times["local-1-thread"], size
            ),
        ]
    return rows


#: The cold-time grid: the paper's Tables 1-3, 5 seeds, FGSM (the `--cold` row).
COLD_GRID: dict[str, Any] = {
    "victims": ["vm", "vm-batch"], "defenses": "table1,table2,table3", "attacks": "fgsm",
    "seeds": [0, 1, 2, 3, 4],
}  # fmt: skip


def _cold_row(config: BenchConfig) -> Row:
    """Seconds for the whole :data:`COLD_GRID` run with an empty model cache: the victims, every
    parasite and every cell (`local`, this machine's cores)."""
    import os
    import tempfile

    from paraeval.core.cache import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    with tempfile.TemporaryDirectory() as cache:
        os.environ[CACHE_ENV] = cache
        try:  # minutes long: its progress lines go to stderr
            seconds, phases = _run_grid(COLD_GRID, "local", config, quiet=False)
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = previous
    size = f"Tables 1-3 x 5 seeds, fgsm, empty model cache, whole run ({phases.line()})"
    return Row("cold-tables-1-3", "", [seconds], [], size)


def _run_grid(
    grid: dict[str, Any],
    executor: str,
    config: BenchConfig,
    threads: int | None = None,
    quiet: bool = True,
) -> tuple[float, Phases]:
    """Seconds for one whole run of `grid` into a fresh results store, and where they went
    (its progress on stderr unless `quiet`)."""
    import io
    import tempfile

    from rich.console import Console

    from paraeval.core import console as output
    from paraeval.run.runner import RunConfig, run

    previous_threads, previous_quiet = torch.get_num_threads(), output.status.quiet
    output.status.quiet = quiet
    console = Console(file=io.StringIO()) if quiet else Console(stderr=True)
    try:
        torch.set_num_threads(threads or previous_threads)
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            result = run(
                RunConfig(**grid, out=Path(out), data_dir=config.data_dir, executor=executor),
                console,
            )
            return time.perf_counter() - started, result.phases
    finally:
        torch.set_num_threads(previous_threads)
        output.status.quiet = previous_quiet


def row_groups(text: str) -> tuple[str, ...]:
    """`--rows fgsm,bank`: the chosen groups (empty: all); an unknown name exits 2."""
    from paraeval.errors import UserError

    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    valid = (*ROW_GROUPS, "cold")
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        raise UserError(f"--rows {', '.join(unknown)}: unknown; valid: {', '.join(valid)}")
    return chosen
