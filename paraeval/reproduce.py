"""The paper study as data: what `paraeval reproduce` runs, and the reports folder it writes.

`paraeval readings` (the other study) is `paraeval.readings`; this module copies its CSVs into
the report so the report's Readings section shows them.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from .errors import UserError
from .outputs import write_outputs
from .runner import RunConfig, RunResult, run
from .store import Store
from .verdict import update_reports_readme

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


def reproduce(
    work: Path,
    reports: Path,
    parts: list[int],
    *,
    data_dir: Path | None = None,
    command: str = "",
    runner: Callable[[RunConfig], RunResult] = run,
) -> RunResult:
    """Run the chosen parts into WORK (resumable), write the outputs and copy them into
    REPORTS with its README; the result lists every part's cells."""
    for name in READINGS_FILES:  # the committed readings study gives the report its section
        if (reports / name).exists() and not (work / name).exists():
            shutil.copy2(reports / name, work / name)
    keys: list[str] = []
    result = RunResult()
    for part in (REPRODUCTION[number - 1] for number in parts):
        config = dataclasses.replace(
            part, out=work, data_dir=data_dir, command=command, earlier_cells=keys
        )
        result = runner(config)  # the last result lists every part's cells
        keys = result.keys
    write_outputs(work, keys)
    reports.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        shutil.copy2(work / name, reports / name)
    write_reports_readme(work, reports, parts)
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


def write_reports_readme(work: Path, reports: Path, chosen: list[int]) -> None:
    """reports/README.md: what ran, on what, when (from the store's run records)."""
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
