"""Exam statistics on a constructed class, against values worked out by hand.

Four students, three one-point questions (1 = right):

    P1: 1 1 1  (3)      number right: mean 1.5, population variance 1.25, sd 1.1180
    P2: 1 1 0  (2)      difficulty: q1 3/4, q2 2/4, q3 1/4
    P3: 1 0 0  (1)      point-biserial (M1 - M0) / sd * sqrt(p q):
    P4: 0 0 0  (0)        q1 (2 - 0) / 1.1180 * sqrt(.75 * .25) = 0.7746
                          q2 (2.5 - 0.5) / 1.1180 * sqrt(.5 * .5) = 0.8944
                          q3 (3 - 1) / 1.1180 * sqrt(.25 * .75) = 0.7746
    KR-20 = 3 / 2 * (1 - (.1875 + .25 + .1875) / 1.25) = 0.75
"""

from __future__ import annotations

import csv
import io
import secrets

from shared.db import transaction
from shared.grading.statistics import exam_statistics
from shared.models import Exam, Paper, PaperStatus
from shared.schools import create_key, create_school
from tests.helpers import stored_answer, stored_exam

KEY = {
    "questions": [
        {"id": "1", "answer": "56", "points": 1},
        {"id": "2", "answer": "0.75", "points": 1},
        {"id": "3", "answer": "24厘米", "points": 1},
    ]
}
WROTE = {  # what each student wrote; the key's answer where right
    "P1": ("56", "0.75", "24厘米"),
    "P2": ("56", "0.75", "12厘米"),
    "P3": ("56", "0.7", "12 厘米"),
    "P4": ("54", "0.7", "32厘米"),
}


def constructed_exam(app) -> tuple[Exam, str]:
    with transaction(app.extensions["markq"].sessions) as session:
        school = create_school(session, f"Stats school {secrets.token_hex(3)}")
        key = create_key(session, school).key
        exam = stored_exam(session, school.id, "统计", KEY)
        for student, answers in WROTE.items():
            paper = Paper(school_id=school.id, exam_id=exam.id, student_ref=student, status=PaperStatus.graded)
            session.add(paper)
            session.flush()
            right = [a == q["answer"] for a, q in zip(answers, KEY["questions"], strict=True)]
            paper.score, paper.max_score = float(sum(right)), 3.0
            for position, (answer, question, ok) in enumerate(zip(answers, KEY["questions"], right, strict=True)):
                session.add(stored_answer(paper.id, position, question["id"], answer, question["answer"], ok))
        session.flush()
        session.expunge(exam)
        return exam, key


def test_difficulty_discrimination_kr20_and_common_wrong_answers_equal_hand_computed_values(app):
    exam, _key = constructed_exam(app)
    with app.extensions["markq"].sessions() as session:
        stats = exam_statistics(session, exam.id)
    assert (stats["papers"], stats["mean"], stats["median"], stats["standard_deviation"]) == (4, 1.5, 1.5, 1.118)
    assert stats["kr20"] == 0.75
    by_question = {q["question_id"]: q for q in stats["questions"]}
    assert [by_question[q]["difficulty"] for q in "123"] == [0.75, 0.5, 0.25]
    assert [by_question[q]["discrimination"] for q in "123"] == [0.7746, 0.8944, 0.7746]
    assert by_question["1"]["common_wrong_answers"] == [{"answer": "54", "count": 1}]
    assert by_question["2"]["common_wrong_answers"] == [{"answer": "0.7", "count": 2}]
    # "12厘米" and "12 厘米" are the same wrong answer, read with and without a space
    assert by_question["3"]["common_wrong_answers"][0]["count"] == 2
    assert by_question["3"]["common_wrong_answers"][1] == {"answer": "32厘米", "count": 1}
    histogram = {b["from"]: b["papers"] for b in stats["histogram"]}
    assert (histogram[0], histogram[30], histogram[60], histogram[90]) == (1, 1, 1, 1)  # 0, 1/3, 2/3, 3/3


def test_a_question_waiting_for_review_is_left_out_and_its_paper_marked_provisional(app):
    exam, _key = constructed_exam(app)
    with transaction(app.extensions["markq"].sessions) as session:
        paper = session.query(Paper).filter_by(exam_id=exam.id, student_ref="P4").one()
        paper.pending_points = 1.0
        waiting = next(q for q in paper.questions if q.question_id == "3")
        waiting.needs_review = True
    with app.extensions["markq"].sessions() as session:
        stats = exam_statistics(session, exam.id)
    assert stats["provisional"] == 1
    by_question = {q["question_id"]: q for q in stats["questions"]}
    assert by_question["3"]["attempted"] == 3 and by_question["3"]["difficulty"] == round(1 / 3, 4)


def test_the_gradebook_csv_has_a_row_per_student_and_a_column_per_question(app, client):
    exam, key = constructed_exam(app)
    reply = client.get(f"/v1/exams/{exam.id}/report.csv?table=gradebook", headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200
    rows = list(csv.DictReader(io.StringIO(reply.get_data(as_text=True))))
    assert [r["student_ref"] for r in rows] == ["P1", "P2", "P3", "P4"]
    assert [(r["1"], r["2"], r["3"], r["total"]) for r in rows][1] == ("1.0", "1.0", "0.0", "2.0")
    report = client.get(f"/v1/exams/{exam.id}/report", headers={"Authorization": f"Bearer {key}"}).json
    assert report["statistics"]["kr20"] == 0.75 and report["statistics"]["histogram"][0]["from"] == 0
