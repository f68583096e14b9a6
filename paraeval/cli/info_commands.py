"""The commands that look at what paraeval has and knows (`list`, `inspect`, `cache`,
`store`) and `bench`; :mod:`paraeval.cli.main` registers them beside the ones that run grids."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from paraeval.cli.option_types import FormatOption
from paraeval.core.console import Format, emit, status, stdout

console = stdout  # results
err_console = status  # notes (stderr)


class ListWhat(StrEnum):
    defenses = "defenses"
    attacks = "attacks"
    plugins = "plugins"
    victims = "victims"
    datasets = "datasets"


def list_command(
    what: Annotated[ListWhat, typer.Argument()] = ListWhat.defenses,
    options: Annotated[
        bool, typer.Option("--options", help="List the options (readings) with their values.")
    ] = False,
    fmt: FormatOption = Format.auto,
) -> None:
    """List registered defenses, attacks, plugins, victims or datasets (--options)."""
    from paraeval.cli.listing import list_rows

    emit(console, *list_rows(what.value, options), fmt)


def inspect_command(
    victim: Annotated[str, typer.Argument(help="A victim name, or FILE.py:Class.")],
    dataset: Annotated[str | None, typer.Option(help="FILE.py:Class's dataset.")] = None,
    fmt: FormatOption = Format.auto,
) -> None:
    """VICTIM's layers by name, their output shapes and where a parasite fits
    (`--defenses 'parasite:layer=NAME,neurons=...'`)."""
    from paraeval.cli.listing import layer_rows

    emit(console, *layer_rows(victim, dataset), fmt)


def bench_command(
    out: Annotated[Path, typer.Option(help="Where bench.csv is written.")] = Path("bench.csv"),
    images: Annotated[int, typer.Option(min=1, help="Test images attacked.")] = 200,
    repetitions: Annotated[int, typer.Option(min=1, help="Timed repetitions per row.")] = 5,
    quick: Annotated[bool, typer.Option("--quick", help="A small configuration (CI).")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the MNIST IDX files.")] = None,
    cold: Annotated[bool, typer.Option("--cold", help="Also time Tables 1-3 cold.")] = False,
    rows: Annotated[
        str,
        typer.Option(
            help="Row groups, comma-separated: fgsm, pgd, latency, parasite, bank, "
            "executors, cold (default: all but cold; `cold` alone: that row only)."
        ),
    ] = "",
    merge: Annotated[bool, typer.Option("--merge", help="Keep OUT's other rows.")] = False,
    fmt: FormatOption = Format.auto,
) -> None:
    """Time the hot paths as ratios against baselines run in the same process (bench.csv)."""
    from paraeval.bench.measure import BenchConfig, bench, row_groups

    chosen = row_groups(rows)
    frame = bench(BenchConfig(images, repetitions, quick, data_dir, out, cold, chosen, merge))
    emit(console, list(frame.columns), frame.values.tolist(), fmt, f"wrote {out}")


class CacheAction(StrEnum):
    list = "list"
    verify = "verify"
    clear = "clear"


def cache_command(
    action: Annotated[CacheAction, typer.Argument()] = CacheAction.list,
    fmt: FormatOption = Format.auto,
) -> None:
    """Show (list), check (verify: damaged entries are moved aside) or delete (clear) the
    cached victims and parasites."""
    from paraeval.cli.listing import cache_table

    columns, rows, title, messages = cache_table(action.value)
    if rows:
        emit(console, columns, rows, fmt, title)
    for message in messages:
        err_console.print(message, highlight=False)


class StoreAction(StrEnum):
    runs = "runs"
    prune = "prune"
    recover = "recover"


def store_command(
    action: Annotated[StoreAction, typer.Argument()],
    directory: Annotated[Path, typer.Argument(help="A run's --out (reproduce's --work).")],
    since_run: Annotated[
        int | None, typer.Option(help="prune: keep what the runs from this id on asked for.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="prune: count what would go, delete nothing.")
    ] = False,
    fmt: FormatOption = Format.auto,
) -> None:
    """A results store's runs (runs); delete the cells no run from an id on asked for (prune
    --since-run ID: rerun the commands that matter first, all stored, then prune); or move a
    damaged store aside and keep every row it can still read (recover)."""
    from paraeval.cli.listing import prune_store, run_rows

    if action is StoreAction.recover:
        from paraeval.run.store_recovery import recover_store

        err_console.print(recover_store(directory).summary, highlight=False)
        return
    if action is StoreAction.runs:
        emit(console, *run_rows(directory), fmt, f"runs in {directory}")
        return
    err_console.print(prune_store(directory, since_run, dry_run), highlight=False)


def protect_command(
    victim: Annotated[str, typer.Argument(help="A registered victim (paraeval list victims).")],
    defense: Annotated[str, typer.Argument(help="One defense with options: 'table1:select=1'.")],
    out: Annotated[Path, typer.Option(help="Where the protected model is saved (safetensors).")],
    seed: Annotated[int, typer.Option(help="The run seed the model is built with.")] = 0,
    victim_seed: Annotated[int, typer.Option(help="Seed of the victim's training.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the dataset's files.")] = None,
) -> None:
    """Save the protected model a run attacks for (VICTIM, DEFENSE, --seed): its weights, the
    recipe that rebuilds it (paraeval.load_protected) and what the defense recorded."""
    from paraeval.run.protection import describe, protect, save_protected

    protected = protect(victim, defense, seed=seed, victim_seed=victim_seed, data_dir=data_dir)
    recipe = {"victim": victim, "defense": defense, "seed": seed, "victim_seed": victim_seed}
    save_protected(out, protected, recipe)
    console.print(describe(protected), highlight=False, soft_wrap=True)
    err_console.print(
        f"saved {out} (reload: paraeval.load_protected({str(out)!r}))", highlight=False
    )
