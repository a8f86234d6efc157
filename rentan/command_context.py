"""What every command starts with: the settings (a bad one named, exit 2) and logging."""

from __future__ import annotations

import typer

from core.logs import configure_logging
from core.settings import Settings, SettingsError, get_settings


def command_settings() -> Settings:
    try:
        settings = get_settings()
    except SettingsError as exc:
        typer.echo(f"rentan: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return settings
