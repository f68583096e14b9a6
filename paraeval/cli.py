"""`paraeval run | list` - the command line.

Exit codes: 0 success; 1 when at least one cell failed (its traceback is in results.csv);
2 for a usage or data error (one line on stderr, no traceback).
"""

from __future__ import annotations

import dataclasses
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import registry
from .allocator import keep_freed_memory
from .errors import UserError
from .plugins import load_failures, load_plugins, plugin_distribution, pm
from .runner import RunConfig, RunResult, run

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Measure defenses against adversarial examples and model extraction.",
)
console = Console()
err_console = Console(stderr=True)


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


@app.command("run")
def run_command(
    victims: Annotated[
        str, typer.Option(help="Comma list of victims: vm, vm-batch.")
    ] = "vm,vm-batch",
    defenses: Annotated[
        str, typer.Option(help="Names, tags (table1..3, parasite), globs, 'all'.")
    ] = "none",
    attacks: Annotated[
        str, typer.Option(help="Attacks, with options: fgsm:backend=torchattacks.")
    ] = "fgsm",
    seeds: Annotated[int | None, typer.Option(help="Run seeds 0..N-1.")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="Run this seed (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/latest"),
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the MNIST IDX files.")] = None,
    n_images: Annotated[int, typer.Option(help="First N test images attacked (paper: 200).")] = 200,
    victim_seed: Annotated[int, typer.Option(help="Seed of the victims' training.")] = 0,
    no_download: Annotated[
        bool, typer.Option("--no-download", help="Never download MNIST.")
    ] = False,
    retry_failed: Annotated[bool, typer.Option(help="Recompute cells stored as failed.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Processes training parasites (default: one per core)."),
    ] = None,
) -> None:
    """Run the grid victims x defenses x seeds x attacks and write CSVs into OUT."""
    config = RunConfig(
        victims=_parse_list(victims, "--victims"),
        defenses=defenses,
        attacks=attacks,
        seeds=_parse_seeds(seeds, seed),
        out=out,
        data_dir=data_dir,
        n_images=n_images,
        victim_seed=victim_seed,
        allow_download=not no_download,
        retry_failed=retry_failed,
        jobs=jobs,
        command=" ".join(["paraeval", *sys.argv[1:]]),
    )
    _check_writable(out)
    result = run(config, err_console)
    _print_summary(result, out)
    if result.failed:
        raise typer.Exit(1)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to --out {out}: {exc.strerror or exc}") from None


def _interval(record: dict[str, object], metric: str) -> str:
    import math

    mean, low, high = (float(record[f"{metric}_{k}"]) for k in ("mean", "ci_low", "ci_high"))  # type: ignore[arg-type]
    if math.isnan(low):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {(high - low) / 2:.2f}"


def _paper(record: dict[str, object], metric: str, paper_column: str) -> str:
    import math

    paper = float(record[paper_column])  # type: ignore[arg-type]
    if math.isnan(paper):
        return ""
    outside = (
        record[f"{metric}_paper_in_ci"] is False or str(record[f"{metric}_paper_in_ci"]) == "False"
    )
    return f"{paper:.2f}{' ✗' if outside else ''}"


#: What the summary table shows in the M_adv column for an extraction attack.
EXTRACTION_HEADLINES = (("cp_precision", "cp precision"), ("fee_fidelity", "fee fidelity"))


def _headline(record: dict[str, object]) -> str:
    """M_adv (transfer), robust accuracy (adaptive) or the extraction attack's headline."""
    import math

    if record["mode"] == "adaptive":
        return f"robust acc {_interval(record, 'robust_accuracy')}"
    if record["mode"] == "extraction":
        for column, label in EXTRACTION_HEADLINES:
            value = record.get(f"{column}_mean")
            if value is not None and not math.isnan(float(value)):  # type: ignore[arg-type]
                return f"{label} {float(value):.3f}"  # type: ignore[arg-type]
        return "see extraction.csv"
    return _interval(record, "m_adv")


