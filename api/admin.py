"""markq-admin: the IT admin's commands (database, schools, keys)."""

from __future__ import annotations

import json
import sys
from decimal import Decimal, InvalidOperation

import click
from sqlalchemy.exc import OperationalError

from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import database_revision, head_revision
from shared.migrate import migrate as migrate_database
from shared.schools import (
    KeyNotFound,
    SchoolExists,
    SchoolNotFound,
    create_key,
    create_school,
    find_school,
    list_keys,
    revoke_key,
)
from shared.settings import get_settings
from shared.teachers import AccountError, create_teacher


def unreachable(exc: OperationalError) -> click.ClickException:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return click.ClickException(f"cannot reach the database ({reason}); check MARKQ_DATABASE_URL")


def _sessions():  # type: ignore[no-untyped-def]
    """Sessions on a database that is reachable and at this code's schema; else one line saying
    what to do (never a traceback)."""
    engine = make_engine(get_settings().database_url)
    try:
        with engine.connect() as connection:
            at = database_revision(connection)
    except OperationalError as exc:
        raise unreachable(exc) from exc
    if at != head_revision():
        raise click.ClickException(
            "the database has no markq schema yet: run `markq-admin migrate` first"
            if at is None
            else f"the database schema is at {at}, this markq needs {head_revision()}: run `markq-admin migrate` first"
        )
    return make_session_factory(engine)


@click.group()
def main() -> None:
    """Administer a markq installation (settings come from MARKQ_* variables)."""


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema and load the knowledge-point vocabulary."""
    settings = get_settings()
    try:
        count = migrate_database(settings.database_url)
    except OperationalError as exc:
        raise unreachable(exc) from exc
    click.echo(json.dumps({"migrated": True, "knowledge_points": count}))


@main.command("create-school")
@click.argument("name")
def create_school_command(name: str) -> None:
    """Create a school (a tenant) and print it."""
    try:
        with transaction(_sessions()) as session:
            school = create_school(session, name)
            click.echo(json.dumps({"school_id": school.id, "name": school.name}, ensure_ascii=False))
    except (SchoolExists, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("create-key")
@click.argument("school")
def create_key_command(school: str) -> None:
    """Create an API key for SCHOOL (name or id) and print it; it is shown only this once."""
    try:
        with transaction(_sessions()) as session:
            new = create_key(session, find_school(session, school))
            click.echo(
                json.dumps(
                    {"school_id": new.school.id, "school": new.school.name, "api_key": new.key}, ensure_ascii=False
                )
            )
    except SchoolNotFound as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("list-keys")
@click.argument("school")
def list_keys_command(school: str) -> None:
    """SCHOOL's API keys: each one's prefix (what names it; the secret is never kept), when it was
    made and whether it is revoked."""
    try:
        with transaction(_sessions()) as session:
            keys = list_keys(session, find_school(session, school))
            for key in keys:
                revoked = key.revoked_at.isoformat() if key.revoked_at else None
                click.echo(
                    json.dumps({"prefix": key.prefix, "created_at": key.created_at.isoformat(), "revoked_at": revoked})
                )
    except SchoolNotFound as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("revoke-key")
@click.argument("key")
def revoke_key_command(key: str) -> None:
    """Revoke an API key, named by its prefix (see list-keys) or given whole: it stops working at
    once. Make the school a new one with create-key."""
    try:
        with transaction(_sessions()) as session:
            row = revoke_key(session, key)
            click.echo(json.dumps({"prefix": row.prefix, "school_id": row.school_id, "revoked": True}))
    except KeyNotFound as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("create-teacher")
@click.argument("school")
@click.argument("email")
@click.option("--name", required=True, help="How the web app greets the teacher.")
@click.option("--admin", is_flag=True, help="A school admin: invites teachers and manages API keys.")
@click.option("--language", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else it is asked for).")
def create_teacher_command(
    school: str, email: str, name: str, admin: bool, language: str, password_stdin: bool
) -> None:
    """Create a teacher of SCHOOL (name or id) who signs in to the web app with EMAIL. The first
    teacher of a school is made with --admin."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with transaction(_sessions()) as session:
            teacher = create_teacher(
                session, find_school(session, school), email, name, password, is_admin=admin, language=language
            )
            click.echo(
                json.dumps(
                    {"teacher_id": teacher.id, "school_id": teacher.school_id, "email": teacher.email, "admin": admin},
                    ensure_ascii=False,
                )
            )
    except (SchoolNotFound, AccountError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("set-budget")
@click.argument("school")
@click.option("--daily-usd", required=True, help="Dollars per UTC day, or 'none' for no cap.")
def set_budget_command(school: str, daily_usd: str) -> None:
    """Set SCHOOL's daily budget. Papers it paused resume at the next sweep if there is room."""
    try:
        value = None if daily_usd.lower() == "none" else Decimal(daily_usd)
    except InvalidOperation as exc:
        raise click.BadParameter("a dollar amount such as 5 or 12.50, or 'none'") from exc
    if value is not None and value < 0:
        raise click.BadParameter("a budget cannot be negative")
    try:
        with transaction(_sessions()) as session:
            row = find_school(session, school)
            row.daily_budget_usd = value
            click.echo(
                json.dumps(
                    {
                        "school_id": row.id,
                        "school": row.name,
                        "daily_budget_usd": None if value is None else str(value),
                    },
                    ensure_ascii=False,
                )
            )
    except SchoolNotFound as exc:
        raise click.ClickException(str(exc)) from exc
