"""Reports: every number computed in SQL from stored results; the model never invents counts.

A question counts once its verdict is final: its paper is graded (or awaiting review elsewhere)
and the question itself is not waiting for a teacher. After a review, the teacher's verdict counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.orm import Session

from shared.models import (
    Exam,
    KnowledgePoint,
    Paper,
    PaperStatus,
    QuestionKnowledgePoint,
    QuestionResult,
)

GRADED = Paper.status.in_([PaperStatus.graded, PaperStatus.needs_review])
FINAL = and_(GRADED, QuestionResult.needs_review.is_(False))
MISSED = func.sum(case((QuestionResult.is_correct.is_(False), 1), else_=0))
BUCKETS = [(0, 60, "0-59%"), (60, 70, "60-69%"), (70, 80, "70-79%"), (80, 90, "80-89%"), (90, 101, "90-100%")]
PENDING_BUCKET = "pending review"


def _rows(session: Session, query: Any) -> list[dict[str, Any]]:
    return [row._asdict() for row in session.execute(query)]


def _tagged(*columns: Any) -> Any:
    """A select over each answer's knowledge-point tags, with the answer and its paper joined."""
    return (
        select(*columns)
        .select_from(QuestionKnowledgePoint)
        .join(QuestionResult, QuestionResult.id == QuestionKnowledgePoint.question_result_id)
        .join(Paper, Paper.id == QuestionResult.paper_id)
    )


def missed_points(session: Session, *conditions: Any, by: Any = None) -> list[dict[str, Any]]:
    """Knowledge points ranked by times missed, with attempted as the denominator; with `by` (a
    column such as the class label), ranked within each of its values."""
    columns = [KnowledgePoint.id, KnowledgePoint.name_zh, KnowledgePoint.name_en]
    group = [] if by is None else [by]
    query = (
        _tagged(*group, *columns, MISSED.label("missed"), func.count().label("attempted"))
        .join(KnowledgePoint, KnowledgePoint.id == QuestionKnowledgePoint.knowledge_point_id)
        .where(FINAL, *conditions)
        .group_by(*group, *columns)
        .order_by(*group, MISSED.desc(), KnowledgePoint.id)
    )
    if by is not None and by.class_ is Exam:
        query = query.join(Exam, Exam.id == Paper.exam_id)
    return _rows(session, query)


def score_distribution(session: Session, exam_id: Any) -> list[dict[str, Any]]:
    """Papers by the share of the points decided so far that they earned. A paper with answers
    waiting for review is placed by its decided points and counted as provisional; pending points
    are never counted as 0. Papers with nothing decided yet are one bucket of their own."""
    decided = Paper.max_score - Paper.pending_points
    percent = cast(Paper.score, Float) * 100 / decided
    bucket = case(
        (decided <= 0, PENDING_BUCKET),
        *[(and_(percent >= low, percent < high), label) for low, high, label in BUCKETS],
        else_="?",
    )
    provisional = func.sum(case((Paper.pending_points > 0, 1), else_=0))
    counts = {
        label: (int(papers), int(pending or 0))
        for label, papers, pending in session.execute(
            select(bucket, func.count(), provisional)
            .where(Paper.exam_id == exam_id, GRADED, Paper.max_score > 0)
            .group_by(bucket)
        ).all()
    }
    labels = [label for _low, _high, label in BUCKETS] + [PENDING_BUCKET]
    return [
        {"range": label, "papers": counts.get(label, (0, 0))[0], "provisional": counts.get(label, (0, 0))[1]}
        for label in labels
    ]


def question_accuracy(session: Session, exam_id: Any) -> list[dict[str, Any]]:
    correct = func.sum(case((QuestionResult.is_correct.is_(True), 1), else_=0))
    rows = _rows(
        session,
        (
            select(
                QuestionResult.question_id,
                func.min(QuestionResult.position).label("position"),
                func.count().label("attempted"),
                correct.label("correct"),
                func.avg(QuestionResult.score).label("mean_score"),
                func.max(QuestionResult.max_score).label("points"),
            )
            .join(Paper, Paper.id == QuestionResult.paper_id)
            .where(Paper.exam_id == exam_id, FINAL)
            .group_by(QuestionResult.question_id)
            .order_by("position")
        ),
    )
    for row in rows:
        row.pop("position")
        row["accuracy"] = round(row["correct"] / row["attempted"], 4) if row["attempted"] else None
        row["mean_score"] = round(float(row["mean_score"] or 0), 3)
    return rows