def _print_summary(result: RunResult, out: Path) -> None:
    """Per (victim, defense, attack): mean ± 95 % CI half-width beside the paper value."""
    import pandas as pd

    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}")
    summary = pd.read_csv(out / "summary.csv")
    table = Table(title=f"summary ({out / 'summary.csv'}); ✗ = paper value outside the 95 % CI")
    for column in ("victim", "defense", "attack", "seeds", "accuracy", "paper", "M_adv", "paper"):
        table.add_column(column, no_wrap=column in ("defense",))
    for record in summary.to_dict("records"):
        adaptive = record["mode"] == "adaptive"
        attack = f"{record['attack']}{' (adaptive)' if adaptive else ''}"
        m_adv = _headline(record)
        table.add_row(
            str(record["victim"]), str(record["defense"]), attack, str(record["n_seeds"]),
            _interval(record, "accuracy"), _paper(record, "accuracy", "paper_accuracy"),
            m_adv, _paper(record, "m_adv", "paper_m_adv"),
        )  # fmt: skip
    console.print(table)
    ok = sum(row["status"] == "ok" for row in result.rows)
    console.print(
        f"{ok} cell(s) ok, {result.failed} failed ({result.reused} reused from the store). "
        f"Results in {out}/results.csv, report in {out}/report.html"
    )


#: What `paraeval reproduce` runs, in parts (one report over all of them):
#: 1. the paper's experiment: Tables 1-3 with FGSM (transfer), 5 seeds, the default reading;
#: 2. the same rows and `dynamic-parasite` with every evasion attack, 5 seeds (part 1's cells
#:    are reused);
#: 3. critical-point extraction under the Table 1 and Table 2 parasites (the question the
#:    paper leaves open), at a reduced but equal query budget per defense: 5 seeds for the
#:    baseline and Table 1, 1 seed for Table 2 (its whole-layer parasites make every float64
#:    query ~20x dearer: ~1 min per cell on 2 cores);
#: 4. functionally-equivalent extraction of the `mlp` victim, plain and with its parasites,
#:    3 seeds, and ART's implementation on the plain MLP (1 seed: it costs ~1 M queries).
CRITICAL_POINTS = "critical-points:budget=5000,normals=4"
PAPER_GRID = RunConfig(
    victims=["vm", "vm-batch"], defenses="none,table1,table2,table3", attacks="fgsm",
    seeds=list(range(5)),
)  # fmt: skip
REPRODUCTION: tuple[RunConfig, ...] = (
    PAPER_GRID,
    dataclasses.replace(
        PAPER_GRID, defenses=f"{PAPER_GRID.defenses},dynamic-parasite", attacks="fgsm,pgd,deepfool"
    ),
    RunConfig(
        victims=["vm", "vm-batch"],
        defenses="none,table1",
        attacks=CRITICAL_POINTS,
        seeds=list(range(5)),
    ),
    RunConfig(victims=["vm-batch"], defenses="table2", attacks=CRITICAL_POINTS, seeds=[0]),
    RunConfig(victims=["mlp"], defenses="none,mlp", attacks="fee", seeds=list(range(3))),
    RunConfig(victims=["mlp"], defenses="none", attacks="fee:backend=art", seeds=[0]),
)
#: What `paraeval readings` writes (and `reproduce` shows in the report's Readings section).
READINGS_FILES = ("readings.csv", "readings_rows.csv")
#: The files `reproduce` copies into REPORTS.
REPORT_FILES = (
    "report.html", "results.csv", "summary.csv", "prediction_change.csv", "extraction.csv"
)  # fmt: skip


@app.command("reproduce")
def reproduce_command(
    work: Annotated[Path, typer.Option(help="Run directory (resumable).")] = Path("runs/reproduce"),
    reports: Annotated[Path, typer.Option(help="Where the report is copied.")] = Path("reports"),
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the MNIST IDX files.")] = None,
    parts: Annotated[
        str | None, typer.Option(help="Run only these parts, e.g. '1' or '1,4' (default: all).")
    ] = None,
) -> None:
    """The paper's full reproduction (Tables 1-3, 5 seeds, evasion and extraction attacks),
    copied into REPORTS (no weights)."""
    import shutil

    _check_writable(work)
    chosen = _parse_parts(parts)
    for name in READINGS_FILES:  # the committed readings study gives the report its section
        if (reports / name).exists() and not (work / name).exists():
            shutil.copy2(reports / name, work / name)
    command = " ".join(["paraeval", *sys.argv[1:]])
    keys: list[str] = []
    for part in (REPRODUCTION[number - 1] for number in chosen):
        config = dataclasses.replace(
            part, out=work, data_dir=data_dir, command=command, earlier_cells=keys
        )
        result = run(config, err_console)  # the last result lists every part's cells
        keys = result.keys
    reports.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        shutil.copy2(work / name, reports / name)
    _write_reports_readme(work, reports, chosen)
    _print_summary(result, work)
    console.print(f"copied the report and CSVs into {reports}/")
    if result.failed:
        raise typer.Exit(1)


