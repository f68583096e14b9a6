"""The command line: `paraeval run` and `report` here, `reproduce | readings` from
:mod:`paraeval.cli.study_commands`, `list | inspect | bench | cache | store | protect` from
:mod:`paraeval.cli.info_commands`.

Exit codes: 0 success; 1 when at least one cell failed (its traceback is in results.csv);
2 for a usage or data error (one line on stderr, no traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from paraeval.cli.info_commands import (
    bench_command,
    cache_command,
    inspect_command,
    list_command,
    protect_command,
    store_command,
)
from paraeval.cli.option_types import (
    DeviceOption,
    ExecutorOption,
    FormatOption,
    check_writable,
    command_line,
)
from paraeval.cli.printing import print_plan, print_summary
from paraeval.cli.study_commands import readings_command, reproduce_command
from paraeval.core.console import Format, configure, status, stdout
from paraeval.errors import UserError
from paraeval.version import __version__

# Heavy modules (torch, ART, pandas) are imported inside the commands that need them, so that
# `paraeval --help`, `--version` and argument errors answer at once (test_cli_output.py).

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Measure defenses against adversarial examples and model extraction.",
)
console = stdout  # results
err_console = status  # notes, progress and status lines (stderr; --quiet, --log)


def _version(value: bool) -> None:
    if value:
        console.print(f"paraeval {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No notes or progress; results and errors only.")
    ] = False,
    log: Annotated[
        Path | None, typer.Option("--log", help="Also append everything printed to this file.")
    ] = None,
) -> None:
    """Measure defenses against adversarial examples and model extraction."""
    configure(console, quiet=quiet, log=log.open("a", encoding="utf-8") if log else None)


def _parse_list(value: str, what: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise UserError(f"{what} is empty")
    return items


def _parse_seeds(seeds: int | None, seed: list[int] | None) -> list[int]:
    if seed:
        return list(dict.fromkeys(seed))
    count = 1 if seeds is None else seeds
    if count < 1:
        raise UserError("--seeds must be >= 1")
    return list(range(count))


#: Options of `paraeval run` that a grid file may set (the command line overrides them).
GRID_OPTIONS = (
    "victims", "defenses", "attacks", "seeds", "seed", "n_images", "victim_seed", "seed_scope"
)  # fmt: skip


@app.command("run")
def run_command(
    ctx: typer.Context,
    victims: Annotated[
        str, typer.Option(help="Comma list of victims: vm, vm-batch.")
    ] = "vm,vm-batch",
    defenses: Annotated[
        str, typer.Option(help="Names, tags (table1..3, parasites), globs, 'all'.")
    ] = "none",
    attacks: Annotated[
        str, typer.Option(help="Attacks, with options: fgsm:backend=torchattacks.")
    ] = "fgsm",
    seeds: Annotated[int | None, typer.Option(help="Run seeds 0..N-1.")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="Run this seed (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/latest"),
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the MNIST IDX files.")] = None,
    n_images: Annotated[int, typer.Option(help="First N test images attacked (paper: 200).")] = 200,
    attacked: Annotated[
        str, typer.Option(help="Split whose first N images are attacked: test or train.")
    ] = "test",
    victim_seed: Annotated[int, typer.Option(help="Seed of the victims' training.")] = 0,
    seed_scope: Annotated[
        str,
        typer.Option(help="What a seed varies: parasite (the defense) or pipeline (victims too)."),
    ] = "parasite",
    no_download: Annotated[
        bool, typer.Option("--no-download", help="Never download MNIST.")
    ] = False,
    retry_failed: Annotated[bool, typer.Option(help="Recompute cells stored as failed.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Processes training parasites (default: one per core)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A grid file (TOML); options given here override it."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Check names and options, count the cells; run nothing."),
    ] = False,
    executor: ExecutorOption = "local",
    device: DeviceOption = "auto",
    fmt: FormatOption = Format.auto,
    verbose: Annotated[bool, typer.Option("--verbose", help="List every note.")] = False,
    model: Annotated[str | None, typer.Option(help="Your model: FILE.py:Class.")] = None,
    weights: Annotated[Path | None, typer.Option(help="--model's weights (safetensors).")] = None,
    dataset: Annotated[str | None, typer.Option(help="--model's dataset.")] = None,
) -> None:
    """Run the grid victims x defenses x seeds x attacks and write CSVs into OUT."""
    from paraeval.report.outputs import write_interim, write_outputs
    from paraeval.run.grid import load_grid, override, run_parts, seed_runs
    from paraeval.run.runner import RunConfig, run

    own = (
        model is not None
        and getattr(ctx.get_parameter_source("victims"), "name", "") != "COMMANDLINE"
    )
    grid: dict[str, Any] = {
        "victims": [] if own else _parse_list(victims, "--victims"),
        "defenses": defenses,
        "attacks": attacks,
        "seeds": _parse_seeds(seeds, seed),
        "n_images": n_images,
        "victim_seed": victim_seed,
        "seed_scope": seed_scope,
    }
    given = {
        "seeds" if name == "seed" else name
        for name in GRID_OPTIONS
        if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    }
    common = dict(
        out=out,
        data_dir=data_dir,
        allow_download=not no_download,
        retry_failed=retry_failed,
        jobs=jobs,
        command=command_line(),
        dry_run=dry_run,
        verbose=verbose,
        executor=executor,
        model=model,
        weights=weights,
        dataset=dataset,
        device=device,
        attacked=attacked,
    )
    parts = load_grid(config) if config else (RunConfig(victims=grid["victims"]),)
    parts = override(parts, **{k: v for k, v in grid.items() if k in given or not config}, **common)
    if dry_run:
        print_plan([run(one, err_console) for part in parts for one in seed_runs(part)], verbose)
        return
    check_writable(out)
    result = run_parts(parts, lambda part: run(part, err_console, write_interim))
    write_outputs(out, result.keys)
    print_summary(result, out, fmt, verbose)
    if result.failed:
        raise typer.Exit(1)


def report_command(
    directory: Annotated[Path, typer.Argument(help="A directory written by `paraeval run`.")],
) -> None:
    """Re-render the CSVs and report.html of DIRECTORY from its results.sqlite (no recompute)."""
    from paraeval.report.html import rerender

    console.print(f"wrote {rerender(directory)}")


app.command("reproduce")(reproduce_command)
app.command("readings")(readings_command)
app.command("report")(report_command)
app.command("list")(list_command)
app.command("inspect")(inspect_command)
app.command("bench")(bench_command)
app.command("cache")(cache_command)
app.command("store")(store_command)
app.command("protect")(protect_command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    from paraeval.core.allocator import keep_freed_memory
    from paraeval.core.interrupts import (
        RESUME_LINE,
        Interrupted,
        install_handlers,
        raise_if_interrupted,
    )

    keep_freed_memory()
    install_handlers()
    try:
        try:
            app(args=argv, standalone_mode=True)
        finally:  # a Ctrl-C that a finalizer dropped still ends the command as interrupted
            raise_if_interrupted()
    except UserError as exc:
        err_console.quiet = False  # errors print even with --quiet
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Interrupted as stop:
        err_console.quiet = False
        err_console.print(f"[yellow]{RESUME_LINE}[/]", highlight=False, soft_wrap=True)
        sys.exit(stop.status)
