"""The teacher CLI against the live API over HTTP."""

import copy
import json
import socket
import zipfile

import httpx
import jsonschema
from click.testing import CliRunner

from client.cli import main
from tests.helpers import exam_body, page_bytes


def test_create_an_exam_submit_a_paper_and_read_it(live_api, school_keys, tmp_path):
    exam_file = tmp_path / "exam.json"
    exam_file.write_text(json.dumps(exam_body()), "utf-8")
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"], "XDG_CACHE_HOME": str(tmp_path / "cache")}
    runner = CliRunner()
    created = runner.invoke(main, ["--json", "exams", "create", str(exam_file)], env=env)
    assert created.exit_code == 0, created.output
    listed = runner.invoke(main, ["--json", "exams", "list"], env=env)
    assert listed.exit_code == 0 and json.loads(created.output)["id"] in {e["id"] for e in json.loads(listed.output)}
    assert created.exit_code == 0, created.output
    exam_id = json.loads(created.output)["id"]
    folder = tmp_path / "S07"
    folder.mkdir()
    for n in (2, 1):
        (folder / f"page{n}.jpg").write_bytes(page_bytes(f"p{n}"))
    (folder / "notes.txt").write_text("not a page")
    submitted = runner.invoke(
        main, ["--json", "submit", exam_id, str(folder), "--student", "S07", "--class", "3A"], env=env
    )
    assert submitted.exit_code == 0, submitted.output
    paper = json.loads(submitted.stdout)
    assert [p["number"] for p in paper["pages"]] == [1, 2] and paper["student_ref"] == "S07"

    # for people, by default: summaries and tables, not JSON
    title = exam_body()["title"]
    summary = runner.invoke(main, ["exams", "list"], env=env)
    assert summary.exit_code == 0 and title in summary.output and exam_id in summary.output
    assert not summary.output.lstrip().startswith(("[", "{"))
    shown = runner.invoke(main, ["paper", paper["id"]], env=env)
    assert shown.exit_code == 0 and "S07" in shown.output and paper["id"] in shown.output
    made = runner.invoke(main, ["exams", "create", str(exam_file)], env=env)
    assert made.exit_code == 0 and made.output.startswith("created exam ") and title in made.output
    student = runner.invoke(main, ["student", "S07"], env=env)
    assert student.exit_code == 0 and title in student.output and "weak knowledge points" in student.output
    listed = runner.invoke(main, ["students", "--class", "3A"], env=env)
    assert listed.exit_code == 0 and "S07" in listed.output and "3A" in listed.output, listed.output
    points = runner.invoke(main, ["knowledge-points", "--subject", "math", "--grade", "3"], env=env)
    assert points.exit_code == 0 and "math.g3.perimeter" in points.output and "周长" in points.output


def test_errors_are_reported_in_words_not_tracebacks(live_api, school_keys, tmp_path):
    bad = tmp_path / "homework.txt"
    bad.write_text("not an image")
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"]}
    result = CliRunner().invoke(
        main, ["submit", "00000000-0000-0000-0000-000000000000", str(bad), "--student", "x"], env=env
    )
    assert result.exit_code == 1 and "not_found" in result.output
    no_key = CliRunner().invoke(main, ["report", "x"], env={"MARKQ_API_URL": live_api, "MARKQ_API_KEY": ""})
    assert no_key.exit_code == 2 and "API key" in no_key.output


def test_submitting_a_class_folder_twice_creates_no_new_papers(live_api, school_keys, worker, tmp_path):
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"], "MARKQ_CONFIG": str(tmp_path / "none.toml")}
    runner = CliRunner()
    exam_file = tmp_path / "exam.json"
    exam_file.write_text(json.dumps(exam_body()), "utf-8")
    exam_id = json.loads(runner.invoke(main, ["--json", "exams", "create", str(exam_file)], env=env).output)["id"]
    folder = tmp_path / "3A"
    for student, pages in (("S01", 2), ("S02", 1), ("S03", 1)):
        (folder / student).mkdir(parents=True)
        for n in range(1, pages + 1):
            (folder / student / f"p{n}.jpg").write_bytes(page_bytes())
    (folder / "S03" / "notes.txt").write_text("ignored: not a page")
    first = runner.invoke(main, ["--json", "submit", exam_id, str(folder), "--class", "3A"], env=env)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {"created": 3, "existing": 0, "refused": 0}
    again = runner.invoke(main, ["--json", "submit", exam_id, str(folder), "--class", "3A"], env=env)
    assert json.loads(again.stdout) == {"created": 0, "existing": 3, "refused": 0}
    # a ZIP whose files a roster names: by upload URL too, unpacked by the worker
    archive, roster = tmp_path / "late.zip", tmp_path / "roster.csv"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("scan-17.jpg", page_bytes("late"))
        out.writestr("scan-18.jpg", page_bytes("nobody"))
    roster.write_text("file,student_ref,class_label\nscan-17.jpg,S04,3A\n", "utf-8")
    late = runner.invoke(main, ["--json", "submit", exam_id, str(archive), "--roster", str(roster)], env=env)
    assert late.exit_code == 0, late.output
    assert json.loads(late.stdout) == {"created": 1, "existing": 0, "refused": 1}
    assert "refused scan-18.jpg: not in the roster" in late.stderr
    out = tmp_path / "papers.csv"
    report = runner.invoke(main, ["--json", "report", exam_id, "--csv", str(out)], env=env)
    assert report.exit_code == 0, report.output
    assert sorted(line.split(",")[0] for line in out.read_text("utf-8-sig").splitlines()[1:]) == [
        "S01",
        "S02",
        "S03",
        "S04",
    ]


