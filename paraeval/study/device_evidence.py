"""What a run of `scripts/gpu_checks.sh` on a GPU machine measured, in words generated from its
committed files (a folder such as reports/gpu-h200/): the GPU part of docs/performance.md and
of the README's Performance block.

The folder holds the script's outputs: ``bench.csv`` (`paraeval bench --rows bank --cold` on
the GPU machine), ``steps.csv`` (each step's command, time limit, exit status and wall time),
``gpu-tests.log`` (`pytest -m gpu`), ``table1-summary-{cpu,cuda}.csv`` (the Table 1 runs of
the GPU test, 5 seeds each), ``scaling-16-cores.log`` (a cold CPU run with 16 workers) and
``reproduce.log`` (``reproduce-partial.log`` when it was cut: each part's wall time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

#: the target for the cold Tables 1-3 x 5 seeds run on one H100, in seconds.
COLD_TARGET_H100_S = 90
#: the target for the whole `paraeval reproduce` on one H100, in seconds.
REPRODUCE_TARGET_H100_S = 10 * 60


@dataclass
class DeviceEvidence:
    """A device run's committed files (see the module docstring)."""

    folder: Path
    source: str

    @classmethod
    def read(cls, folder: Path | str) -> DeviceEvidence:
        return cls(Path(folder), Path(folder).as_posix())

    @cached_property
    def bench(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "bench.csv")

    @cached_property
    def steps(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "steps.csv")

    @cached_property
    def tests_log(self) -> str:
        return (self.folder / "gpu-tests.log").read_text()

    @cached_property
    def gpu(self) -> str:
        """The card, as the bench rows' device column names it."""
        found = re.search(r"cuda \(([^)]*)\)", str(self.bench["device"].iloc[0]))
        return found.group(1) if found else "a GPU"

    def last_step(self, name: str) -> dict[str, object] | None:
        rows = self.steps[self.steps["step"] == name]
        return None if rows.empty else rows.iloc[-1].to_dict()

    def test_outcome(self) -> str:
        """pytest's closing line (e.g. "1 failed, 2 passed in 73.72s")."""
        found = re.findall(r"=+ (.*(?:passed|failed).*?)(?: \(\d+:\d+:\d+\))? =+", self.tests_log)
        return found[-1] if found else "no result line"

    def failed_tests(self) -> list[str]:
        failed = re.findall(r"^FAILED \S+::(\w+)", self.tests_log, re.MULTILINE)
        return list(dict.fromkeys(failed))

    def part_times(self) -> list[tuple[int, int]]:
        """(part, seconds) of each `paraeval reproduce` part that ended, from its log's
        "part N of M done in S s" lines (reproduce.log, or reproduce-partial.log when cut)."""
        for name in ("reproduce.log", "reproduce-partial.log"):
            if (self.folder / name).exists():
                text = (self.folder / name).read_text()
                found = re.findall(r"^part (\d+) of \d+ done in (\d+) s", text, re.MULTILINE)
                return [(int(part), int(seconds)) for part, seconds in found]
        return []

    def table1(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        def read(device: str) -> pd.DataFrame:
            frame = pd.read_csv(self.folder / f"table1-summary-{device}.csv")
            return frame.set_index(["victim", "defense"])

        return read("cpu"), read("cuda")


def cold_lines(evidence: DeviceEvidence) -> list[str]:
    """The cold row measured on the GPU machine against the H100 target."""
    cold = evidence.bench[evidence.bench["name"] == "cold-tables-1-3"]
    if cold.empty:
        return []
    seconds = float(cold["candidate_s"].iloc[0])
    verdict = "met" if seconds <= COLD_TARGET_H100_S else "not met"
    card = evidence.gpu
    if "H100" not in card:
        card += " (not an H100: the same arithmetic with faster memory; no H100 was measured)"
    return [
        f"Cold Tables 1-3 x 5 seeds (FGSM, empty model cache, `--device auto` = cuda): "
        f"{seconds:.1f} s on one {card}; the target, {COLD_TARGET_H100_S} s on one "
        f"H100, is {verdict} on this card."
    ]


def bank_lines(evidence: DeviceEvidence) -> list[str]:
    rows = evidence.bench.set_index("name")
    if "parasite-bank-cuda" not in rows.index:
        return []
    gpu, cpu = rows.loc["parasite-bank-cuda"], rows.loc["parasite-bank-cpu"]
    count = int(str(gpu["size"]).split()[0])
    return [
        f"Parasites ({gpu['size']}): {count / gpu['candidate_s']:.1f} per second as one "
        f"bank on the {evidence.gpu} ({gpu['ratio']:.3f}x the time of training them one "
        f"at a time on one CPU thread, {count / gpu['baseline_s']:.2f} per second); as one "
        f"bank on one CPU thread of that machine: {cpu['ratio']:.2f}x (slower, as expected: "
        "said: banks are used on GPUs only)."
    ]


def table1_lines(evidence: DeviceEvidence) -> list[str]:
    """The GPU-vs-CPU Table 1 comparison: which 95 % intervals overlap."""
    cpu, gpu = evidence.table1()
    checks, apart = 0, []
    for metric in ("accuracy", "m_adv"):
        low, high = f"{metric}_ci_low", f"{metric}_ci_high"
        overlap = (gpu[low] <= cpu[high]) & (cpu[low] <= gpu[high])
        checks += len(overlap)
        mean = f"{metric}_mean"
        apart += [
            f"{metric} of {victim} {defense}: {cpu.loc[(victim, defense), mean]:.3f} on "
            f"the CPU, {gpu.loc[(victim, defense), mean]:.3f} on the GPU"
            for victim, defense in overlap[~overlap].index
        ]
    victims = cpu.groupby(level="victim")["victim_accuracy"].first()
    on_gpu = gpu.groupby(level="victim")["victim_accuracy"].first()
    trained = ", ".join(f"{v} {victims[v]:.2f} % vs {on_gpu[v]:.2f} %" for v in victims.index)
    line = (
        f"Table 1 (5 seeds, FGSM) on the CPU and on the GPU: {checks - len(apart)} of "
        f"{checks} 95 % intervals (accuracy and M_adv per row) overlap"
    )
    line += "." if not apart else f"; apart: {'; '.join(apart)}."
    if (victims != on_gpu).any():
        line += (
            f" Each side used its own victims (trained on its device; test accuracy "
            f"{trained}), a difference the parasite seeds' intervals do not cover."
        )
    return [line]


def scaling_lines(evidence: DeviceEvidence) -> list[str]:
    """The 16-worker cold CPU run, with where its time went (from its progress lines)."""
    step = evidence.last_step("scaling")
    log = evidence.folder / "scaling-16-cores.log"
    if step is None or not log.exists():
        return []
    text = log.read_text()
    finished = r"(training parasites|cells|training victims): \d+/\d+, (\d+) s, ETA 0 s"
    phases = {name: int(seconds) for name, seconds in re.findall(finished, text)}
    if "training victims" in phases:  # side by side, one bar (paraeval.run.dispatch)
        parts = [f"victims {phases.pop('training victims')} s side by side"]
    else:
        finals = re.findall(r"training victim (\S+): (\d+)/\2, (\d+) s", text)
        parts = [
            f"victims {' + '.join(f'{s} s ({n})' for n, _, s in finals)} one after the "
            "other (since then, missing victims train side by side)"
        ]
    parts += [f"{name} {seconds} s" for name, seconds in phases.items()]
    return [
        f"CPU scaling: Tables 1-3 x 1 seed (FGSM) cold with `--executor local:16 --device cpu`"
        f" on the {evidence.gpu} machine's 16 CPU cores: {step['wall_s']} s "
        f"({'; '.join(parts)})."
    ]


def reproduce_lines(evidence: DeviceEvidence) -> list[str]:
    step = evidence.last_step("reproduce")
    if step is None:
        return []
    parts = "".join(f" Part {part}: {seconds} s." for part, seconds in evidence.part_times())
    if int(str(step["rc"])) == 0:
        seconds = int(str(step["wall_s"]))
        verdict = "met" if seconds <= REPRODUCE_TARGET_H100_S else "not met"
        return [
            f"`paraeval reproduce --device cuda` on one {evidence.gpu}: {seconds} s; the "
            f"target, {REPRODUCE_TARGET_H100_S // 60} min on one H100, is {verdict} "
            f"on this card.{parts}"
        ]
    minutes = REPRODUCE_TARGET_H100_S // 60
    return [
        f"`paraeval reproduce --device cuda` was stopped at its {step['limit_s']} s limit "
        f"(exit {step['rc']}) before it finished (reproduce-partial.log: how far it got), "
        f"so the {minutes}-minute target is not shown.{parts}"
    ]


def heading_lines(evidence: DeviceEvidence) -> list[str]:
    """docs/performance.md's GPU section up to its table (paraeval.bench.page renders it)."""
    return [
        "",
        f"## On a GPU: {evidence.gpu}",
        "",
        f"From `{evidence.source}/` (`scripts/gpu_checks.sh` on the `device` machine: "
        f"{evidence.bench['device'].iloc[0]}).",
        "",
    ]


def finding_lines(evidence: DeviceEvidence) -> list[str]:
    """docs/performance.md's GPU section after its table: the tests and each finding."""
    failed = evidence.failed_tests()
    lines = [
        "",
        f"GPU tests (`pytest -m gpu tests/test_gpu.py`): {evidence.test_outcome()}"
        + (f" (failed: {', '.join(failed)})." if failed else "."),
        "",
    ]
    for said in (cold_lines, bank_lines, table1_lines, scaling_lines, reproduce_lines):
        lines += [f"- {line}" for line in said(evidence)]
    lines += [
        "",
        "Each step's command, limit, exit status and wall time: "
        f"`{evidence.source}/steps.csv`. Reproduce on a CUDA machine: "
        "`OUT=out bash scripts/gpu_checks.sh tests bench scaling reproduce`.",
    ]
    return lines


def readme_lines(evidence: DeviceEvidence) -> list[str]:
    """The README's GPU lines (the cold time, the GPU tests, reproduce)."""
    lines = [*cold_lines(evidence), *reproduce_lines(evidence), *scaling_lines(evidence)]
    lines.append(
        f"GPU tests on the {evidence.gpu}: {evidence.test_outcome()} "
        "(docs/performance.md says which and why)."
    )
    return [f"- {line}" for line in lines]
