"""`paraeval run | reproduce | readings | report` and, from
:mod:`paraeval.cli.info_commands`, `list |
inspect | bench | cache | store` - the command line.

Exit codes: 0 success; 1 when at least one cell failed (its traceback is in results.csv);
2 for a usage or data error (one line on stderr, no traceback).
"""

from __future__ import annotations

import dataclasses
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
from paraeval.cli.option_types import DeviceOption, ExecutorOption, FormatOption
from paraeval.cli.printing import print_plan, print_summary
from paraeval.core.console import Format, configure, emit, status, stdout
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
        "defenses": defenses, "attacks": attacks,
        "seeds": _parse_seeds(seeds, seed), "n_images": n_images, "victim_seed": victim_seed,
        "seed_scope": seed_scope,
    }  # fmt: skip
    given = {
        "seeds" if name == "seed" else name
        for name in GRID_OPTIONS
        if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    }
    common = dict(
        out=out, data_dir=data_dir, allow_download=not no_download, retry_failed=retry_failed,
        jobs=jobs, command=_command(), dry_run=dry_run, verbose=verbose, executor=executor,
        model=model, weights=weights, dataset=dataset, device=device, attacked=attacked,
    )  # fmt: skip
    parts = load_grid(config) if config else (RunConfig(victims=grid["victims"]),)
    parts = override(parts, **{k: v for k, v in grid.items() if k in given or not config}, **common)
    if dry_run:
        print_plan([run(one, err_console) for part in parts for one in seed_runs(part)], verbose)
        return
    _check_writable(out)
    result = run_parts(parts, lambda part: run(part, err_console, write_interim))
    write_outputs(out, result.keys)
    print_summary(result, out, fmt, verbose)
    if result.failed:
        raise typer.Exit(1)


def _command() -> str:
    """The command line as typed, recorded with every run."""
    return " ".join(["paraeval", *sys.argv[1:]])


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to --out {out}: {exc.strerror or exc}") from None


@app.command("reproduce")
def reproduce_command(
    work: Annotated[Path, typer.Option(help="Run directory (resumable).")] = Path("runs/reproduce"),
    reports: Annotated[Path, typer.Option(help="Where the report is copied.")] = Path("reports"),
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the MNIST IDX files.")] = None,
    parts: Annotated[
        str | None, typer.Option(help="Run only these parts, e.g. '1' or '1,4' (default: all).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every part, count the cells; run nothing.")
    ] = False,
    executor: ExecutorOption = "local",
    device: DeviceOption = "auto",
    fmt: FormatOption = Format.auto,
) -> None:
    """The paper's full reproduction (Tables 1-3, 5 seeds, evasion and extraction attacks),
    copied into REPORTS (no weights)."""
    from paraeval.report.outputs import write_interim, write_outputs
    from paraeval.run.grid import seed_runs
    from paraeval.run.runner import run
    from paraeval.study.reproduce import REPRODUCTION, parse_parts, reproduce

    if dry_run:
        chosen = [REPRODUCTION[n - 1] for n in parse_parts(parts)]
        print_plan([run(dataclasses.replace(one, dry_run=True, device=device), err_console)
                    for part in chosen for one in seed_runs(part)])  # fmt: skip
        return
    _check_writable(work)
    result = reproduce(
        work, reports, parse_parts(parts), data_dir=data_dir, command=_command(),
        executor=executor, device=device, write_outputs=write_outputs,
        runner=lambda config: run(config, err_console, write_interim),
    )  # fmt: skip
    print_summary(result, work, fmt)
    err_console.print(f"copied the report and CSVs into {reports}/")
    if result.failed:
        raise typer.Exit(1)


