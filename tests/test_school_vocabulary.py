"""A school's own knowledge points imported once (JSON or a spreadsheet's CSV), and the school's
most-missed points by grade over a time window."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from shared.db import transaction
from shared.models import Paper, PaperStatus, QuestionKnowledgePoint
from shared.schools import create_key, create_school
from tests.helpers import stored_answer, stored_exam

CSV = (
    "\ufeffid,name_zh,name_en,grade,aliases,refines\n"
    "abacus,算盘读数,Reading an abacus,2,珠算读数|算盘,\n"
    "cube-counting,数小正方体,Counting small cubes,,数方块,math.g3.area\n"
).encode()


def new_school(app) -> tuple[int, dict[str, str]]:
    with transaction(app.extensions["markq"].sessions) as session:
        school = create_school(session, f"Vocabulary school {secrets.token_hex(3)}")
        return school.id, {"Authorization": f"Bearer {create_key(session, school).key}"}


def test_a_csv_of_school_points_is_imported_once_and_keys_name_them_by_alias(app, client):
    school_id, headers = new_school(app)
    added = client.post(
        "/v1/knowledge-points.csv?subject=math&grade=3", data=CSV, headers={**headers, "Content-Type": "text/csv"}
    )
    assert added.status_code == 200, added.json
    by_given = {p["id"].removeprefix(f"school-{school_id}."): p for p in added.json}
    assert by_given["abacus"]["grade"] == 2 and by_given["abacus"]["aliases"] == ["珠算读数", "算盘"]
    assert by_given["cube-counting"]["grade"] == 3  # the query's grade, for a row without one
    assert by_given["cube-counting"]["refines"] == "math.g3.area"
    # run again with a new alias: the same points, brought up to date, not doubled
    again = CSV.replace("数方块,".encode(), "数方块|数积木,".encode())
    client.post("/v1/knowledge-points.csv?subject=math&grade=3", data=again, headers=headers)
    listed = client.get("/v1/knowledge-points", headers=headers, query_string={"subject": "math"}).json
    own = [p for p in listed if p["school_id"] == school_id]
    assert len(own) == 2
    assert next(p for p in own if p["id"].endswith("cube-counting"))["aliases"] == ["数方块", "数积木"]
    key = {"questions": [{"id": "1", "answer": "8", "points": 1, "knowledge_points": ["珠算读数"]}]}
    exam = client.post(
        "/v1/exams", headers=headers, json={"title": "算盘", "subject": "math", "grade": 2, "answer_key": key}
    )
    assert exam.status_code == 201, exam.json
    assert exam.json["answer_key"]["questions"][0]["knowledge_points"] == [f"school-{school_id}.abacus"]


def test_a_bad_row_is_named_by_its_line_and_nothing_is_added(app, client):
    school_id, headers = new_school(app)
    bad = CSV + b"Bad Id!,,x,,,\n"
    refused = client.post("/v1/knowledge-points.csv?subject=math&grade=3", data=bad, headers=headers)
    assert refused.status_code == 422
    error = refused.json["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith("the CSV is not valid: line 4:")
    assert set(error["details"]["line 4"]) == {"id", "name_zh"}
    no_refined = client.post(
        "/v1/knowledge-points",
        headers=headers,
        json={"subject": "math", "grade": 3, "knowledge_points": [{"id": "x", "name_zh": "某", "refines": "量子力学"}]},
    )
    assert no_refined.status_code == 422 and "量子力学" in no_refined.json["error"]["message"]
    headerless = client.post("/v1/knowledge-points.csv?subject=math&grade=3", data=b"a,b\n1,2\n", headers=headers)
    assert headerless.status_code == 422 and "id and name_zh" in headerless.json["error"]["message"]
    listed = client.get("/v1/knowledge-points", headers=headers, query_string={"subject": "math"}).json
    assert not [p for p in listed if p["school_id"] == school_id]


def test_the_schools_most_missed_points_by_grade_in_a_window(app, client):
    school_id, headers = new_school(app)
    area, perimeter, times = "math.g3.area", "math.g3.perimeter", "math.g2.times-tables"
    key = {"questions": [{"id": str(n), "answer": "1", "points": 1} for n in (1, 2)]}
    # grade 3: area missed 3 of 4, perimeter 1 of 4; grade 2: times tables 2 of 2; and one grade-3
    # paper from last year, outside the window
    plan = [
        (3, [(area, False), (perimeter, True)], 0),
        (3, [(area, False), (perimeter, False)], 0),
        (3, [(area, False), (perimeter, True)], 0),
        (3, [(area, True), (perimeter, True)], 0),
        (2, [(times, False), (times, False)], 0),
        (3, [(perimeter, False), (perimeter, False)], 400),
    ]
    now = datetime.now(UTC)
    with transaction(app.extensions["markq"].sessions) as session:
        exams = {grade: stored_exam(session, school_id, f"g{grade}", key, grade=grade) for grade in (2, 3)}
        for n, (grade, answers, days_ago) in enumerate(plan):
            paper = Paper(
                school_id=school_id,
                exam_id=exams[grade].id,
                student_ref=f"S{n}",
                status=PaperStatus.graded,
                created_at=now - timedelta(days=days_ago),
            )
            session.add(paper)
            session.flush()
            for position, (point, right) in enumerate(answers):
                answer = stored_answer(paper.id, position, str(position + 1), "1" if right else "2", "1", right)
                session.add(answer)
                session.flush()
                session.add(QuestionKnowledgePoint(question_result_id=answer.id, knowledge_point_id=point))
    since = (now - timedelta(days=30)).isoformat()
    grades = client.get("/v1/school/weak-points", headers=headers, query_string={"since": since}).json
    summary = [
        (g["grade"], g["papers"], [(p["id"], p["missed"], p["attempted"]) for p in g["most_missed"]]) for g in grades
    ]
    assert summary == [(2, 1, [(times, 2, 2)]), (3, 4, [(area, 3, 4), (perimeter, 1, 4)])]
    top = client.get("/v1/school/weak-points", headers=headers, query_string={"since": since, "top": 1}).json
    assert [[p["id"] for p in g["most_missed"]] for g in top] == [[times], [area]]
    everything = client.get("/v1/school/weak-points", headers=headers).json
    assert [(g["grade"], g["papers"]) for g in everything] == [(2, 1), (3, 5)]
    grade3 = next(g for g in everything if g["grade"] == 3)["most_missed"]
    assert [(p["id"], p["missed"], p["attempted"]) for p in grade3] == [(area, 3, 4), (perimeter, 3, 6)]
    refused = client.get("/v1/school/weak-points", headers=headers, query_string={"grade": 3})
    assert refused.status_code == 422  # an unknown parameter, not silently ignored
