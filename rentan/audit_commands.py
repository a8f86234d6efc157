"""``rentan audit``: signed checkpoints of the audit chain, and checking the chain against one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from rentan.command_context import command_settings

audit_app = typer.Typer(
    help="The audit chain: signed checkpoints the Inspektorat keeps.", no_args_is_help=True
)


@audit_app.command("checkpoint")
def checkpoint(
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write it; a directory off the database host (default: var)."),
    ] = None,
    every: Annotated[
        float | None,
        typer.Option(min=1.0, help="Take one every this many seconds, until stopped."),
    ] = None,
) -> None:
    """Sign the chain's head (rows, last row, its hash, the time) into a new file."""
    from models.db import make_engine
    from services.audit_checkpoints import take, write

    settings = command_settings()
    directory = out or settings.data_dir / "audit-checkpoints"
    seed = settings.audit_signing_key_bytes()
    engine = make_engine(settings.resolved_database_url)
    try:
        while True:
            taken = take(engine, seed)
            path = write(taken, directory)
            typer.echo(f"{path}\t{taken.count:,} rows\thead {taken.head_hash[:16]}…")
            if every is None:
                return
            time.sleep(every)
    finally:
        engine.dispose()


@audit_app.command("public-key")
def public_key() -> None:
    """The key checkpoints are signed with: give it to the Inspektorat once, out of band."""
    from services.audit_checkpoints import public_key_of

    typer.echo(public_key_of(command_settings().audit_signing_key_bytes()))


@audit_app.command("verify")
def verify(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", exists=True, dir_okay=False)],
    trusted_key: Annotated[
        str | None,
        typer.Option("--public-key", help="The signing key pinned earlier (`audit public-key`)."),
    ] = None,
) -> None:
    """Check the whole chain, and that it still holds the checkpoint; exit 1 if not."""
    from models.db import make_engine
    from services.audit_checkpoints import CheckpointInvalid, read
    from services.audit_checkpoints import verify as check

    settings = command_settings()
    try:
        signed = read(checkpoint, trusted_key=trusted_key)
    except CheckpointInvalid as exc:
        typer.echo(f"rentan: {exc}", err=True)
        raise typer.Exit(1) from None
    engine = make_engine(settings.resolved_database_url)
    try:
        verdict = check(engine, signed)
    finally:
        engine.dispose()
    if not verdict.ok:
        typer.echo(f"BROKEN: {verdict.message}")
        raise typer.Exit(1)
    typer.echo(f"ok: {verdict.message}; {verdict.rows_since:,} rows added since")
