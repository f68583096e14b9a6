"""The companion papers' results from results.csv: Knockoff Nets per defense, the
query-stream detectors, and the sentences the verdict and the report state about them.

Everything here is read from the committed CSV columns of the `knockoff` and `query-streams`
cells (means over the seeds whose cell is ok); nothing is typed by hand. What is inferred from
Atli et al.'s abstract rather than read is said where the detector is defined
(:mod:`paraeval.defenses.detectors`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

KNOCKOFF = "knockoff"
STREAMS = "query-streams"
#: Columns of the Knockoff table (means over seeds).
KNOCKOFF_COLUMNS = (
    "fidelity_victim", "thief_accuracy", "queries", "l1_distortion", "accuracy",
    "latency_ratio", "queries_to_alarm", "fidelity_at_alarm",
)  # fmt: skip
#: Columns of the detector table (means over seeds).
DETECTOR_COLUMNS = (
    "tpr_digits", "tpr_noise", "tpr_evader", "fpr_benign",
    "alarmed_digits", "alarmed_noise", "alarmed_evader",
    "queries_to_alarm_digits", "queries_to_alarm_noise", "queries_to_alarm_evader",
)  # fmt: skip


def _cells(results: pd.DataFrame, attack: str) -> pd.DataFrame:
    """The ok cells of `attack` (any configuration of it)."""
    if results.empty:
        return results
    name = results["attack"].astype(str).str.split(":").str[0]
    return results[(results["status"] == "ok") & (name == attack)]


def _means(cells: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    present = [c for c in columns if c in cells.columns]
    grouped = cells.groupby(["victim", "defense", "attack"], sort=False)
    table = grouped[present].mean(numeric_only=True)
    table.insert(0, "seeds", grouped.size())
    return table.reset_index()


def knockoff_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (victim, defense, knockoff configuration): the largest budget's figures, and in how
    many seeds a detector raised the alarm (``alarmed``)."""
    cells = _cells(results, KNOCKOFF)
    table = _means(cells, KNOCKOFF_COLUMNS)
    if "queries_to_alarm" in cells.columns:
        grouped = cells.groupby(["victim", "defense", "attack"], sort=False)["queries_to_alarm"]
        table["alarmed"] = grouped.count().to_numpy()
    return table


def detector_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (victim, defense with a detector): the query-streams figures."""
    cells = _cells(results, STREAMS)
    if "tpr_digits" in cells.columns:
        cells = cells[cells["tpr_digits"].notna()]  # defenses without a detector: no figures
    return _means(cells, DETECTOR_COLUMNS)


def _pct(value: Any) -> str:
    return "–" if pd.isna(value) else f"{value:.1f} %"


def companion_sentences(results: pd.DataFrame) -> list[str]:
    """What the companion cells show, one sentence per finding (none without those cells)."""
    found: list[str] = []
    knockoff = knockoff_table(results)
    for record in knockoff[knockoff["defense"] == "none"].to_dict("records"):
        found.append(
            f"Knockoff Nets ({record['attack']}) against the undefended {record['victim']}: "
            f"fidelity {_pct(record['fidelity_victim'])} to the victim and thief accuracy "
            f"{_pct(record['thief_accuracy'])} after {record['queries']:.0f} queries "
            f"({record['seeds']} seed(s))."
        )
    found += _spread_sentence(knockoff)
    found += _seed_spread_sentence(results)
    for record in detector_table(results).to_dict("records"):
        found.append(
            f"Detector {record['defense']} ({record['victim']}): true-positive rate at 1 % "
            f"false-positive rate {_pct(record['tpr_digits'])} on digits-pool streams, "
            f"{_pct(record['tpr_noise'])} on noise streams, {_pct(record['tpr_evader'])} on "
            f"in-distribution (evading) streams; its own alarm on held-out benign streams "
            f"{_pct(record['fpr_benign'])} ({record['seeds']} seed(s))."
        )
    found += _evader_sentences(knockoff)
    return found


def _spread_sentence(knockoff: pd.DataFrame) -> list[str]:
    """How far the defenses move Knockoff's fidelity, per configuration."""
    found = []
    for attack, group in knockoff.groupby("attack", sort=False):
        defended = group[group["defense"] != "none"].dropna(subset=["fidelity_victim"])
        if defended.empty:
            continue
        low = defended.loc[defended["fidelity_victim"].idxmin()]
        high = defended.loc[defended["fidelity_victim"].idxmax()]
        if _pct(low["fidelity_victim"]) == _pct(high["fidelity_victim"]):
            names = ", ".join(defended["defense"])
            found.append(
                f"Under {names}, {attack} reaches the same fidelity, "
                f"{_pct(low['fidelity_victim'])}."
            )
            continue
        found.append(
            f"Under {len(defended)} defenses, {attack} reaches fidelity "
            f"{_pct(low['fidelity_victim'])} ({low['defense']}) to "
            f"{_pct(high['fidelity_victim'])} ({high['defense']})."
        )
    return found


def _seed_spread_sentence(results: pd.DataFrame) -> list[str]:
    """How much the undefended thief's fidelity varies between its own seeds: the scale a
    difference between defenses must exceed before it says anything about a defense."""
    cells = _cells(results, KNOCKOFF)
    found = []
    for attack, group in cells[cells["defense"] == "none"].groupby("attack", sort=False):
        fidelity = group["fidelity_victim"].dropna().astype(float)
        if len(fidelity) < 2:
            continue
        found.append(
            f"The undefended thief's fidelity ({attack}) varies between its {len(fidelity)} "
            f"seeds with SD {fidelity.std(ddof=1):.2f} pp ({fidelity.min():.1f}-"
            f"{fidelity.max():.1f} %): a difference between defenses' means smaller than that "
            "is within seed noise."
        )
    return found


def _evader_sentences(knockoff: pd.DataFrame) -> list[str]:
    """Against each detector: when Knockoff was caught and what it had stolen by then."""
    if "queries_to_alarm" not in knockoff.columns:
        return []
    found = []
    watched = knockoff.dropna(subset=["fidelity_at_alarm"])
    for record in watched.to_dict("records"):
        caught, alarmed = record["queries_to_alarm"], record["alarmed"]
        when = (
            f"raised the alarm in {alarmed} of {record['seeds']} seed(s), after {caught:.0f} "
            "queries on average"
            if alarmed
            else f"raised no alarm in {record['seeds']} seed(s)"
        )
        found.append(
            f"{record['attack']} against {record['defense']}: {when}; fidelity at the alarm "
            f"(or at the budget) {_pct(record['fidelity_at_alarm'])}."
        )
    return found
