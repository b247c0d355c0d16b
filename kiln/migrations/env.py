"""Alembic environment: runs migrations on the URL that `kiln.migrate` passes in."""

from alembic import context
from sqlalchemy import create_engine

from kiln.models import Base

url = context.config.get_main_option("sqlalchemy.url")
assert url, "kiln.migrate sets sqlalchemy.url"
engine = create_engine(url)
with engine.connect() as connection:
    # batch mode lets ALTERs work on SQLite, which rewrites tables to change them.
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
