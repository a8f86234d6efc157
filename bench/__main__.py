"""``python -m bench`` (or ``rentan bench``): one benchmark run, its figures printed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from bench.report import render
from bench.run import BenchOptions, run_bench
from core.logs import configure_logging


def main(
    size: Annotated[
        int, typer.Option(min=1, help="Workers in the cohort (default: the seed's 26,775).")
    ] = 26_775,
    probes: Annotated[
        int,
        typer.Option(min=20, help="Single verifications, bare updates and history reads sampled."),
    ] = 400,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object.")
    ] = False,
    keep: Annotated[
        Path | None, typer.Option(help="Keep the run's directory (logs, databases) here.")
    ] = None,
) -> None:
    """The cohort through the lifecycle on a fresh embedded stack, against the engine's floor."""
    configure_logging(level="WARNING", fmt="console")
    figures = asyncio.run(run_bench(BenchOptions(size=size, probes=probes, keep=keep)))
    typer.echo(json.dumps(figures, indent=2) if as_json else render(figures))


if __name__ == "__main__":
    typer.run(main)
