"""Print the measured-vs-paper table (markdown) from one or more summary.csv files.

    python scripts/results_table.py reports/summary.csv [runs/training-stats/summary.csv ...]

Each file adds an accuracy and an M_adv column (FGSM transfer rows, the paper's setting); the
first file's order of rows is kept. Then the verdict counts per file: paper value inside the
95 % interval, and within 1 percentage point of the mean.
"""

from __future__ import annotations

import sys

import pandas as pd

from paraeval.run.results import paper_outside, summary_interval

CLOSE_PP = 1.0


def cell(record: pd.Series, metric: str) -> str:
    return summary_interval(record, metric) + (" ✗" if paper_outside(record, metric) else "")


def main(paths: list[str]) -> None:
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        frame = frame[(frame["attack"] == "fgsm") & (frame["mode"] == "transfer")]
        frames.append(frame.set_index(["victim", "defense"]))
    header = ["defense", "victim", "paper acc"]
    header += [f"acc ({i + 1})" for i in range(len(frames))] + ["paper M_adv"]
    header += [f"M_adv ({i + 1})" for i in range(len(frames))]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (victim, defense), first in frames[0].iterrows():
        rows = [f.loc[(victim, defense)] if (victim, defense) in f.index else None for f in frames]
        paper_acc = "" if pd.isna(first["paper_accuracy"]) else f"{first['paper_accuracy']:.2f}"
        paper_m = "" if pd.isna(first["paper_m_adv"]) else f"{first['paper_m_adv']:.1f}"
        accs = [cell(r, "accuracy") if r is not None else "" for r in rows]
        m_advs = [cell(r, "m_adv") if r is not None else "" for r in rows]
        print(
            f"| {defense} | {victim} | {paper_acc} | "
            + " | ".join(accs)
            + f" | {paper_m} | "
            + " | ".join(m_advs)
            + " |"
        )
    for index, frame in enumerate(frames, start=1):
        paper = frame[frame["paper_accuracy"].notna()]
        counts = []
        for metric in ("accuracy", "m_adv"):
            inside = int((paper[f"{metric}_paper_in_ci"].astype(str) == "True").sum())
            close = int((paper[f"{metric}_diff"].abs() <= CLOSE_PP).sum())
            counts.append(f"{metric}: inside CI {inside}, within 1 pp {close}")
        print(f"\n({index}) {len(paper)} paper rows; " + "; ".join(counts))


if __name__ == "__main__":
    main(sys.argv[1:])
