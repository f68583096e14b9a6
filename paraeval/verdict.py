"""The verdict paragraphs, generated from summary.csv and readings.csv (never typed by hand).

The report's Verdict section and the README's block between ``<!-- verdict -->`` and
``<!-- /verdict -->`` are both these sentences, so a sentence the data contradicts cannot
survive a regeneration. Regenerate the README block from the committed CSVs with::

    python -m paraeval.verdict README.md reports/

(``paraeval reproduce`` and ``paraeval readings --reports`` write the CSVs; a test checks
that the README block equals what this module generates from them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from .companions import companion_sentences
from .defenses.reading import PREVIOUS_DEFAULT
from .paper import PAPER_ATTACK, ROWS

BEGIN, END = "<!-- verdict -->", "<!-- /verdict -->"
#: "Within 1 pp" is reported beside "inside the 95 % interval".
CLOSE_PP = 1.0
DEFAULT = "default"


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


def summary_sentences(summary: pd.DataFrame) -> list[str]:
    """What the default reading's committed reproduction shows, row by row against the paper."""
    rows = _paper_rows(summary)
    if rows.empty:
        return ["No paper row has been measured yet."]
    seeds = int(rows["n_seeds"].max())
    inside = {m: rows[f"{m}_paper_in_ci"].astype(str) == "True" for m in ("accuracy", "m_adv")}
    in_ci = {m: int(mask.sum()) for m, mask in inside.items()}
    close = {m: int((rows[f"{m}_diff"].abs() <= CLOSE_PP).sum()) for m in ("accuracy", "m_adv")}
    both = int((inside["accuracy"] & inside["m_adv"]).sum())
    no_bn = rows[rows["defense"].map(_has_only_no_bn_parasites)]
    sentences = [
        f"Default reading, {seeds} seeds, {len(rows)} of {len(ROWS)} paper rows measured: the "
        f"paper's accuracy lies inside the measured 95 % interval for {in_ci['accuracy']} rows "
        f"(within {CLOSE_PP:.0f} pp for {close['accuracy']}), its M_adv for {in_ci['m_adv']} "
        f"(within {CLOSE_PP:.0f} pp for {close['m_adv']}); both for {both}.",
        f"Measured M_adv spans {_span(rows['m_adv_mean'])} % across the rows (paper: "
        f"{_span(rows['paper_m_adv'])} %), accuracy {_span(rows['accuracy_mean'])} % (paper: "
        f"{_span(rows['paper_accuracy'])} %); mean |measured - paper| is "
        f"{rows['accuracy_diff'].abs().mean():.2f} pp for accuracy and "
        f"{rows['m_adv_diff'].abs().mean():.1f} pp for M_adv.",
    ]
    if len(no_bn):
        sentences.append(
            f"Rows whose parasites have no BN ({len(no_bn)}): measured M_adv "
            f"{_span(no_bn['m_adv_mean'])} % (paper {_span(no_bn['paper_m_adv'])} %), accuracy "
            f"{_span(no_bn['accuracy_mean'])} % (paper {_span(no_bn['paper_accuracy'])} %)."
        )
    return sentences


def _has_only_no_bn_parasites(name: str) -> bool:
    row = next((r for r in ROWS if r.name == name), None)
    return row is not None and not any(spec.batch_norm for spec in row.parasites)


