"""The verdict's sentences about the readings study (readings.csv, readings_rows.csv): which
readings train the paper's parasite, which break their victim, how the confirmed readings agree
with the paper beside the do-nothing baseline, and the measured seed noise. Generated, never
typed: :mod:`paraeval.study.verdict` assembles them with the reproduction's sentences.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from paraeval.defenses.parasite_reading import FRAMEWORK_DEFAULT
from paraeval.study.paper import BREAKS_VICTIM_PP, ROWS

DEFAULT = "default"


def _span(values: pd.Series) -> str:
    return f"{values.min():.1f}-{values.max():.1f}"


def has_only_no_bn_parasites(name: str) -> bool:
    """Whether paper row `name` inserts only parasites without BN."""
    row = next((r for r in ROWS if r.name == name), None)
    return row is not None and not any(spec.batch_norm for spec in row.parasites)


def truthy(value: Any) -> bool:
    """A flag read back from a CSV: True, 1, 1.0 or 'True' (a column with blanks is floats)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return value is True or str(value) in ("True", "1", "1.0")


def flags(column: pd.Series) -> pd.Series:
    """A CSV column of flags as booleans (blank: False)."""
    return column.map(truthy).astype(bool)


def _label(line: dict[str, Any]) -> str:
    """A reading's name with how it was measured (one name may be confirmed twice)."""
    return f"{line['reading']} ({line['seeds']} {line['seed_scope']} seed(s))"


def framework_name() -> str:
    """The framework default's name as readings.csv writes it (options differing from the
    code's defaults)."""
    from paraeval.study.reading_scores import absolute, parse_reading

    return absolute(parse_reading(FRAMEWORK_DEFAULT), {}).name


