"""Apply the schema migrations (`kiln migrate`, and `kiln dev` at start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from kiln.db import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    make_engine(url).dispose()  # creates the SQLite file's directory when needed
    command.upgrade(alembic_config(url), "head")