def class_summary(session: Session, exam_id: Any) -> list[dict[str, Any]]:
    percent = cast(Paper.score, Float) * 100 / Paper.max_score
    rows = _rows(
        session,
        (
            select(Paper.class_label, func.count().label("papers"), func.avg(percent).label("mean_percent"))
            .where(Paper.exam_id == exam_id, GRADED, Paper.max_score > 0)
            .group_by(Paper.class_label)
            .order_by(Paper.class_label)
        ),
    )
    for row in rows:
        row["mean_percent"] = round(float(row["mean_percent"] or 0), 1)
    return rows


def review_summary(session: Session, exam_id: Any) -> dict[str, Any]:
    """How many answers wait for a teacher, how many were reviewed, and how often the model's
    verdict matched the teacher's on the reviewed ones."""
    reviewed = QuestionResult.reviewed_at.is_not(None)
    agree = func.sum(case((and_(reviewed, QuestionResult.model_is_correct == QuestionResult.is_correct), 1), else_=0))
    waiting, done, agreed = session.execute(
        select(
            func.sum(case((QuestionResult.needs_review.is_(True), 1), else_=0)),
            func.sum(case((reviewed, 1), else_=0)),
            agree,
        )
        .join(Paper, Paper.id == QuestionResult.paper_id)
        .where(Paper.exam_id == exam_id)
    ).one()
    done = int(done or 0)
    return {
        "needing_review": int(waiting or 0),
        "reviewed": done,
        "model_teacher_agreement": round(int(agreed or 0) / done, 4) if done else None,
    }


def exam_report(session: Session, exam: Exam) -> dict[str, Any]:
    from shared.grading.statistics import exam_statistics  # it builds on this module's FINAL and GRADED

    papers = _rows(
        session,
        (
            select(
                Paper.id,
                Paper.student_ref,
                Paper.class_label,
                Paper.status,
                Paper.status_reason,
                Paper.score,
                Paper.max_score,
                Paper.pending_points,
            )
            .where(Paper.exam_id == exam.id)
            .order_by(Paper.class_label, Paper.student_ref)
        ),
    )
    for paper in papers:
        paper["status"] = paper["status"].value
    by_class: dict[str, list[dict[str, Any]]] = {}
    for row in missed_points(session, Paper.exam_id == exam.id, by=Paper.class_label):
        by_class.setdefault(row.pop("class_label"), []).append(row)
    return {
        "exam_id": exam.id,
        "title": exam.title,
        "language": exam.language,
        "papers": papers,
        "score_distribution": score_distribution(session, exam.id),
        "questions": question_accuracy(session, exam.id),
        "missed_knowledge_points": missed_points(session, Paper.exam_id == exam.id),
        "classes": [
            {**row, "missed_knowledge_points": by_class.get(row["class_label"], [])}
            for row in class_summary(session, exam.id)
        ],
        "review": review_summary(session, exam.id),
        "statistics": exam_statistics(session, exam.id),
    }


def point_trend(session: Session, *scope: Any) -> dict[str, list[dict[str, Any]]]:
    """Each knowledge point's missed answers out of attempted, exam by exam in date order, over
    the papers in `scope` (final verdicts): whether practice is working."""
    rows = session.execute(
        _tagged(
            QuestionKnowledgePoint.knowledge_point_id,
            Paper.exam_id,
            func.min(Paper.created_at).label("date"),
            MISSED.label("missed"),
            func.count().label("attempted"),
        )
        .where(FINAL, *scope)
        .group_by(QuestionKnowledgePoint.knowledge_point_id, Paper.exam_id)
        .order_by(QuestionKnowledgePoint.knowledge_point_id, func.min(Paper.created_at))
    ).all()
    trend: dict[str, list[dict[str, Any]]] = {}
    for point, exam_id, date, missed, attempted in rows:
        trend.setdefault(point, []).append(
            {"exam_id": exam_id, "date": date, "missed": int(missed or 0), "attempted": int(attempted)}
        )
    return trend


def _prompts(answer_key: dict[str, Any]) -> dict[str, str]:
    return {str(q.get("id")): q.get("prompt") or "" for q in answer_key.get("questions", [])}


def _window(since: datetime | None, until: datetime | None) -> list[Any]:
    """Papers submitted in [since, until), either end open when not given."""
    return [
        *([Paper.created_at >= since] if since is not None else []),
        *([Paper.created_at < until] if until is not None else []),
    ]


def known_student(session: Session, school_id: int, student_ref: str) -> bool:
    """Whether the school has any paper of this student (a report of nobody is a 404, not zeros)."""
    query = select(Paper.id).where(Paper.school_id == school_id, Paper.student_ref == student_ref).limit(1)
    return session.scalar(query) is not None


