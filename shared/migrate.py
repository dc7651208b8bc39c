"""Schema migrations (Alembic) and the knowledge-point vocabulary, applied together."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    if head is None:
        raise RuntimeError("no migration scripts found")
    return head


def database_revision(connection: Connection) -> str | None:
    """The schema revision the database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(database_url: str) -> None:
    """Bring the database at `database_url` to the newest schema."""
    command.upgrade(alembic_config(database_url), "head")


def migrate(database_url: str) -> int:
    """The schema at its newest and the packaged knowledge-point vocabulary loaded, in one call;
    returns how many knowledge points the vocabulary has."""
    from shared.db import make_engine, make_session_factory, transaction
    from shared.grading.vocabulary import sync_vocabulary

    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            return sync_vocabulary(session)
    finally:
        engine.dispose()
