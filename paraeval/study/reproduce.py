"""The paper study as data: what `paraeval reproduce` runs, and the reports folder it writes.

`paraeval readings` (the other study) is `paraeval.study.readings`; this module copies its CSVs into
the report so the report's Readings section shows them.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from paraeval.errors import UserError
from paraeval.run.grid import load_grid, run_parts, seed_runs
from paraeval.run.runner import RunConfig, RunResult, run
from paraeval.run.store import Store
from paraeval.study.verdict import update_reports_readme


def reproduction() -> tuple[RunConfig, ...]:
    """The parts of `paraeval reproduce` (reproduce.toml beside this module, shipped with the
    package)."""
    source = resources.files("paraeval.study").joinpath("reproduce.toml")
    with resources.as_file(source) as path:
        return load_grid(path, "paraeval/study/reproduce.toml")


#: What `paraeval reproduce` runs, in parts (one report over all of them): the project's own
#: grid file, paraeval/study/reproduce.toml (each part explained there).
REPRODUCTION: tuple[RunConfig, ...] = reproduction()
#: What `paraeval readings` writes (and `reproduce` shows in the report's Readings section).
READINGS_FILES = ("readings.csv", "readings_rows.csv")
#: The files `reproduce` copies into REPORTS.
REPORT_FILES = (
    "report.html", "results.csv", "summary.csv", "prediction_change.csv", "extraction.csv"
)  # fmt: skip


def _part(
    number: int, work: Path, data_dir: Path | None, command: str, executor: str, device: str
) -> RunConfig:
    part = REPRODUCTION[number - 1]
    return dataclasses.replace(
        part, out=work, data_dir=data_dir, command=command, executor=executor, device=device
    )


def reproduce(
    work: Path,
    reports: Path,
    parts: list[int],
    *,
    data_dir: Path | None = None,
    command: str = "",
    executor: str = "local",
    device: str = "auto",
    write_outputs: Callable[[Path, list[str]], Path],
    runner: Callable[[RunConfig], RunResult] = run,
) -> RunResult:
    """Run the chosen parts into WORK (resumable), write the outputs (`write_outputs`, the
    report's :func:`paraeval.report.outputs.write_outputs`: the study does not render) and
    copy them into REPORTS with its README; the result lists every part's cells."""
    for name in READINGS_FILES:  # the committed readings study gives the report its section
        if (reports / name).exists() and not (work / name).exists():
            shutil.copy2(reports / name, work / name)
    chosen = [_part(number, work, data_dir, command, executor, device) for number in parts]
    result = run_parts(chosen, runner)
    write_outputs(work, result.keys)
    reports.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        shutil.copy2(work / name, reports / name)
    write_reports_readme(work, reports, parts, [len(seed_runs(part)) for part in chosen])
    if (reports / "summary.csv").exists():
        update_reports_readme(reports)
    return result


def parse_parts(parts: str | None) -> list[int]:
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


def write_reports_readme(work: Path, reports: Path, chosen: list[int], counts: list[int]) -> None:
    """reports/README.md: what ran, on what, when (from the store's run records; `counts` is
    each chosen part's number of runs: a part of pipeline seeds is one run per seed)."""
    with Store(work) as store:
        runs = store.runs()[-sum(counts) :]
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
    ends = list(itertools.accumulate(counts))
    for number, end, count in zip(chosen, ends, counts, strict=True):
        part_runs = runs[end - count : end]
        config = part_runs[0]["config"]
        seeds = [seed for run_record in part_runs for seed in run_record["config"]["seeds"]]
        scope = config.get("seed_scope", "parasite")
        lines.append(
            f"  {number}. victims {', '.join(config['victims'])}; defenses "
            f"`{config['defenses']}`; attacks `{config['attacks']}`; seeds {seeds} ({scope})"
        )
    lines += [
        "",
        "Open `report.html` in a browser; `summary.csv` has the per-row means, 95 % intervals",
        "and differences to the paper, `extraction.csv` the extraction attacks' measurements.",
        "Column meanings: docs/outputs.md.",
    ]
    if (reports / "readings.csv").exists():
        lines += [
            "",
            "`readings.csv` and `readings_rows.csv` come from `paraeval readings` (every reading",
            "of the paper's open choices; docs/readings.md); the report's Readings section shows",
            "them.",
        ]
    (reports / "README.md").write_text("\n".join(lines) + "\n")