def class_report(
    session: Session, school_id: int, class_label: str, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any] | None:
    """A class's weak knowledge points across its exams in a time window (None: no such class)."""
    klass = [Paper.school_id == school_id, Paper.class_label == class_label]
    scope = [*klass, *_window(since, until)]
    papers, students, exams = session.execute(
        select(
            func.count(), func.count(func.distinct(Paper.student_ref)), func.count(func.distinct(Paper.exam_id))
        ).where(*scope, GRADED)
    ).one()
    if not papers and session.scalar(select(Paper.id).where(*klass).limit(1)) is None:
        return None
    weak = missed_points(session, *scope)
    trend = point_trend(session, *scope)
    return {
        "class_label": class_label,
        "papers": int(papers),
        "students": int(students),
        "exams": int(exams),
        "weak_points": [{**w, "trend": trend.get(w["id"], [])} for w in weak if w["missed"]],
    }


def school_weak_points(
    session: Session, school_id: int, since: datetime | None = None, until: datetime | None = None, top: int = 10
) -> list[dict[str, Any]]:
    """The school's most-missed knowledge points by grade (the exam's grade) in a time window: for
    each grade, its papers and the `top` points missed most, missed out of attempted."""
    scope = [Paper.school_id == school_id, *_window(since, until)]
    papers = dict(
        session.execute(
            select(Exam.grade, func.count())
            .select_from(Paper)
            .join(Exam, Exam.id == Paper.exam_id)
            .where(*scope, GRADED)
            .group_by(Exam.grade)
        ).all()
    )
    grades: dict[int, list[dict[str, Any]]] = {grade: [] for grade in sorted(papers)}
    for row in missed_points(session, *scope, by=Exam.grade):
        ranked = grades.setdefault(row.pop("grade"), [])
        if row["missed"] and len(ranked) < top:
            ranked.append(row)
    return [
        {"grade": grade, "papers": int(papers.get(grade, 0)), "most_missed": ranked} for grade, ranked in grades.items()
    ]


def student_report(
    session: Session,
    school_id: int,
    student_ref: str,
    since: datetime | None = None,
    until: datetime | None = None,
    exam_id: Any = None,
) -> dict[str, Any]:
    """One student's exams, weak points across them, and the mistake notebook (错题本)."""
    scope = [Paper.school_id == school_id, Paper.student_ref == student_ref, *_window(since, until)]
    if exam_id is not None:
        scope.append(Paper.exam_id == exam_id)
    exams = _rows(
        session,
        (
            select(
                Exam.id.label("exam_id"),
                Exam.title,
                Exam.subject,
                Exam.language,
                Paper.id.label("paper_id"),
                Paper.class_label,
                Paper.status,
                Paper.score,
                Paper.max_score,
                Paper.pending_points,
                Paper.created_at,
            )
            .join(Exam, Exam.id == Paper.exam_id)
            .where(*scope)
            .order_by(Paper.created_at)
        ),
    )
    for row in exams:
        row["status"] = row["status"].value
    mistakes = session.execute(
        _tagged(
            KnowledgePoint.id,
            KnowledgePoint.name_zh,
            KnowledgePoint.name_en,
            Exam.id.label("exam_id"),
            Exam.title,
            Paper.created_at,
            QuestionResult.question_id,
            QuestionResult.student_answer,
            QuestionResult.correct_answer,
            QuestionResult.error_type,
            QuestionResult.explanation,
            QuestionResult.correction,
        )
        .join(Exam, Exam.id == Paper.exam_id)
        .join(KnowledgePoint, KnowledgePoint.id == QuestionKnowledgePoint.knowledge_point_id)
        .where(FINAL, QuestionResult.is_correct.is_(False), *scope)
        .order_by(KnowledgePoint.id, Paper.created_at, QuestionResult.position)
    ).all()
    # each exam's question texts, read once (not an answer key for every wrong answer)
    keys = session.execute(select(Exam.id, Exam.answer_key).where(Exam.id.in_({row.exam_id for row in mistakes})))
    prompts = {exam_id: _prompts(answer_key) for exam_id, answer_key in keys}
    notebook: dict[str, dict[str, Any]] = {}
    for row in mistakes:
        group = notebook.setdefault(
            row.id, {"knowledge_point": row.id, "name_zh": row.name_zh, "name_en": row.name_en, "mistakes": []}
        )
        group["mistakes"].append(
            {
                "exam": row.title,
                "date": row.created_at,
                "question_id": row.question_id,
                "question_text": prompts[row.exam_id].get(row.question_id, ""),
                "student_answer": row.student_answer,
                "correct_answer": row.correct_answer,
                "error_type": row.error_type,
                "explanation": row.explanation,
                "correction": row.correction,
            }
        )
    weak = missed_points(session, *scope)
    trend = point_trend(session, *scope)
    return {
        "student_ref": student_ref,
        "exams": exams,
        "weak_points": [{**w, "trend": trend.get(w["id"], [])} for w in weak if w["missed"]],
        "mistake_notebook": sorted(notebook.values(), key=lambda g: -len(g["mistakes"])),
    }
