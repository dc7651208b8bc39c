"""Practice for weak points without a key: new questions per knowledge point, answers that the
equivalence check confirms against the question's own arithmetic (worked out here by sympy from
the printed question, not by the template)."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import sympy

from shared.db import transaction
from shared.grading.equivalence import equivalent
from shared.grading.practice import TEMPLATES, PracticeQuestion, practice_set
from shared.models import Exam, Paper, PaperStatus, QuestionKnowledgePoint, QuestionResult
from shared.schools import create_key, create_school

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


def test_a_students_three_weakest_points_get_practice_in_her_exams_language(app, client):
    points = ["math.g2.times-tables", "math.g3.perimeter", "math.g6.pigeonhole", "math.g3.area"]
    with transaction(app.extensions["markq"].sessions) as session:
        school = create_school(session, f"Practice school {secrets.token_hex(3)}")
        key = create_key(session, school).key
        exam = Exam(
            school_id=school.id,
            title="练习",
            subject="math",
            grade=3,
            language="zh",
            answer_key={"questions": [{"id": str(n), "answer": "1", "points": 1} for n in range(1, 5)]},
            model="gpt-4o",
            image_detail="high",
        )
        session.add(exam)
        session.flush()
        paper = Paper(
            school_id=school.id, exam_id=exam.id, student_ref="W1", status=PaperStatus.graded, score=1, max_score=4
        )
        session.add(paper)
        session.flush()
        for n, point in enumerate(points, start=1):
            result = QuestionResult(
                paper_id=paper.id,
                position=n,
                question_id=str(n),
                student_answer="0",
                correct_answer="1",
                is_correct=n == 4,  # the area question right: three weak points
                score=float(n == 4),
                max_score=1.0,
                error_type="calculation",
                explanation="",
                correction="",
                confidence=0.95,
                model_is_correct=n == 4,
                model_score=float(n == 4),
            )
            result.knowledge_points.append(QuestionKnowledgePoint(knowledge_point_id=point))
            session.add(result)
        exam_id = exam.id
    headers = {"Authorization": f"Bearer {key}"}
    sets = client.get("/v1/students/W1/practice", headers=headers).json
    assert [s["knowledge_point"] for s in sets] == points[:3]
    assert [len(s["questions"]) for s in sets] == [5, 5, 0]  # no template for the pigeonhole principle
    assert "周长" in sets[1]["questions"][0]["question"]  # Chinese by default
    english = client.get("/v1/students/W1/practice", headers=headers, query_string={"language": "en"}).json
    assert "perimeter" in english[1]["questions"][0]["question"]
    assert client.get("/v1/students/nobody/practice", headers=headers).status_code == 404
    link = client.post(f"/v1/exams/{exam_id}/share", headers=headers, json={"student_ref": "W1"}).json
    url = urlsplit(link["url"])
    sheet = client.get(f"{url.path}?{url.query}")
    assert sheet.status_code == 200
    html = sheet.get_data(as_text=True)
    assert "针对性练习" in html and 'data-practice="math.g3.perimeter"' in html and "家长签字" in html
