"""`paraeval reproduce` and `paraeval readings`: the paper study's commands."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from paraeval.cli.option_types import (
    DeviceOption,
    ExecutorOption,
    FormatOption,
    check_writable,
    command_line,
)
from paraeval.cli.printing import print_plan, print_summary
from paraeval.core.console import Format, emit, status, stdout
from paraeval.errors import UserError

console = stdout  # results
err_console = status  # notes, progress and status lines (stderr; --quiet, --log)


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
        print_plan(
            [
                run(dataclasses.replace(one, dry_run=True, device=device), err_console)
                for part in chosen
                for one in seed_runs(part)
            ]
        )
        return
    check_writable(work)
    result = reproduce(
        work,
        reports,
        parse_parts(parts),
        data_dir=data_dir,
        command=command_line(),
        executor=executor,
        device=device,
        write_outputs=write_outputs,
        runner=lambda config: run(config, err_console, write_interim),
    )
    print_summary(result, work, fmt)
    err_console.print(f"copied the report and CSVs into {reports}/")
    if result.failed:
        raise typer.Exit(1)


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

    check_writable(work)
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
        command=command_line(),
    )
    if base_reading.attack or base_reading.scoring or base_reading.run:
        others = ", ".join(
            k for k, _ in (*base_reading.attack, *base_reading.scoring, *base_reading.run)
        )
        raise UserError(f"--base takes defense options only; put {others} in a reading")
    if dry_run:
        configs = screen_configs(config)
        print_plan([run(dataclasses.replace(c, dry_run=True), err_console) for c in configs])
        return
    scores = study(config, lambda c: run(c, err_console))
    columns = [
        "stage",
        "reading",
        "seeds",
        "|d acc|",
        "|dM_adv|",
        "both in PI",
        "baseline",
        "fit ratio",
        "breaks victim",
        "rows",
    ]
    keys = [
        "stage",
        "reading",
        "seeds",
        "mean_abs_diff_accuracy",
        "mean_abs_diff_m_adv",
        "rows_both_in_pi",
        "baseline_rows_both_in_pi",
        "median_fit_ratio",
        "breaks_victim",
        "rows",
    ]
    lines = [score.line() for score in scores]
    printed = [
        [round(v, 2) if isinstance(v, float) else v for v in (line[k] for k in keys)]
        for line in lines
    ]
    emit(console, columns, printed, fmt)
    if reports is not None:
        from paraeval.study.reproduce import READINGS_FILES

        reports.mkdir(parents=True, exist_ok=True)
        for name in READINGS_FILES:
            shutil.copy2(work / name, reports / name)
    console.print(f"wrote {work / 'readings.csv'} and {work / 'readings_rows.csv'}")
