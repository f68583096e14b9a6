"""The verdict paragraphs, generated from summary.csv and readings.csv (never typed by hand).

The report's Verdict section and the README's block between ``<!-- verdict -->`` and
``<!-- /verdict -->`` are both these sentences, so a sentence the data contradicts cannot
survive a regeneration. Regenerate the README block from the committed CSVs with::

    python -m paraeval.study.verdict README.md reports/

(``paraeval reproduce`` and ``paraeval readings --reports`` write the CSVs; a test checks
that the README block equals what this module generates from them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from paraeval.run.results import do_nothing_inside, paper_inside
from paraeval.study.companions import companion_sentences
from paraeval.study.paper import BREAKS_VICTIM_PP, PAPER_ATTACK, ROWS
from paraeval.study.verdict_readings import (
    DEFAULT,
    has_only_no_bn_parasites,
    readings_sentences,
    truthy,
)

BEGIN, END = "<!-- verdict -->", "<!-- /verdict -->"
#: "Within 1 pp" is reported beside "inside the 95 % interval".
CLOSE_PP = 1.0


def _paper_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """summary.csv's FGSM-transfer lines of the paper rows (the default reading)."""
    names = {row.name for row in ROWS}
    rows = summary[
        summary["defense"].isin(names)
        & (summary["attack"] == PAPER_ATTACK)
        & (summary["mode"] == "transfer")
    ]
    return rows


def _span(values: pd.Series) -> str:
    return f"{values.min():.1f}-{values.max():.1f}"


def summary_sentences(summary: pd.DataFrame, label: str = "Default reading") -> list[str]:
    """What the default reading's committed reproduction shows, row by row against the paper,
    every count beside its do-nothing baseline (:func:`paraeval.run.results.do_nothing_inside`)."""
    rows = _paper_rows(summary)
    if rows.empty:
        return [
            "No paper row has been measured yet: the paper's rows are the FGSM-transfer "
            "cells of the table1, table2 and table3 defenses (`paraeval run --defenses "
            "table1,table2,table3 --attacks fgsm`)."
        ]
    seeds = int(rows["n_seeds"].max())
    victims = int(rows["n_victim_seeds"].max()) if "n_victim_seeds" in rows else 1
    drawn = "seeds on one victim" if victims == 1 else f"pipeline seeds ({victims} victims)"
    records = rows.to_dict("records")
    counts = {
        name: _counts(records, test)
        for name, test in (("measured", paper_inside), ("baseline", do_nothing_inside))
    }
    in_mean = _counts(records, lambda record, metric: paper_inside(record, metric, "ci"))
    close = int((rows["accuracy_diff"].abs() <= CLOSE_PP).sum())
    victim_close = int(((rows["victim_accuracy"] - rows["paper_accuracy"]).abs() <= CLOSE_PP).sum())
    drop = rows["victim_accuracy"] - rows["accuracy_mean"]
    broken = rows[drop > BREAKS_VICTIM_PP]
    measured, baseline = counts["measured"], counts["baseline"]
    sentences = [
        f"{label}, {seeds} {drawn}, {len(rows)} of {len(ROWS)} paper rows measured: "
        f"the paper's value lies inside the 95 % prediction interval for one run for "
        f"{measured[0]} rows (accuracy), {measured[1]} (M_adv), {measured[2]} (both); the "
        f"do-nothing baseline (the unprotected victim, accuracy and M_adv 0, judged with the "
        f"same half-widths) for {baseline[0]}, {baseline[1]}, {baseline[2]}. Inside the 95 % "
        f"interval of the mean: {in_mean[0]}, {in_mean[1]}, {in_mean[2]}.",
        f"Measured accuracy within {CLOSE_PP:.0f} pp of the paper's for {close} rows; the "
        f"unprotected victim's accuracy is within {CLOSE_PP:.0f} pp of it for {victim_close}.",
        f"Rows whose protected accuracy falls more than {BREAKS_VICTIM_PP:.0f} pp below their "
        f"victim's (mean over seeds): {len(broken)}"
        + (f" ({', '.join(broken['defense'])})." if len(broken) else "."),
        f"Measured M_adv spans {_span(rows['m_adv_mean'])} % across the rows (paper: "
        f"{_span(rows['paper_m_adv'])} %), accuracy {_span(rows['accuracy_mean'])} % (paper: "
        f"{_span(rows['paper_accuracy'])} %); mean |measured - paper| is "
        f"{rows['accuracy_diff'].abs().mean():.2f} pp for accuracy and "
        f"{rows['m_adv_diff'].abs().mean():.1f} pp for M_adv.",
    ]
    no_bn = rows[rows["defense"].map(has_only_no_bn_parasites)]
    if len(no_bn):
        sentences.append(
            f"Rows whose parasites have no BN ({len(no_bn)}): measured M_adv "
            f"{_span(no_bn['m_adv_mean'])} % (paper {_span(no_bn['paper_m_adv'])} %), accuracy "
            f"{_span(no_bn['accuracy_mean'])} % (paper {_span(no_bn['paper_accuracy'])} %)."
        )
    return sentences


