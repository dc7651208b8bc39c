"""What an operator relies on: every setting documented, and the migrations build the models' schema."""

from __future__ import annotations

import re
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.db import make_engine
from shared.migrate import migrate
from shared.models import Base
from shared.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def settings_table() -> set[str]:
    """The variables named in the first column of the README's Settings table."""
    section = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def variable(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return alias.choices[0] if alias is not None else f"MARKQ_{field.upper()}"  # type: ignore[union-attr]


def test_every_setting_is_in_the_readme_table_and_nothing_else_is():
    variables = {variable(field) for field in Settings.model_fields}
    documented = settings_table()
    assert variables - documented == set(), "settings missing from the README's table"
    assert documented - variables == set(), "the README's table names settings that do not exist"


def test_the_migrations_build_exactly_the_models_schema(postgres_url, tmp_path):
    for url in (postgres_url, f"sqlite:///{tmp_path}/schema.db"):
        migrate(url)
        engine = make_engine(url)
        with engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
            )
        engine.dispose()
        assert differences == [], f"{url.split(':')[0]}: the models and the migrations differ: {differences}"
