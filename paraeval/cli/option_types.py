"""The command line's shared option types (`--format`, `--executor`, `--device`)."""

from __future__ import annotations

from typing import Annotated

import typer

from paraeval.core.console import Format

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
