"""The teacher CLI against the live API over HTTP."""

import json

from click.testing import CliRunner

from client.cli import main
from tests.conftest import exam_body, page_bytes


def test_create_an_exam_submit_a_paper_and_read_it(live_api, school_keys, tmp_path):
    exam_file = tmp_path / "exam.json"
    exam_file.write_text(json.dumps(exam_body()), "utf-8")
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"]}
    runner = CliRunner()
    created = runner.invoke(main, ["exams", "create", str(exam_file)], env=env)
    assert created.exit_code == 0, created.output
    exam_id = json.loads(created.output)["id"]
    folder = tmp_path / "S07"
    folder.mkdir()
    for n in (2, 1):
        (folder / f"page{n}.jpg").write_bytes(page_bytes(f"p{n}"))
    (folder / "notes.txt").write_text("not a page")
    submitted = runner.invoke(main, ["submit", exam_id, str(folder), "--student", "S07", "--class", "3A"], env=env)
    assert submitted.exit_code == 0, submitted.output
    paper = json.loads(submitted.output)
    assert [p["number"] for p in paper["pages"]] == [1, 2] and paper["student_ref"] == "S07"


def test_errors_are_reported_in_words_not_tracebacks(live_api, school_keys, tmp_path):
    bad = tmp_path / "homework.txt"
    bad.write_text("not an image")
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"]}
    result = CliRunner().invoke(main, ["submit", "00000000-0000-0000-0000-000000000000", str(bad),
                                       "--student", "x"], env=env)
    assert result.exit_code == 1 and "not_found" in result.output
    no_key = CliRunner().invoke(main, ["report", "x"], env={"MARKQ_API_URL": live_api, "MARKQ_API_KEY": ""})
    assert no_key.exit_code == 2 and "API key" in no_key.output
