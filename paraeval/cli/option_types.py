"""The command line's shared option types (`--format`, `--executor`, `--device`) and the
checks every command that runs shares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from paraeval.core.console import Format
from paraeval.errors import UserError

FormatOption = Annotated[
    Format,
    typer.Option(
        "--format", help="table (terminal), plain (pipes and files), csv or json; auto picks."
    ),
]


ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where groups of cells run: local, local:N (processes), dask, dask:N, "
        "dask:ADDRESS (needs paraeval[dask]).",
    ),
]


DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        help="Where the models compute: auto (CUDA when present), cpu or cuda.",
    ),
]


def command_line() -> str:
    """The command line as typed, recorded with every run."""
    return " ".join(["paraeval", *sys.argv[1:]])


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
