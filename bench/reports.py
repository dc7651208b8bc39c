"""How report time grows with the number of stored question results.

    python -m bench.reports

Builds, in a fresh PostgreSQL database, one exam with 1,000 question results and one with 100,000
(10 questions a paper, one or two knowledge points each, five classes), then times the full exam
report (best of 3) and the student report for each; then 20 exams a week apart for one class of 40
and times one student's report with its weak points' trend across the 20 (against the same report
for a student of one exam), a class's report and the school's weak points by grade. Targets: the
100,000 report in under a second, the student's 20-exam trend under 100 ms.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import insert, text

from shared.db import make_engine, make_session_factory, transaction
from shared.grading.reports import class_report, exam_report, school_weak_points, student_report
from shared.grading.vocabulary import packaged_vocabulary
from shared.migrate import migrate
from shared.models import (
    Exam,
    Paper,
    PaperStatus,
    QuestionKnowledgePoint,
    QuestionResult,
    School,
)

ADMIN_URL = os.environ.get("MARKQ_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
QUESTIONS = 10
TREND_EXAMS = 20


def build_exam(
    sessions,
    school_id: int,
    results: int,
    points: list[str],
    rng: random.Random,
    created_at: datetime | None = None,
    prefix: str = "S",
) -> uuid.UUID:
    exam_id = uuid.uuid4()
    key = {"questions": [{"id": str(q), "answer": "1", "points": 2} for q in range(1, QUESTIONS + 1)]}
    with transaction(sessions) as session:
        session.add(
            Exam(
                id=exam_id,
                school_id=school_id,
                title=f"bench {results}",
                subject="math",
                grade=5,
                language="zh",
                answer_key=key,
                rubric="",
                model="gpt-4o",
                image_detail="high",
            )
        )
    papers = results // QUESTIONS
    result_id = 0
    with transaction(sessions) as session:
        paper_rows, question_rows, point_rows = [], [], []
        for n in range(papers):
            paper_id = uuid.uuid4()
            right = [rng.random() < 0.7 for _ in range(QUESTIONS)]
            paper_rows.append(
                {
                    "id": paper_id,
                    "school_id": school_id,
                    "exam_id": exam_id,
                    "student_ref": f"{prefix}{n:05d}",
                    "created_at": created_at or datetime.now(UTC),
                    "class_label": f"5({n % 5 + 1})",
                    "status": PaperStatus.graded,
                    "attempts": 1,
                    "score": 2.0 * sum(right),
                    "max_score": 2.0 * QUESTIONS,
                }
            )
            for q in range(QUESTIONS):
                result_id += 1
                question_rows.append(
                    {
                        "id": None,
                        "paper_id": paper_id,
                        "position": q,
                        "question_id": str(q + 1),
                        "student_answer": "1" if right[q] else "2",
                        "correct_answer": "1",
                        "is_correct": right[q],
                        "score": 2.0 if right[q] else 0.0,
                        "max_score": 2.0,
                        "error_type": "none" if right[q] else "calculation",
                        "explanation": "",
                        "correction": "" if right[q] else "= 1",
                        "confidence": 0.9,
                        "needs_review": False,
                        "from_key": True,
                        "model_is_correct": right[q],
                        "model_score": 2.0,
                        "model_knowledge_points": [],
                    }
                )
        session.execute(insert(Paper), paper_rows)
        ids = (
            session.execute(
                insert(QuestionResult).returning(QuestionResult.id, sort_by_parameter_order=True),
                [{k: v for k, v in row.items() if k != "id"} for row in question_rows],
            )
            .scalars()
            .all()
        )
        for result, row in zip(ids, question_rows, strict=True):
            q = int(row["question_id"])
            pair = [points[q % len(points)], points[(q + 3) % len(points)]]  # each question tests fixed points
            for point in pair[: rng.choice((1, 2))]:
                point_rows.append({"question_result_id": result, "knowledge_point_id": point})
        session.execute(insert(QuestionKnowledgePoint), point_rows)
    return exam_id


def timed(call, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    name = f"markq_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    engine = make_engine(url)
    try:
        migrate(url)
        sessions = make_session_factory(engine)
        with transaction(sessions) as session:
            school = School(name="bench")
            session.add(school)
            session.flush()
            school_id = school.id
        points = [p["id"] for p in packaged_vocabulary()[1] if p["subject"] == "math" and p["grade"] in (4, 5)]
        rng = random.Random(7)
        figures = {}
        for results in (1_000, 100_000):
            started = time.perf_counter()
            exam_id = build_exam(sessions, school_id, results, points, rng)
            built = time.perf_counter() - started
            with sessions() as session:
                exam = session.get_one(Exam, exam_id)
                report = exam_report(session, exam)
                stale = timed(lambda: exam_report(session, exam), repeat=1)
                # A bulk load leaves the planner without statistics until autovacuum's ANALYZE runs
                # (within a minute on a live database); the report is timed both ways.
                session.execute(text("ANALYZE"))
                seconds = timed(lambda: exam_report(session, exam))
                student = timed(lambda: student_report(session, school_id, "S00001"))
            attempted = sum(row["attempted"] for row in report["missed_knowledge_points"])
            figures[results] = {
                "report_seconds": round(seconds, 4),
                "student_report_seconds": round(student, 4),
                "report_seconds_before_analyze": round(stale, 4),
                "papers": len(report["papers"]),
                "knowledge_point_rows": attempted,
                "build_seconds": round(built, 1),
            }
            print(
                f"{results:>7} question results ({len(report['papers'])} papers, {attempted} point tags): "
                f"exam report {seconds * 1000:.1f} ms ({stale * 1000:.0f} ms before ANALYZE), "
                f"student report {student * 1000:.1f} ms"
            )
        # a class's school year: 20 exams a week apart, the same 40 students in each
        start = datetime.now(UTC) - timedelta(weeks=20)
        for week in range(TREND_EXAMS):
            build_exam(sessions, school_id, 40 * QUESTIONS, points, rng, start + timedelta(weeks=week), prefix="T")
        with sessions() as session:
            session.execute(text("ANALYZE"))
            trend_report = student_report(session, school_id, "T00001")
            trend = timed(lambda: student_report(session, school_id, "T00001"), repeat=5)
            one_exam = timed(lambda: student_report(session, school_id, "S00001"), repeat=5)
            klass = timed(lambda: class_report(session, school_id, "5(2)"), repeat=3)
            school = timed(lambda: school_weak_points(session, school_id), repeat=3)
        longest = max(len(w["trend"]) for w in trend_report["weak_points"])
        print(
            f"student over {len(trend_report['exams'])} exams (trend of up to {longest} points a knowledge point): "
            f"{trend * 1000:.1f} ms (one exam: {one_exam * 1000:.1f} ms); a class over all exams "
            f"{klass * 1000:.1f} ms; the school's weak points by grade {school * 1000:.1f} ms"
        )
        trend_met = trend < 0.1
        print(f"a student's trend over {TREND_EXAMS} exams under 100 ms: {'MET' if trend_met else 'NOT MET'}")
        ratio = figures[100_000]["report_seconds"] / figures[1_000]["report_seconds"]
        met = figures[100_000]["report_seconds"] < 1.0 and trend_met
        print(
            f"100,000 / 1,000 report time ratio: {ratio:.1f} (results grew 100x); "
            f"100,000 report under 1 s: {'MET' if met else 'NOT MET'}"
        )
        print(
            json.dumps(
                {
                    "report_seconds_1000": figures[1_000]["report_seconds"],
                    "report_seconds_100000": figures[100_000]["report_seconds"],
                    "ratio": round(ratio, 2),
                    "student_trend_seconds_20_exams": round(trend, 4),
                    "student_seconds_1_exam": round(one_exam, 4),
                    "trend_ratio": round(trend / one_exam, 2),
                    "class_report_seconds": round(klass, 4),
                    "school_weak_points_seconds": round(school, 4),
                    "target_met": met,
                    "detail": figures,
                }
            )
        )
    finally:
        engine.dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
