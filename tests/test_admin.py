"""markq-admin: the IT admin's commands against the run's database."""

from __future__ import annotations

import json

from click.testing import CliRunner

from api.admin import main


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