def _parse_parts(parts: str | None) -> list[int]:
    """'1,4' -> [1, 4]; None -> every part. Unknown parts are a usage error."""
    if parts is None:
        return list(range(1, len(REPRODUCTION) + 1))
    try:
        chosen = sorted({int(p) for p in parts.split(",") if p.strip()})
    except ValueError:
        chosen = []
    if not chosen or not all(1 <= p <= len(REPRODUCTION) for p in chosen):
        raise UserError(f"--parts takes numbers in 1..{len(REPRODUCTION)}, e.g. '1,4'")
    return chosen


def _write_reports_readme(work: Path, reports: Path, chosen: list[int]) -> None:
    """reports/README.md: what ran, on what, when (from the store's run records)."""
    from .store import Store

    with Store(work) as store:
        runs = store.runs()[-len(chosen) :]
    last = runs[-1]
    versions = last["versions"]
    lines = [
        "# The committed reproduction",
        "",
        "Output of `paraeval reproduce` (HTML report and CSVs; no weights). Regenerate with:",
        "",
        "```bash",
        ".venv/bin/paraeval reproduce",
        "```",
        "",
        f"- command: `{last['command']}`",
        f"- finished: {last['finished']} (UTC); wall time of this invocation: "
        f"{sum(float(r['wall_seconds'] or 0) for r in runs):.0f} s over {len(runs)} parts "
        "(cells stored by earlier invocations are reused)",
        f"- machine: {versions.get('platform')}, {versions.get('device')}",
        f"- versions: paraeval {versions.get('paraeval')} (commit {versions.get('git_commit')}), "
        f"torch {versions.get('torch')}, ART {versions.get('art')}, "
        f"torchattacks {versions.get('torchattacks')}, python {versions.get('python')}",
        f"- first {last['config']['n_images']} test images attacked; the parts:",
        "",
    ]
    if len(chosen) < len(REPRODUCTION):
        missing = [str(p) for p in range(1, len(REPRODUCTION) + 1) if p not in chosen]
        lines += [
            f"  Only parts {', '.join(map(str, chosen))} of {len(REPRODUCTION)} ran "
            f"(`--parts`); parts {', '.join(missing)} are not in these files.",
            "",
        ]
    for number, run_record in zip(chosen, runs, strict=True):
        config = run_record["config"]
        lines.append(
            f"  {number}. victims {', '.join(config['victims'])}; defenses "
            f"`{config['defenses']}`; attacks `{config['attacks']}`; seeds {config['seeds']}"
        )
    lines += [
        "",
        "Open `report.html` in a browser; `summary.csv` has the per-row means, 95 % intervals",
        "and differences to the paper, `extraction.csv` the extraction attacks' measurements.",
        "Column meanings: the project README, section Outputs.",
    ]
    if (reports / "readings.csv").exists():
        lines += [
            "",
            "`readings.csv` and `readings_rows.csv` come from `paraeval readings` (every reading",
            "of the paper's open choices; docs/readings.md); the report's Readings section shows",
            "them.",
        ]
    (reports / "README.md").write_text("\n".join(lines) + "\n")


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
    screen_seeds: Annotated[int, typer.Option(min=1, help="Seeds of the screen.")] = 1,
    confirm_seeds: Annotated[
        int, typer.Option(min=0, help="Seeds of the confirmation (0: no confirmation).")
    ] = 5,
    combine: Annotated[bool, typer.Option(help="Combine the factors that matter.")] = True,
    confirm: Annotated[
        str | None,
        typer.Option(help="Confirm only these readings, ';'-separated (default: chosen by data)."),
    ] = None,
    n_images: Annotated[int, typer.Option(help="First N test images attacked.")] = 200,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the MNIST IDX files.")] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="Parasite training processes.")] = None,
) -> None:
    """Measure how every reading of the paper's open choices moves its rows (readings.csv)."""
    import shutil

    from .readings import StudyConfig, parse_reading, study

    _check_writable(work)
    base_reading = parse_reading(base)
    config = StudyConfig(
        work=work,
        rows=rows,
        base=dict(base_reading.defense),
        readings=[parse_reading(r) for r in readings.split(";")] if readings else None,
        screen_seeds=list(range(screen_seeds)),
        confirm_seeds=list(range(confirm_seeds)) if confirm_seeds else [],
        combine=combine,
        confirm=[parse_reading(r) for r in confirm.split(";")] if confirm else None,
        n_images=n_images,
        data_dir=data_dir,
        jobs=jobs,
        command=" ".join(["paraeval", *sys.argv[1:]]),
    )
    if base_reading.attack:
        raise UserError("--base takes defense options only; put eps_unit in a reading")
    scores = study(config, lambda c: run(c, err_console))
    for score in scores:
        line = score.line()
        console.print(
            f"{line['stage']:<12} {line['reading']:<40} seeds {line['seeds']}  "
            f"|dM_adv| {line['mean_abs_diff_m_adv']:6.2f}  rows in CI (acc/M_adv/both) "
            f"{line['rows_accuracy_in_ci']}/{line['rows_m_adv_in_ci']}/{line['rows_both_in_ci']}"
            f" of {line['rows']}",
            highlight=False,
            soft_wrap=True,
        )
    if reports is not None:
        reports.mkdir(parents=True, exist_ok=True)
        for name in READINGS_FILES:
            shutil.copy2(work / name, reports / name)
    console.print(f"wrote {work / 'readings.csv'} and {work / 'readings_rows.csv'}")


