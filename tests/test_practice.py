"""Practice for weak points without a key: new questions per knowledge point, answers that the
equivalence check confirms against the question's own arithmetic (worked out here by sympy from
the printed question, not by the template)."""

from __future__ import annotations

import secrets
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

import sympy
from sqlalchemy import select

from shared.db import transaction
from shared.grading.equivalence import equivalent
from shared.grading.practice import TEMPLATES, PracticeQuestion, practice_set
from shared.models import Exam, Paper, PaperStatus, QuestionKnowledgePoint, Usage
from shared.schools import create_key, create_school
from tests.helpers import loopback_call, stored_answer, stored_exam

ARITHMETIC = ("math.g2.times-tables", "math.g4.order-of-operations", "math.g3.fraction-add-sub-same")


def value_of(printed: str) -> str:
    """What the printed sum comes to: its left side read as arithmetic by sympy."""
    left = printed.split("=")[0].replace("×", "*").replace("÷", "/").replace("−", "-")
    return str(sympy.nsimplify(sympy.sympify(left, rational=True)))


def test_three_points_get_practice_whose_answers_the_equivalence_check_confirms():
    for point in ARITHMETIC:
        questions = practice_set(point, "S01|2026-12-01", 5)
        assert len(questions) == 5 and len({q.text_en for q in questions}) == 5, point
        for question in questions:
            assert equivalent(question.answer, value_of(question.text_en)) is True, (point, question)
    assert practice_set("math.g2.times-tables", "S01|2026-12-01") == practice_set(
        "math.g2.times-tables", "S01|2026-12-01"
    )  # the same sheet reprinted the same day
    assert practice_set("math.g2.times-tables", "S02|2026-12-01") != practice_set(
        "math.g2.times-tables", "S01|2026-12-01"
    )


def test_a_template_answer_that_does_not_match_its_sum_is_never_printed():
    assert not PracticeQuestion("7 × 8 =", "7 × 8 =", "54", "7*8").confirmed()
    assert not PracticeQuestion("37 ÷ 6 =", "37 ÷ 6 =", "5……7", "floor(37/6)").confirmed()
    assert PracticeQuestion("37 ÷ 6 =", "37 ÷ 6 =", "6……1", "floor(37/6)").confirmed()
    assert all(practice_set(point, "any", 5) for point in TEMPLATES)  # every template makes a full set


def weak_student(app, points: list[str], grade: int = 3) -> tuple[str, uuid.UUID]:
    """A school with one student who missed every point but the last; its key and the exam id."""
    with transaction(app.extensions["markq"].sessions) as session:
        school = create_school(session, f"Practice school {secrets.token_hex(3)}")
        key = create_key(session, school).key
        answer_key = {"questions": [{"id": str(n), "answer": "1", "points": 1} for n in range(1, 5)]}
        exam = stored_exam(session, school.id, "练习", answer_key, grade)
        paper = Paper(
            school_id=school.id, exam_id=exam.id, student_ref="W1", status=PaperStatus.graded, score=1, max_score=4
        )
        session.add(paper)
        session.flush()
        for n, point in enumerate(points, start=1):
            # the last question right: the others are weak points
            result = stored_answer(paper.id, n, str(n), "0", "1", n == len(points), error_type="calculation")
            result.knowledge_points.append(QuestionKnowledgePoint(knowledge_point_id=point))
            session.add(result)
        return key, exam.id


def test_a_students_three_weakest_points_get_practice_in_her_exams_language(app, client):
    points = ["math.g2.times-tables", "math.g3.perimeter", "math.g6.pigeonhole", "math.g3.area"]
    key, exam_id = weak_student(app, points)
    headers = {"Authorization": f"Bearer {key}"}
    templates = {"source": "templates"}
    sets = client.get("/v1/students/W1/practice", headers=headers, query_string=templates).json
    assert [s["knowledge_point"] for s in sets] == points[:3]
    assert [len(s["questions"]) for s in sets] == [5, 5, 0]  # no template for the pigeonhole principle
    assert "周长" in sets[1]["questions"][0]["question"]  # Chinese by default
    english = client.get("/v1/students/W1/practice", headers=headers, query_string={**templates, "language": "en"}).json
    assert "perimeter" in english[1]["questions"][0]["question"]
    assert client.get("/v1/students/nobody/practice", headers=headers).status_code == 404
    link = client.post(f"/v1/exams/{exam_id}/share", headers=headers, json={"student_ref": "W1"}).json
    url = urlsplit(link["url"])
    sheet = client.get(f"{url.path}?{url.query}")
    assert sheet.status_code == 200
    html = sheet.get_data(as_text=True)
    assert "针对性练习" in html and 'data-practice="math.g3.perimeter"' in html and "家长签字" in html


def test_with_a_key_the_model_writes_practice_once_per_point_in_the_ledger(app, client, loopback):
    points = ["math.g7.inequalities", "math.g8.pythagoras", "math.g8.factorisation", "math.g7.coordinates"]
    key, exam_id = weak_student(app, points, grade=8)
    headers = {"Authorization": f"Bearer {key}"}
    before = loopback_call(loopback, "/_loopback/stats")["requests"]
    first = client.get("/v1/students/W1/practice", headers=headers, query_string={"source": "model"})
    assert first.status_code == 200, first.json
    assert [s["knowledge_point"] for s in first.json] == sorted(points[:3])  # equally weak: by id
    assert all(len(s["questions"]) == 5 for s in first.json)
    assert loopback_call(loopback, "/_loopback/stats")["requests"] == before + 3  # one call a point
    with app.extensions["markq"].sessions() as session:
        calls = session.scalars(select(Usage).where(Usage.exam_id == exam_id)).all()
        assert [c.outcome for c in calls] == ["ok"] * 3 and all(c.prompt_tokens > 0 and c.cost_usd > 0 for c in calls)
    again = client.get("/v1/students/W1/practice", headers=headers)  # auto: the model, from the cache
    assert again.json == first.json
    assert loopback_call(loopback, "/_loopback/stats")["requests"] == before + 3  # no second call
    with transaction(app.extensions["markq"].sessions) as session:
        session.get_one(Exam, exam_id).budget_usd = Decimal("0")
    cached = client.get("/v1/students/W1/practice", headers=headers, query_string={"source": "model"})
    assert cached.json == first.json  # served from the cache: no call, so no cap to reach
    fresh = weak_student(app, ["math.g9.probability", "math.g9.rotation"], grade=9)
    with transaction(app.extensions["markq"].sessions) as session:
        session.get_one(Exam, fresh[1]).budget_usd = Decimal("0")
    refused = client.get(
        "/v1/students/W1/practice", headers={"Authorization": f"Bearer {fresh[0]}"}, query_string={"source": "model"}
    )
    assert refused.status_code == 409 and refused.json["error"]["code"] == "budget_reached"