def _counts(
    records: list[dict[str, Any]], test: Callable[[dict[str, Any], str], bool | None]
) -> tuple[int, int, int]:
    """Rows for which `test` holds: for accuracy, for M_adv, for both."""
    flags = [(test(r, "accuracy") is True, test(r, "m_adv") is True) for r in records]
    return (sum(a for a, _ in flags), sum(m for _, m in flags), sum(a and m for a, m in flags))


def sentences(directory: Path, label: str = "Default reading") -> list[str]:
    """Every verdict sentence the CSVs in `directory` support (`label` names the reading its
    summary.csv was measured under)."""
    found: list[str] = []
    if (directory / "summary.csv").exists():
        found += summary_sentences(pd.read_csv(directory / "summary.csv"), label)
    readings, rows = directory / "readings.csv", directory / "readings_rows.csv"
    if readings.exists() and rows.exists():
        found += readings_sentences(pd.read_csv(readings), pd.read_csv(rows))
    if (directory / "results.csv").exists():
        found += companion_sentences(pd.read_csv(directory / "results.csv"))
    return found


#: Sentences of the short verdict (README): the default's reproduction beside its baseline,
#: the fit rule, the confirmed readings on pipeline seeds (each picked by how it starts).
SHORT = ("Default reading,", "Readings whose parasites fit", "Confirmed readings, pipeline seeds")


def short_sentences(directory: Path) -> list[str]:
    """The three sentences the project README shows (the rest: reports/README.md)."""
    found = sentences(directory)
    return [
        next(s for s in found if s.startswith(start))
        for start in SHORT
        if any(s.startswith(start) for s in found)
    ]


def readme_block(directory: Path, short: bool = True, label: str = "Default reading") -> str:
    """A verdict block, markers included: the short one (project README) or every sentence
    and the measured Tables 1-3 (reports/README.md)."""
    if short:
        lines = [f"- {s}" for s in short_sentences(directory)]
        report = f", `{directory.name}/report.html`" if (directory / "report.html").exists() else ""
        lines.append(
            f"- Every finding, Tables 1-3 and the readings: [{directory.name}/README.md]"
            f"({directory.name}/README.md){report}."
        )
        return "\n".join([BEGIN, *lines, END])
    lines = [f"- {sentence}" for sentence in sentences(directory, label)]
    if (directory / "summary.csv").exists():
        table = results_table(pd.read_csv(directory / "summary.csv"))
    else:
        table = readings_table(pd.read_csv(directory / "readings_rows.csv"))
    return "\n".join([BEGIN, *lines, "", *table, END])