@app.command("report")
def report_command(
    directory: Annotated[Path, typer.Argument(help="A directory written by `paraeval run`.")],
) -> None:
    """Re-render the CSVs and report.html of DIRECTORY from its results.sqlite (no recompute)."""
    from .report.html import rerender

    console.print(f"wrote {rerender(directory)}")


class ListWhat(StrEnum):
    defenses = "defenses"
    attacks = "attacks"
    plugins = "plugins"
    victims = "victims"


@app.command("list")
def list_command(
    what: Annotated[ListWhat, typer.Argument()] = ListWhat.defenses,
    options: Annotated[
        bool, typer.Option("--options", help="List the options (readings) with their values.")
    ] = False,
) -> None:
    """List registered defenses, attacks, plugins or victims (--options: their options)."""
    table = Table(show_lines=False)
    if options and what in (ListWhat.defenses, ListWhat.attacks):
        _options_table(table, what)
    elif what in (ListWhat.defenses, ListWhat.attacks):
        reg = registry.defenses() if what is ListWhat.defenses else registry.attacks()
        for column in ("name", "plugin", "tags", "description"):
            table.add_column(column, overflow="fold")
        for entry in reg.entries.values():
            table.add_row(entry.name, entry.provider, ",".join(entry.tags), entry.obj.description)
    elif what is ListWhat.plugins:
        load_plugins()
        table.add_column("plugin")
        table.add_column("distribution")
        table.add_column("status")
        for name, plugin in pm.list_name_plugin():
            table.add_row(name, plugin_distribution(plugin), "loaded")
        for failure in load_failures:
            last = failure.error.strip().splitlines()[-1]
            table.add_row(failure.name, "", f"failed to import: {last}")
    else:
        from .models.victims import PAPER_VICTIM_ACCURACY, VICTIM_ARCHITECTURES

        table.add_column("victim")
        table.add_column("paper accuracy (%)")
        for name in VICTIM_ARCHITECTURES:
            table.add_row(name, str(PAPER_VICTIM_ACCURACY.get(name, "")))
    console.print(table)


def _options_table(table: Table, what: ListWhat) -> None:
    """Every option: the paper-row readings (defenses) or each attack's declared options."""
    for column in ("applies to", "option", "values", "default", "what it decides / paper"):
        table.add_column(column, overflow="fold")
    if what is ListWhat.defenses:
        from .defenses.reading import option_rows

        for row in option_rows():
            paper = f"{row['question']}. Paper: {row['paper']}. Default: {row['rule']}"
            table.add_row("table1-3, dynamic-parasite", row["option"], row["values"],
                          row["default"], paper)  # fmt: skip
        return
    for entry in registry.attacks().entries.values():
        for name, option in getattr(entry.obj, "declared", {}).items():
            table.add_row(entry.name, name, option.requirement or "", str(option.default),
                          option.help)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    keep_freed_memory()
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