def readings_sentences(readings: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """Which findings hold under which readings (readings.csv, readings_rows.csv)."""
    if readings.empty:
        return []
    confirmed = readings[readings["stage"] == "confirm"]
    screen = readings[readings["stage"] == "screen"]
    sentences = [
        f"{readings['reading'].nunique()} readings of the paper's open choices were measured "
        f"({len(screen)} in the one-seed screen, "
        f"{int((readings['stage'] == 'combination').sum())} combinations, "
        f"{len(confirmed)} confirmations: "
        + ", ".join(
            f"{n} on {s} {scope} seeds"
            for (s, scope), n in confirmed.groupby(["seeds", "seed_scope"]).size().items()
        )
        + ")."
    ]
    sentences += _fit_sentences(confirmed if len(confirmed) else screen)
    sentences += _confirmed_sentences(confirmed)
    sentences += _noise_sentences(readings, screen)
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


def _fit_sentences(lines: pd.DataFrame) -> list[str]:
    """Rule 3 and the victim bound, per reading of the stage that has most seeds."""
    if lines.empty or "median_fit_ratio" not in lines:
        return []
    stage = lines["stage"].iloc[0]
    fits = lines[flags(lines["approximates_identity"])]
    others = lines[~flags(lines["approximates_identity"])]
    parts = [f"{_label(r)} {r['median_fit_ratio']:.2f}" for r in fits.to_dict("records")]
    found = [
        f"Readings whose parasites fit x + N better than the identity map as a rule (median "
        f"mse_to_target / identity_mse < 1; {stage} stage): "
        + ("; ".join(parts) if parts else "none")
        + (
            f"; the other {len(others)} lines: {others['median_fit_ratio'].min():.2f}-"
            f"{others['median_fit_ratio'].max():.2f}."
            if len(others)
            else "."
        )
    ]
    broken = lines[flags(lines["breaks_victim"])]
    found.append(
        f"Readings under which some row's protected accuracy falls more than "
        f"{BREAKS_VICTIM_PP:.0f} pp below its victim's ({stage} stage): "
        + (
            "; ".join(
                f"{_label(r)}: {r['rows_breaking_victim']} rows" for r in broken.to_dict("records")
            )
            or "none"
        )
        + f"; {len(lines) - len(broken)} of {len(lines)} lines break none."
    )
    return found


def _confirmed_sentences(confirmed: pd.DataFrame) -> list[str]:
    """Per seed scope (pipeline first): each confirmed reading's agreement beside its
    do-nothing baseline, the readings no other beats on both distances, and the closest."""
    found = []
    for scope in ("pipeline", "parasite"):
        lines = confirmed[confirmed["seed_scope"] == scope]
        if len(lines):
            found.append(_confirmed_sentence(lines, scope))
    return found


def _confirmed_sentence(lines: pd.DataFrame, scope: str) -> str:
    parts = [
        f"{r['reading']} {_n(r['rows_both_in_pi'])}/{r['rows']} "
        f"[{_n(r['baseline_rows_both_in_pi'])}; {_n(r['rows_both_in_ci_of_mean'])}; "
        f"{r['mean_abs_diff_accuracy']:.2f} / {r['mean_abs_diff_m_adv']:.1f} pp]"
        for r in lines.to_dict("records")
    ]
    front = lines[flags(lines["pareto"])]["reading"]
    eligible = lines[(flags(lines["approximates_identity"])) & (~flags(lines["breaks_victim"]))]
    closest = (
        " Closest on the combined distance among those that fit x + N better than the identity "
        f"and break no victim: {eligible.loc[eligible['combined_distance'].idxmin(), 'reading']}."
        if len(eligible)
        else " None of them both fits x + N better than the identity and breaks no victim."
    )
    seeds = int(lines["seeds"].max())
    return (
        f"Confirmed readings, {scope} seeds ({seeds}): rows with both paper values in the 95 % "
        "prediction interval for one run [do-nothing baseline; in the interval of the mean; "
        "mean |measured - paper| accuracy / M_adv]: "
        + "; ".join(parts)
        + f". Not dominated on both distances: {', '.join(front)}."
        + closest
    )


def _n(value: Any) -> str:
    """A count read back from a CSV column that also holds blanks (floats there)."""
    return "–" if pd.isna(value) else str(int(value))


def _noise_sentences(readings: pd.DataFrame, screen: pd.DataFrame) -> list[str]:
    """The measured seed noise, and the largest one-factor move of M_adv judged against it."""
    found = []
    noise = readings.dropna(subset=["noise_sd_m_adv"]) if "noise_sd_m_adv" in readings else None
    bound = math.nan
    if noise is not None and len(noise):
        line = noise.sort_values("seed_scope", key=lambda s: s != "pipeline").iloc[0]
        sd_acc, sd_m = line["noise_sd_accuracy"], line["noise_sd_m_adv"]
        bound = 1.96 * math.sqrt(2) * sd_m
        found.append(
            f"Seed-to-seed SD of a one-seed distance to the paper (the study's base on its "
            f"{line['seeds']} {line['seed_scope']} confirmation seeds): {sd_acc:.2f} pp accuracy, "
            f"{sd_m:.2f} pp M_adv; two one-seed readings differ beyond that noise (95 %) by "
            f"more than 1.96 x sqrt(2) x SD ({bound:.1f} pp of M_adv distance)."
        )
    base = _line(screen, DEFAULT)
    # one factor away from the code's default (named by one option): a reading screened from
    # another base names that base's options too and is compared with it, not with this one
    moved = screen[(screen["reading"] != DEFAULT) & (screen["reading"].str.count("=") == 1)]
    if base is not None and len(moved):
        shift = (moved["mean_m_adv"] - base["mean_m_adv"]).abs()
        top = moved.loc[shift.idxmax()]
        beyond = (
            ""
            if math.isnan(bound)
            else f": {'more' if shift.max() > bound else 'not more'} than the seed noise bound of "
            f"{bound:.1f} pp"
        )
        found.append(
            f"The one-factor reading that moves the rows' mean M_adv most is {top['reading']}: "
            f"{base['mean_m_adv']:.1f} % (default) -> {top['mean_m_adv']:.1f} % (mean accuracy "
            f"{base['mean_accuracy']:.2f} -> {top['mean_accuracy']:.2f} %; one seed){beyond}."
        )
    return found


def _failure_sentence(lines: pd.DataFrame) -> list[str]:
    """How many cells of each reading hold a parasite that failed to train (rule 3)."""
    if lines.empty:
        return []
    parts = [
        f"{_label(line)} {line['cells_with_failed_parasite']} of {line['rows'] * line['seeds']}"
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
    """The no-BN rows under the default beside the framework default, most seeds each."""
    if rows.empty:
        return []
    no_bn = rows[rows["row"].map(has_only_no_bn_parasites)]
    parts = []
    for reading in (DEFAULT, framework_name()):
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
        f"Rows without BN parasites, mean M_adv: {parts[0]} against the framework default "
        f"{parts[1]}."
    ]