def results_table(summary: pd.DataFrame) -> list[str]:
    """Markdown rows: each paper row (FGSM transfer), paper vs measured mean ± half-width;
    ✗ where the paper value lies outside the 95 % interval."""
    from paraeval.run.results import paper_outside, summary_interval

    rows = summary[(summary["attack"] == PAPER_ATTACK) & (summary["mode"] == "transfer")]
    rows = rows[rows["paper_accuracy"].notna()]
    lines = [
        "| row | victim | paper acc | accuracy | paper M_adv | M_adv |",
        "|---|---|---|---|---|---|",
    ]
    for record in rows.to_dict("records"):
        cells = [
            f"{m}{' ✗' if paper_outside(record, metric) else ''}"
            for metric, m in (
                ("accuracy", summary_interval(record, "accuracy")),
                ("m_adv", summary_interval(record, "m_adv")),
            )
        ]
        lines.append(
            f"| {record['defense']} | {record['victim']} | {record['paper_accuracy']:.2f} | "
            f"{cells[0]} | {record['paper_m_adv']:.2f} | {cells[1]} |"
        )
    return lines


def readings_table(rows: pd.DataFrame, reading: str = DEFAULT) -> list[str]:
    """Markdown rows of Tables 1-3 from the readings study: `reading`'s confirmation (most
    seeds), paper vs measured mean [95 % prediction interval for one run] (clipped to
    [0, 100], so not always symmetric); ✗ where the paper value lies outside it."""
    found = rows[(rows["reading"] == reading) & (rows["stage"] == "confirm")]
    if found.empty:
        return []
    found = found[found["seeds"] == found["seeds"].max()]
    seeds, scope = int(found["seeds"].iloc[0]), found["seed_scope"].iloc[0]
    lines = [
        f"Tables 1-3 under `{reading}` ({seeds} {scope} seeds, readings_rows.csv):",
        "",
        "| row | victim | paper acc | accuracy | paper M_adv | M_adv |",
        "|---|---|---|---|---|---|",
    ]
    for r in found.to_dict("records"):
        cells = [
            f"{r[f'{m}_mean']:.2f} [{r[f'{m}_pi_low']:.2f}, {r[f'{m}_pi_high']:.2f}]"
            + ("" if truthy(r[f"{m}_in_pi"]) else " ✗")
            for m in ("accuracy", "m_adv")
        ]
        lines.append(
            f"| {r['row']} | {r['victim']} | {r['paper_accuracy']:.2f} | {cells[0]} | "
            f"{r['paper_m_adv']:.2f} | {cells[1]} |"
        )
    return lines


def update_block(path: Path, block: str) -> None:
    """Replace the block between the markers of `path` with `block`."""
    text = path.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    path.write_text(text[:start] + block + text[end:])


def update_readme(readme: Path, directory: Path) -> None:
    """The project README's short verdict, and the full one in DIRECTORY/README.md (appended
    there with its markers when missing)."""
    update_block(readme, readme_block(directory))
    update_reports_readme(directory)


def update_reports_readme(directory: Path, label: str = "Default reading") -> None:
    """The full verdict and Tables 1-3 in DIRECTORY/README.md (what `reproduce` writes);
    `label` names the reading its summary.csv was measured under."""
    reports_readme = directory / "README.md"
    if reports_readme.exists() and BEGIN not in reports_readme.read_text():
        reports_readme.write_text(
            reports_readme.read_text() + "\n## Verdict and Tables 1-3 (generated)\n\n"
            f"{BEGIN}\n{END}\n"
        )
    if reports_readme.exists():
        update_block(reports_readme, readme_block(directory, short=False, label=label))


def readme_block_of(readme: Path) -> str:
    text = readme.read_text()
    return text[text.index(BEGIN) : text.index(END) + len(END)]


#: The superseded reproduction kept beside the current reports, and the reading it ran under.
FRAMEWORK_FOLDER = (
    "framework-default",
    "Framework-default reading (init=torch, lr=1e-3, select=1)",
)


if __name__ == "__main__":  # python -m paraeval.study.verdict README.md reports/
    update_readme(Path(sys.argv[1]), Path(sys.argv[2]))
    folder, label = FRAMEWORK_FOLDER
    if (Path(sys.argv[2]) / folder / "summary.csv").exists():
        update_reports_readme(Path(sys.argv[2]) / folder, label)
    print(f"updated {sys.argv[1]} and {sys.argv[2]}README.md from {sys.argv[2]}")