def readings_sentences(readings: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """Which findings hold under which readings (readings.csv, readings_rows.csv)."""
    if readings.empty:
        return []
    confirmed = readings[readings["stage"] == "confirm"]
    stage = confirmed if len(confirmed) else readings[readings["stage"] != "confirm"]
    default = _line(stage, DEFAULT)
    most = readings.sort_values("rows_both_in_ci", ascending=False).iloc[0]
    screen = readings[readings["stage"] == "screen"]
    sentences = [
        f"{readings['reading'].nunique()} readings of the paper's open choices were measured "
        f"({len(screen)} in the one-seed screen, "
        f"{int((readings['stage'] == 'combination').sum())} combinations, "
        f"{len(confirmed)} confirmed with more seeds)."
    ]
    if len(stage):
        best = stage.loc[stage["mean_abs_diff_m_adv"].idxmin()]
        kind = "confirmed" if len(confirmed) else "screened"
        sentences.append(
            f"Closest to the paper among the {kind} readings: {best['reading']} (mean "
            f"|measured - paper| M_adv {best['mean_abs_diff_m_adv']:.1f} pp over {best['seeds']} "
            f"seed(s); both values inside the interval for {best['rows_both_in_ci']} of "
            f"{best['rows']} rows)"
            + (
                f"; the default: {default['mean_abs_diff_m_adv']:.1f} pp and "
                f"{default['rows_both_in_ci']} rows."
                if default is not None and best["reading"] != DEFAULT else "."
            )
        )  # fmt: skip
    one_seed = readings[readings["stage"] != "confirm"]
    if len(confirmed) and len(one_seed):
        near = one_seed.loc[one_seed["mean_abs_diff_m_adv"].idxmin()]
        sentences.append(
            f"Closest among the one-seed readings (screen and combinations): {near['reading']} "
            f"({near['mean_abs_diff_m_adv']:.1f} pp, {near['stage']})."
        )
    sentences.append(
        f"No reading measured reproduces more than {most['rows_both_in_ci']} of "
        f"{most['rows']} rows with both values inside its interval ({most['reading']}, "
        f"{most['stage']}, {most['seeds']} seed(s), {most['interval']} interval)."
    )
    base = _line(screen, DEFAULT)
    moved = screen[screen["reading"] != DEFAULT]
    if base is not None and len(moved):
        shift = (moved["mean_m_adv"] - base["mean_m_adv"]).abs()
        top = moved.loc[shift.idxmax()]
        sentences.append(
            f"The one-factor reading that moves M_adv most is {top['reading']}: the rows' mean "
            f"M_adv goes from {base['mean_m_adv']:.1f} % (default) to {top['mean_m_adv']:.1f} % "
            f"(mean accuracy {base['mean_accuracy']:.2f} -> {top['mean_accuracy']:.2f} %), so "
            "the verdict on M_adv depends on that choice."
        )
    rho = readings.dropna(subset=["spearman_m_adv"])
    if len(rho):
        low, high = rho.loc[rho["spearman_m_adv"].idxmin()], rho.loc[rho["spearman_m_adv"].idxmax()]
        sentences.append(
            f"Rank correlation of measured with paper M_adv across rows: "
            f"{low['spearman_m_adv']:.2f} ({low['reading']}) to {high['spearman_m_adv']:.2f} "
            f"({high['reading']})."
        )
    sentences += _no_bn_init_sentence(rows)
    sentences += _failure_sentence(confirmed if len(confirmed) else screen)
    return sentences


def _failure_sentence(lines: pd.DataFrame) -> list[str]:
    """How many cells of each reading hold a parasite that failed to train (rule 3)."""
    if lines.empty:
        return []
    parts = [
        f"{line['reading']} {line['cells_with_failed_parasite']} of {line['rows'] * line['seeds']}"
        for line in lines.to_dict("records")
    ]
    return [
        "Cells holding a parasite that failed to train (NaN, held-out loss not decreasing or "
        f"all-zero output; {lines['stage'].iloc[0]} stage): " + ", ".join(parts) + "."
    ]


def _line(readings: pd.DataFrame, name: str) -> pd.Series | None:
    """The line of reading `name` with the most seeds (confirmation over screen)."""
    found = readings[readings["reading"] == name]
    return found.sort_values("seeds").iloc[-1] if len(found) else None


def _no_bn_init_sentence(rows: pd.DataFrame) -> list[str]:
    """The no-BN rows under the default init (torch) beside the identity init, most seeds."""
    if rows.empty:
        return []
    no_bn = rows[rows["row"].map(_has_only_no_bn_parasites)]
    parts = []
    for reading in (DEFAULT, PREVIOUS_DEFAULT):
        found = no_bn[no_bn["reading"] == reading]
        if found.empty:
            return []
        seeds = int(found["seeds"].max())
        chosen = found[found["seeds"] == seeds]
        parts.append(
            f"{reading} {chosen['m_adv_mean'].mean():.1f} % ({_span(chosen['m_adv_mean'])}, "
            f"{seeds} seed(s), paper {chosen['paper_m_adv'].mean():.1f} %)"
        )
    return [
        f"Rows without BN parasites, mean M_adv: {parts[0]} against the previous default "
        f"{parts[1]}."
    ]


def sentences(directory: Path) -> list[str]:
    """Every verdict sentence the CSVs in `directory` support."""
    found: list[str] = []
    if (directory / "summary.csv").exists():
        found += summary_sentences(pd.read_csv(directory / "summary.csv"))
    readings, rows = directory / "readings.csv", directory / "readings_rows.csv"
    if readings.exists() and rows.exists():
        found += readings_sentences(pd.read_csv(readings), pd.read_csv(rows))
    if (directory / "results.csv").exists():
        found += companion_sentences(pd.read_csv(directory / "results.csv"))
    return found


#: Sentences of the short verdict (README): the default's count, the readings' ceiling, the
#: no-BN rows under the two initialisations (each picked by how it starts).
SHORT = ("Default reading,", "No reading measured", "Rows without BN parasites, mean M_adv")


def short_sentences(directory: Path) -> list[str]:
    """The three sentences the project README shows (the rest: reports/README.md)."""
    found = sentences(directory)
    return [next(s for s in found if s.startswith(start)) for start in SHORT if any(
        s.startswith(start) for s in found)]  # fmt: skip


def readme_block(directory: Path, short: bool = True) -> str:
    """A verdict block, markers included: the short one (project README) or every sentence
    and the measured Tables 1-3 (reports/README.md)."""
    if short:
        lines = [f"- {s}" for s in short_sentences(directory)]
        lines.append(f"- Every finding, Tables 1-3 and the readings: [{directory.name}/README.md]"
                     f"({directory.name}/README.md), `{directory.name}/report.html`.")  # fmt: skip
        return "\n".join([BEGIN, *lines, END])
    lines = [f"- {sentence}" for sentence in sentences(directory)]
    table = results_table(pd.read_csv(directory / "summary.csv"))
    return "\n".join([BEGIN, *lines, "", *table, END])


def results_table(summary: pd.DataFrame) -> list[str]:
    """Markdown rows: each paper row (FGSM transfer), paper vs measured mean ± half-width;
    ✗ where the paper value lies outside the 95 % interval."""
    from .results import paper_outside, summary_interval

    rows = summary[(summary["attack"] == PAPER_ATTACK) & (summary["mode"] == "transfer")]
    rows = rows[rows["paper_accuracy"].notna()]
    lines = [
        "| row | victim | paper acc | accuracy | paper M_adv | M_adv |",
        "|---|---|---|---|---|---|",
    ]
    for record in rows.to_dict("records"):
        cells = [
            f"{m}{' ✗' if paper_outside(record, metric) else ''}"
            for metric, m in (("accuracy", summary_interval(record, "accuracy")),
                              ("m_adv", summary_interval(record, "m_adv")))
        ]  # fmt: skip
        lines.append(
            f"| {record['defense']} | {record['victim']} | {record['paper_accuracy']:.2f} | "
            f"{cells[0]} | {record['paper_m_adv']:.2f} | {cells[1]} |"
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


def update_reports_readme(directory: Path) -> None:
    """The full verdict and Tables 1-3 in DIRECTORY/README.md (what `reproduce` writes)."""
    reports_readme = directory / "README.md"
    if reports_readme.exists() and BEGIN not in reports_readme.read_text():
        reports_readme.write_text(
            reports_readme.read_text() + "\n## Verdict and Tables 1-3 (generated)\n\n"
            f"{BEGIN}\n{END}\n"
        )
    if reports_readme.exists():
        update_block(reports_readme, readme_block(directory, short=False))


def readme_block_of(readme: Path) -> str:
    text = readme.read_text()
    return text[text.index(BEGIN) : text.index(END) + len(END)]


if __name__ == "__main__":  # python -m paraeval.verdict README.md reports/
    update_readme(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"updated {sys.argv[1]} and {sys.argv[2]}README.md from {sys.argv[2]}")