def test_the_user_config_file_supplies_url_and_key(live_api, school_keys, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'api_url = "{live_api}"\napi_key = "{school_keys["A"]}"\n', "utf-8")
    result = CliRunner().invoke(
        main,
        ["report", "00000000-0000-0000-0000-000000000000"],
        env={"MARKQ_CONFIG": str(config), "MARKQ_API_URL": "", "MARKQ_API_KEY": ""},
    )
    assert result.exit_code == 1 and "not_found" in result.output  # reached the API with the key


def test_an_exam_can_be_created_for_offline_marking(live_api, school_keys, tmp_path):
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"]}
    exam_file = tmp_path / "exam.json"
    exam_file.write_text(json.dumps(exam_body()), "utf-8")
    created = CliRunner().invoke(main, ["--json", "exams", "create", str(exam_file), "--provider", "local"], env=env)
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["provider"] == "local"
    body = copy.deepcopy(exam_body())  # the shared key must stay whole for other tests
    body["answer_key"]["questions"][0].pop("answer")
    exam_file.write_text(json.dumps(body), "utf-8")
    refused = CliRunner().invoke(main, ["--json", "exams", "create", str(exam_file), "--provider", "local"], env=env)
    assert refused.exit_code == 1 and "invalid_exam" in refused.output and "no answer" in refused.output


def test_the_blank_paper_is_given_and_shown_from_the_command_line(live_api, school_keys, tmp_path):
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"]}
    exam_file = tmp_path / "exam.json"
    exam_file.write_text(json.dumps(exam_body()), "utf-8")
    runner = CliRunner()
    exam_id = json.loads(runner.invoke(main, ["--json", "exams", "create", str(exam_file)], env=env).output)["id"]
    blank = tmp_path / "blank.jpg"
    blank.write_bytes(page_bytes("blank paper"))
    given = runner.invoke(main, ["--json", "exams", "template", exam_id, str(blank)], env=env)
    assert given.exit_code == 0, given.output
    assert json.loads(given.output)["status"] == "reading" and json.loads(given.output)["pages"][0]["number"] == 1
    shown = runner.invoke(main, ["--json", "exams", "template", exam_id], env=env)
    assert shown.exit_code == 0 and json.loads(shown.output)["status"] in ("reading", "ready", "failed")


def test_a_broken_file_an_unreachable_server_and_an_unknown_exam_are_one_line_each(live_api, school_keys, tmp_path):
    broken = tmp_path / "exam.json"
    broken.write_text('{"title": "期中",\n  "grade": 3,,\n}', encoding="utf-8")
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"]}
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    cases = [
        (["exams", "create", str(broken)], env, f"{broken}: not valid JSON at line 2, column"),
        (["exams", "show", "00000000-0000-0000-0000-000000000000"], {**env, "MARKQ_API_URL": closed}, "cannot reach"),
        (["exams", "show", "00000000-0000-0000-0000-000000000000"], env, "not_found: exam not found"),
    ]
    for args, environment, said in cases:
        result = CliRunner().invoke(main, args, env=environment)
        # CliRunner catches every exception: a SystemExit is a clean exit, anything else a crash
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (args, result.output)
        assert said in result.output and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_the_example_exam_is_written_out_and_is_a_valid_exam(live_api, school_keys, tmp_path):
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"]}
    path = tmp_path / "exam.json"
    written = CliRunner().invoke(main, ["exams", "example", str(path)], env=env)
    assert written.exit_code == 0 and path.exists(), written.output
    again = CliRunner().invoke(main, ["exams", "example", str(path)], env=env)
    assert again.exit_code == 1 and "--force" in again.output  # never overwritten unasked
    schema = httpx.get(f"{live_api}/v1/answer-key.schema.json").json()  # served, no key needed
    jsonschema.validate(json.loads(path.read_text("utf-8"))["answer_key"], schema)
    whole = httpx.get(f"{live_api}/v1/exam.schema.json").json()  # the whole exam file's schema
    jsonschema.Draft202012Validator(whole).validate(json.loads(path.read_text("utf-8")))
    broken = {**json.loads(path.read_text("utf-8")), "grade": 12}
    broken["answer_key"]["questions"][0]["points"] = "two"
    problems = {e.json_path for e in jsonschema.Draft202012Validator(whole).iter_errors(broken)}
    assert {"$.grade", "$.answer_key.questions[0].points"} <= problems, problems
    created = CliRunner().invoke(main, ["--json", "exams", "create", str(path)], env=env)
    assert created.exit_code == 0, created.output
    assert len(json.loads(created.output)["answer_key"]["questions"]) >= 6


def test_school_points_are_added_from_a_csv_and_the_schools_weak_points_are_shown(live_api, school_keys, tmp_path):
    env = {"MARKQ_API_URL": live_api, "MARKQ_API_KEY": school_keys["A"]}
    sheet = tmp_path / "points.csv"
    sheet.write_text("id,name_zh,name_en,aliases\nclock-reading,认识钟表,Reading a clock,看钟表|钟面\n", "utf-8")
    runner = CliRunner()
    refused = runner.invoke(main, ["knowledge-points", "--add", str(sheet)], env=env)
    assert refused.exit_code == 2 and "--add needs --subject and --grade" in refused.output
    added = runner.invoke(main, ["knowledge-points", "--add", str(sheet), "--subject", "math", "--grade", "1"], env=env)
    assert added.exit_code == 0 and ".clock-reading" in added.output and "认识钟表" in added.output, added.output
    weak = runner.invoke(main, ["--json", "weak-points", "--days", "30"], env=env)
    assert weak.exit_code == 0 and isinstance(json.loads(weak.output), list), weak.output