@app.command("readings")
def readings_command(
    work: Annotated[Path, typer.Option(help="Run directory (resumable).")] = Path("runs/readings"),
    reports: Annotated[
        Path | None, typer.Option(help="Copy readings.csv and readings_rows.csv here.")
    ] = None,
    rows: Annotated[
        str, typer.Option(help="Paper rows (names, tags, globs).")
    ] = "table1,table2,table3",
    base: Annotated[str, typer.Option(help="Base reading, e.g. 'init=dirac'.")] = "default",
    readings: Annotated[
        str | None,
        typer.Option(help="Screen only these readings, ';'-separated ('default;init=dirac')."),
    ] = None,
    screen_seeds: Annotated[int, typer.Option(min=0, help="Seeds of the screen (0: none).")] = 1,
    confirm_seeds: Annotated[
        int,
        typer.Option(min=0, help="Seeds of the confirmation, after the screen's (0: none)."),
    ] = 5,
    seed_scope: Annotated[
        str,
        typer.Option(
            help="Confirmation seeds vary the whole pipeline (victims too) or only "
            "the parasites: pipeline|parasite."
        ),
    ] = "pipeline",
    combine: Annotated[bool, typer.Option(help="Combine the factors that matter.")] = True,
    merge: Annotated[
        bool,
        typer.Option(
            help="Keep the lines of an earlier study's readings.csv in --work that "
            "this one does not measure."
        ),
    ] = False,
    confirm: Annotated[
        str | None,
        typer.Option(help="Confirm only these readings, ';'-separated (default: chosen by data)."),
    ] = None,
    n_images: Annotated[int, typer.Option(help="First N test images attacked.")] = 200,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the MNIST IDX files.")] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="Parasite training processes.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the options, count the screen's cells.")
    ] = False,
    executor: ExecutorOption = "local",
    device: DeviceOption = "auto",
    fmt: FormatOption = Format.auto,
) -> None:
    """Measure how every reading of the paper's open choices moves its rows (readings.csv)."""
    import shutil

    from paraeval.run.runner import run
    from paraeval.study.readings import StudyConfig, parse_reading, screen_configs, study

    _check_writable(work)
    base_reading = parse_reading(base)
    config = StudyConfig(
        work=work,
        rows=rows,
        base=dict(base_reading.defense),
        readings=[parse_reading(r) for r in readings.split(";")] if readings else None,
        screen_seeds=list(range(screen_seeds)),
        confirm_seeds=list(range(screen_seeds, screen_seeds + confirm_seeds)),
        seed_scope=seed_scope,
        combine=combine,
        merge=merge,
        confirm=[parse_reading(r) for r in confirm.split(";")] if confirm else None,
        n_images=n_images,
        data_dir=data_dir,
        jobs=jobs,
        executor=executor,
        device=device,
        command=_command(),
    )
    if base_reading.attack or base_reading.scoring or base_reading.run:
        others = ", ".join(k for k, _ in (*base_reading.attack, *base_reading.scoring,
                                          *base_reading.run))  # fmt: skip
        raise UserError(f"--base takes defense options only; put {others} in a reading")
    if dry_run:
        configs = screen_configs(config)
        print_plan([run(dataclasses.replace(c, dry_run=True), err_console) for c in configs])
        return
    scores = study(config, lambda c: run(c, err_console))
    columns = ["stage", "reading", "seeds", "|d acc|", "|dM_adv|", "both in PI", "baseline",
               "fit ratio", "breaks victim", "rows"]  # fmt: skip
    keys = ["stage", "reading", "seeds", "mean_abs_diff_accuracy", "mean_abs_diff_m_adv",
            "rows_both_in_pi", "baseline_rows_both_in_pi", "median_fit_ratio", "breaks_victim",
            "rows"]  # fmt: skip
    lines = [score.line() for score in scores]
    printed = [[round(v, 2) if isinstance(v, float) else v for v in (line[k] for k in keys)]
               for line in lines]  # fmt: skip
    emit(console, columns, printed, fmt)
    if reports is not None:
        from paraeval.study.reproduce import READINGS_FILES

        reports.mkdir(parents=True, exist_ok=True)
        for name in READINGS_FILES:
            shutil.copy2(work / name, reports / name)
    console.print(f"wrote {work / 'readings.csv'} and {work / 'readings_rows.csv'}")


@app.command("report")
def report_command(
    directory: Annotated[Path, typer.Argument(help="A directory written by `paraeval run`.")],
) -> None:
    """Re-render the CSVs and report.html of DIRECTORY from its results.sqlite (no recompute)."""
    from paraeval.report.html import rerender

    console.print(f"wrote {rerender(directory)}")


app.command("list")(list_command)
app.command("inspect")(inspect_command)
app.command("bench")(bench_command)
app.command("cache")(cache_command)
app.command("store")(store_command)
app.command("protect")(protect_command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    from paraeval.core.allocator import keep_freed_memory
    from paraeval.core.interrupts import RESUME_LINE, Interrupted, install_handlers

    keep_freed_memory()
    install_handlers()
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        err_console.quiet = False  # errors print even with --quiet
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Interrupted as stop:
        err_console.quiet = False
        err_console.print(f"[yellow]{RESUME_LINE}[/]", highlight=False, soft_wrap=True)
        sys.exit(stop.status)
