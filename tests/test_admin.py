"""markq-admin: the IT admin's commands against the run's database."""

from __future__ import annotations

import json
import secrets
import socket

import psycopg
from click.testing import CliRunner

from api.admin import main
from shared.settings import get_settings
from tests.helpers import PG_ADMIN_URL


def test_a_revoked_key_stops_working_at_once_and_the_others_do_not(client, settings):
    runner = CliRunner()
    made = runner.invoke(main, ["create-school", "第一实验小学-revoke"])
    assert made.exit_code == 0, made.output
    school = str(json.loads(made.output)["school_id"])
    first, second = (json.loads(runner.invoke(main, ["create-key", school]).output)["api_key"] for _ in range(2))
    for key in (first, second):
        assert client.get("/v1/knowledge-points", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    listed = [json.loads(line) for line in runner.invoke(main, ["list-keys", school]).output.splitlines()]
    assert [k["prefix"] for k in listed] == [first.split("_")[1], second.split("_")[1]]
    assert all(k["revoked_at"] is None for k in listed) and first not in json.dumps(listed)  # never the secret

    revoked = runner.invoke(main, ["revoke-key", listed[0]["prefix"]])
    assert revoked.exit_code == 0 and json.loads(revoked.output)["revoked"] is True
    refused = client.get("/v1/knowledge-points", headers={"Authorization": f"Bearer {first}"})
    assert refused.status_code == 401 and refused.json["error"]["code"] == "unauthorized"
    assert client.get("/v1/knowledge-points", headers={"Authorization": f"Bearer {second}"}).status_code == 200

    assert runner.invoke(main, ["revoke-key", second]).exit_code == 0  # the whole key names it too
    assert client.get("/v1/knowledge-points", headers={"Authorization": f"Bearer {second}"}).status_code == 401
    unknown = runner.invoke(main, ["revoke-key", "nosuchprefix"])
    assert unknown.exit_code != 0 and "no API key" in unknown.output


def test_every_command_on_an_unmigrated_database_says_to_migrate_first(settings, monkeypatch):
    name = f"markq_fresh_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        monkeypatch.setenv("MARKQ_DATABASE_URL", settings.database_url.rsplit("/", 1)[0] + "/" + name)
        get_settings.cache_clear()
        for args in (["create-school", "一小"], ["create-key", "一小"], ["list-keys", "一小"], ["revoke-key", "x"]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 1 and "run `markq-admin migrate` first" in result.output, (args, result.output)
            assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
        migrated = CliRunner().invoke(main, ["migrate"])
        assert migrated.exit_code == 0, migrated.output
        assert CliRunner().invoke(main, ["create-school", "一小"]).exit_code == 0
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_unreachable_database_is_one_line_for_migrate_too(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    monkeypatch.setenv("MARKQ_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{port}/markq")
    get_settings.cache_clear()
    try:
        for args in (["migrate"], ["create-school", "一小"]):
            result = CliRunner().invoke(main, args)
            assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (args, result.output)
            assert "cannot reach the database" in result.output and "MARKQ_DATABASE_URL" in result.output
            assert len(result.output.strip().splitlines()) == 1
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
