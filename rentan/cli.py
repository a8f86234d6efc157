"""The ``rentan`` command line: the embedded stack, its components one by one, operator tools."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from core.logs import get_logger
from rentan.audit_commands import audit_app
from rentan.command_context import command_settings

app = typer.Typer(
    help="rentan: BPJS Ketenagakerjaan enrollment workflows for vulnerable village workers.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="The application database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(
    help="API keys: one per person or system, each with one role.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")


_settings = command_settings


@app.command()
def up(
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Leave the worker out; run workers apart.")
    ] = False,
    demo: Annotated[
        bool, typer.Option("--demo", help="Once ready, run `rentan demo` against the stack.")
    ] = False,
    demo_size: Annotated[int, typer.Option(help="Cohort size for --demo.")] = 500,
) -> None:
    """Run the embedded stack in the foreground: Temporal dev server, worker, API, BPJS sim."""
    from rentan.stack import StackError, run_stack

    settings = _settings()
    after_ready = None
    if demo:
        if no_worker:
            typer.echo("rentan: --demo needs a worker; drop --no-worker", err=True)
            raise typer.Exit(2)

        async def after_ready() -> None:
            from rentan.demo import run_demo

            await run_demo(settings, size=demo_size)
            typer.echo(
                "The stack keeps running (API :8000/docs, Temporal UI :8233); Ctrl-C stops it."
            )

    try:
        code = asyncio.run(run_stack(settings, with_worker=not no_worker, after_ready=after_ready))
    except StackError as exc:  # refused before anything started (data dir, ports)
        typer.echo(f"rentan: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def worker() -> None:
    """Run one worker process against the configured Temporal (many may run at once)."""
    from worker import run_worker, run_worker_loop

    settings = _settings()
    run_worker_loop(run_worker(settings))


@app.command()
def api() -> None:
    """Run the HTTP API (uvicorn) on RENTAN_API_HOST:RENTAN_API_PORT."""
    import uvicorn

    from api.app import create_app
    from core import heap

    settings = _settings()
    app = create_app(settings)
    # The app is built: what start-up allocated is walked no more. What uvicorn, the lifespan
    # and the requests add is left to the collector (22,000-29,000 objects when measured).
    heap.settle()
    heap.watch_pauses()
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep the structlog configuration
        access_log=False,
    )


@app.command()
def temporal() -> None:
    """Run the Temporal dev server alone, as `rentan up` configures it."""
    import os

    from rentan.stack import temporal_dev_server_argv

    settings = _settings()
    argv = temporal_dev_server_argv(settings)
    os.execv(argv[0], argv)


@app.command("bpjs-sim")
def bpjs_sim(
    fault_rate: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Share of requests answered 503 (overrides env)."),
    ] = None,
    timeout_rate: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Share of requests that time out (504)."),
    ] = None,
    throttle_rate: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Share of requests answered 429 with Retry-After."),
    ] = None,
    latency_ms: Annotated[
        int | None, typer.Option(min=0, help="Latency added to every participant request.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the fault draws, for reproducible runs.")
    ] = None,
) -> None:
    """Run the BPJS Ketenagakerjaan simulator on the port of RENTAN_BPJS_BASE_URL.

    Fault knobs come from RENTAN_BPJS_SIM_* (see bpjs_sim/settings.py); the options override
    them. They can also be changed at runtime with PUT /v1/faults.
    """
    import uvicorn

    from bpjs_sim.sim_config import SimConfig
    from bpjs_sim.simulator import create_app

    settings = _settings()
    given = {
        "fault_rate": fault_rate,
        "timeout_rate": timeout_rate,
        "throttle_rate": throttle_rate,
        "latency_ms": latency_ms,
        "seed": seed,
    }
    # The environment first, then what the options say, validated together.
    overrides = {k: v for k, v in given.items() if v is not None}
    config = SimConfig.model_validate({**SimConfig().model_dump(), **overrides})
    uvicorn.run(
        create_app(config),
        host=settings.bpjs_sim_host,
        port=settings.bpjs_port,
        log_config=None,
        access_log=False,
    )


@app.command()
def demo(
    size: Annotated[int, typer.Option(help="Workers in the synthetic cohort.")] = 500,
    period_start: Annotated[
        str | None,
        typer.Option(help="First day of the program period (YYYY-MM-DD); default this month's."),
    ] = None,
) -> None:
    """Run a Muara Enim-shaped cohort through the lifecycle on a running stack (`rentan up`)."""
    import datetime as dt

    from rentan.demo import run_demo

    settings = _settings()
    start = None
    if period_start is not None:
        try:
            start = dt.date.fromisoformat(period_start)
        except ValueError:
            typer.echo(
                f"rentan: --period-start {period_start!r} is not a YYYY-MM-DD date", err=True
            )
            raise typer.Exit(2) from None
    ok = asyncio.run(run_demo(settings, size=size, period_start=start))
    raise typer.Exit(0 if ok else 1)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """The benchmark (a development checkout's bench/): `rentan bench --help` for its options."""
    import importlib.util
    import os
    import sys

    # A program of its own, run as one: the benchmark sits above the application it measures.
    if importlib.util.find_spec("bench") is None:
        typer.echo(
            "rentan: the benchmark ships with a development checkout, not this install", err=True
        )
        raise typer.Exit(2)
    os.execv(sys.executable, [sys.executable, "-m", "bench", *ctx.args])


@app.command()
def backup(
    to: Annotated[Path, typer.Option("--to", help="A new directory for the backup.")],
) -> None:
    """Back up the stopped embedded stack: Temporal and the projection, as one pair."""
    from rentan.backup import backup as take_backup
    from rentan.stack import StackError

    try:
        manifest = take_backup(_settings(), to)
    except StackError as exc:
        typer.echo(f"rentan: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"backed up {', '.join(manifest.files)} into {to} ({manifest.taken_at})")


@app.command()
def restore(
    source: Annotated[Path, typer.Option("--from", help="A directory `rentan backup` wrote.")],
) -> None:
    """Restore a backup into the stopped embedded stack (then: up, reconcile --check)."""
    from rentan.backup import restore as put_back
    from rentan.stack import StackError

    try:
        manifest = put_back(_settings(), source)
    except StackError as exc:
        typer.echo(f"rentan: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"restored the backup of {manifest.taken_at}")


@app.command()
def reconcile(
    check: Annotated[
        bool, typer.Option("--check", help="Report the differences (the default).")
    ] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="Write what the projection misses; release orphans.")
    ] = False,
    program: Annotated[
        str | None, typer.Option(help="One program's enrollments (default: all).")
    ] = None,
    rate: Annotated[
        float, typer.Option(min=1.0, help="Workflow runs asked per second, at most.")
    ] = 100.0,
    restart: Annotated[
        bool, typer.Option("--restart", help="Ignore where an interrupted run stopped.")
    ] = False,
) -> None:
    """Compare the projection and the ledger with the workflows; exit 1 on any difference."""
    from models.db import make_engine
    from services.reconcile import reconcile as run_reconcile

    if check and repair:
        typer.echo("rentan: --check or --repair, not both", err=True)
        raise typer.Exit(2)
    settings = _settings()
    mode = "repair" if repair else "check"
    checkpoint = settings.data_dir / f"reconcile-{program or 'all'}-{mode}.json"

    def shown(report: object) -> None:
        from services.reconcile import Report

        assert isinstance(report, Report)
        typer.echo(
            f"{report.workflows:,} workflows, {report.runs:,} runs, "
            f"{report.differences:,} differences so far",
            err=True,
        )

    async def main() -> int:
        from core.sealing import sealer_for
        from core.temporal import connect

        client = await connect(settings, identity="rentan-reconcile")
        engine = make_engine(settings.resolved_database_url)
        try:
            report = await run_reconcile(
                client,
                engine,
                program=program,
                repair=repair,
                sealer=sealer_for(settings),
                rate_per_s=rate,
                checkpoint=checkpoint,
                restart=restart,
                progress=shown,
            )
        finally:
            engine.dispose()
        if report.resumed_after:
            typer.echo(f"resumed after workflow {report.resumed_after}")
        for difference in report.shown:
            typer.echo(f"{difference.kind}\t{difference.enrollment_id}\t{difference.detail}")
        repaired = f", {report.repaired:,} repaired" if repair else ""
        typer.echo(
            f"{report.workflows:,} workflows ({report.runs:,} runs) checked: "
            f"{report.differences:,} differences{repaired}"
        )
        return 1 if report.differences else 0

    raise typer.Exit(asyncio.run(main()))


@keys_app.command("create")
def keys_create(
    role: Annotated[
        str, typer.Option(help="village_operator, dpmd_verifier, budget_officer, auditor or admin")
    ],
    village: Annotated[
        str | None, typer.Option(help="Village code (village_operator keys only).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Who holds the key.")] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="Refused after this many days (default: never).")
    ] = None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from models.db import make_engine
    from models.migrate import upgrade
    from services.keys import KeyRefused, Role, create_key

    settings = _settings()
    try:
        parsed = Role(role)
    except ValueError:
        typer.echo(
            f"rentan: unknown role {role!r}; one of: {', '.join(r.value for r in Role)}", err=True
        )
        raise typer.Exit(2) from None
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        key = create_key(
            engine,
            role=parsed,
            name=name or parsed.value,
            village_code=village,
            expires_at=_days_from_now(expires_in_days),
        )
    except KeyRefused as exc:
        typer.echo(f"rentan: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (id, name, role, village, prefix, created, revoked); never the keys themselves."""
    from models.db import make_engine
    from services.keys import list_keys

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    for key in list_keys(engine):
        if key.revoked_at:
            revoked = f"revoked {key.revoked_at:%Y-%m-%d}"
        elif key.expires_at:
            revoked = f"expires {key.expires_at:%Y-%m-%d %H:%M}"
        else:
            revoked = "active"
        typer.echo(
            f"{key.id}\t{key.name}\t{key.role}\t{key.village_code or '-'}\t{key.prefix}…\t"
            f"{key.created_at:%Y-%m-%d}\t{revoked}"
        )
    engine.dispose()


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `keys list`).")],
) -> None:
    """Revoke a key: it is refused (401) from now on."""
    from models.db import make_engine
    from services.keys import revoke_key

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    ok = revoke_key(engine, key_id)
    engine.dispose()
    if not ok:
        typer.echo(f"rentan: no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"key {key_id} revoked")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `keys list`).")],
    grace_hours: Annotated[
        float, typer.Option(min=0.0, help="How long the old key keeps working.")
    ] = 24.0,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="The new key's life (default: never expires).")
    ] = None,
) -> None:
    """Replace a key: print a new one for the same holder; the old one is refused after the
    grace period."""
    from models.db import make_engine
    from services.keys import KeyRefused, rotate_key

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        key = rotate_key(
            engine,
            key_id,
            grace=dt.timedelta(hours=grace_hours),
            expires_at=_days_from_now(expires_in_days),
        )
    except KeyRefused as exc:
        typer.echo(f"rentan: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(key)


def _days_from_now(days: int | None) -> dt.datetime | None:
    return None if days is None else dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations to RENTAN_DATABASE_URL."""
    from models.migrate import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url)
    get_logger("rentan.db").info("database upgraded")


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="rentan")
