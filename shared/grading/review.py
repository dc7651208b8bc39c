"""Review: when a verdict waits for a teacher, and the teacher's override of a verdict, a score or
knowledge points. Counts follow at once, because every report reads the effective columns; the
model's verdict stays for the agreement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from shared.grading import papers
from shared.grading.answer_key import AnswerKey
from shared.grading.marks import ERROR_TYPES, QuestionMark
from shared.grading.reader.layout import normalise_text
from shared.grading.reader.marking import mark_reading
from shared.grading.reader.reading import AnswerReading
from shared.grading.vocabulary import visible_to
from shared.models import (
    Exam,
    KnowledgePoint,
    Paper,
    QuestionKnowledgePoint,
    QuestionResult,
    utcnow,
)

REVIEW_BELOW_CONFIDENCE = 0.6  # the vision model's own confidence below which a verdict waits


class InvalidOverride(ValueError):
    pass


def local_review_reason(mark: QuestionMark, threshold: float) -> str | None:
    """Why a teacher must look at an offline verdict, or None."""
    if mark.error_type == "illegible":
        return f"illegible: {mark.explanation}"
    if mark.confidence < threshold:
        unsure = f"the offline reader is unsure (confidence {mark.confidence:.2f} < {threshold:g})"
        return f"{unsure}: {mark.explanation}" if mark.explanation else unsure
    return None


def review_reason(mark: QuestionMark, points: float, check: bool | None, key_answer: str | None) -> str | None:
    """Why a teacher must look at this verdict, or None. Illegible is not wrong; an unsure verdict
    is not final; a score above the points means the model misread the key; and where the
    deterministic check and the model disagree, neither is trusted."""
    if mark.error_type == "illegible":
        return "illegible: a teacher must read the answer"
    if mark.score > points:
        return f"the model gave {mark.score:g} of {points:g} points"
    if check is not None and check != mark.is_correct:
        relation = "equivalent to" if check else "not equivalent to"
        return (
            f"the check finds {mark.student_answer!r} {relation} the key {key_answer!r}, "
            f"but the model marked it {'correct' if mark.is_correct else 'wrong'}"
        )
    if mark.confidence < REVIEW_BELOW_CONFIDENCE:
        return f"the model is unsure (confidence {mark.confidence:.2f})"
    return None


def allowed_points(session: Session, exam: Exam, ids: list[str]) -> list[str]:
    found = set(
        session.scalars(
            select(KnowledgePoint.id).where(KnowledgePoint.id.in_(ids), visible_to(exam.school_id, exam.id))
        )
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidOverride(f"unknown knowledge points: {', '.join(missing)}")
    return list(dict.fromkeys(ids))


def override_question(session: Session, paper: Paper, question_id: str, changes: dict[str, Any]) -> QuestionResult:
    """Apply a teacher's verdict to one question of a graded paper (caller commits)."""
    question = next((q for q in paper.questions if q.question_id == question_id), None)
    if question is None:
        raise LookupError(f"paper has no question {question_id!r}")
    exam = session.get_one(Exam, paper.exam_id)
    if "student_answer" in changes:
        _correct_reading(session, exam, question, str(changes["student_answer"]), decided="is_correct" in changes)
    if "is_correct" in changes:
        question.is_correct = bool(changes["is_correct"])
        if "score" not in changes:
            question.score = question.max_score if question.is_correct else 0.0
        if question.is_correct:
            question.error_type = "none"
    if "score" in changes:
        score = float(changes["score"])
        if not 0 <= score <= question.max_score:
            raise InvalidOverride(f"score must be between 0 and {question.max_score:g}")
        question.score = score
    if question.score is None:
        raise InvalidOverride("this answer has no score yet: give is_correct or score")
    if "error_type" in changes:
        if changes["error_type"] not in ERROR_TYPES:
            raise InvalidOverride(f"error_type must be one of {', '.join(ERROR_TYPES)}")
        question.error_type = changes["error_type"]
    if "knowledge_points" in changes:
        points = allowed_points(session, exam, list(changes["knowledge_points"]))
        question.knowledge_points.clear()
        session.flush()
        question.knowledge_points.extend(QuestionKnowledgePoint(knowledge_point_id=kp) for kp in points)
    question.needs_review = False
    question.review_reason = None
    question.reviewed_at = utcnow()
    session.flush()
    papers.settle(paper, AnswerKey.model_validate(exam.answer_key).max_score)
    return question


def _correct_reading(session: Session, exam: Exam, question: QuestionResult, text: str, *, decided: bool) -> None:
    """The teacher's reading of the answer replaces markq's: it is what the mistake notebook shows,
    and, unless she also gives the verdict, it is marked against the key as the offline reader
    marks (explanation and correction in the exam's language)."""
    text = text.strip()
    if not text or len(text) > 500:
        raise InvalidOverride("a corrected reading needs 1 to 500 characters")
    key = AnswerKey.model_validate(exam.answer_key)
    key_question = next((q for q in key.questions if q.id == question.question_id), None)
    question.student_answer = text
    if decided or key_question is None or key_question.answer is None and not key_question.blanks:
        return
    reading = AnswerReading(question.question_id, "read", text, 1.0)
    mark = mark_reading(reading, key_question, exam.subject, exam.language)
    question.is_correct = mark.is_correct
    question.score = mark.score
    question.error_type = mark.error_type
    question.explanation = mark.explanation
    question.correction = mark.correction
    if not question.knowledge_points:
        question.knowledge_points.extend(
            QuestionKnowledgePoint(knowledge_point_id=kp) for kp in allowed_points(session, exam, mark.knowledge_points)
        )


def review_groups(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The review queue as answer groups: the same reading of the same question across students
    is decided once (as Gradescope's answer groups). Biggest groups first within a question."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        group = groups.setdefault(
            (item["question_id"], normalise_text(item["student_answer"])),
            {
                "question_id": item["question_id"],
                "student_answer": item["student_answer"],
                "correct_answer": item["correct_answer"],
                "max_score": item["max_score"],
                "model_is_correct": item["model_is_correct"],
                "model_score": item["model_score"],
                "review_reason": item["review_reason"],
                "knowledge_points": item["knowledge_points"],
                "papers": [],
            },
        )
        group["papers"].append({k: item[k] for k in ("paper_id", "student_ref", "class_label", "crop_url")})
    order = {qid: n for n, qid in enumerate(dict.fromkeys(item["question_id"] for item in items))}
    return sorted(groups.values(), key=lambda g: (order[g["question_id"]], -len(g["papers"])))


def _waiting(exam_id: Any) -> Any:
    """The exam's answers waiting for a teacher (over answers joined to their papers)."""
    return and_(Paper.exam_id == exam_id, QuestionResult.needs_review.is_(True))


def review_count(session: Session, exam_id: Any) -> int:
    """How many answers wait for a teacher: the review queue's length, counted in SQL."""
    query = select(func.count()).select_from(QuestionResult).join(Paper, QuestionResult.paper_id == Paper.id)
    return session.scalar(query.where(_waiting(exam_id))) or 0


def answer_crops(local_reading: dict[str, Any] | None, crops: dict[str, Any] | None) -> dict[str, str]:
    """Each question's stored crop: as the offline reader cut it, else as the vision lane cut it
    from the pages aligned to the exam's blank paper."""
    return {**((crops or {}).get("question_crops") or {}), **((local_reading or {}).get("question_crops") or {})}


def review_queue(session: Session, exam_id: Any) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Paper.id, Paper.student_ref, Paper.class_label, Paper.local_reading, Paper.crops, QuestionResult)
        .join(QuestionResult, QuestionResult.paper_id == Paper.id)
        .where(_waiting(exam_id))
        .order_by(Paper.class_label, Paper.student_ref, QuestionResult.position)
    ).all()
    return [
        {
            "paper_id": paper_id,
            "student_ref": student,
            "class_label": label,
            "question_id": q.question_id,
            "student_answer": q.student_answer,
            "correct_answer": q.correct_answer,
            "model_is_correct": q.model_is_correct,
            "model_score": q.model_score,
            "max_score": q.max_score,
            "error_type": q.error_type,
            "confidence": q.confidence,
            "check_equivalent": q.check_equivalent,
            "review_reason": q.review_reason,
            "knowledge_points": [kp.knowledge_point_id for kp in q.knowledge_points],
            "has_crop": q.question_id in answer_crops(reading, crops),
        }
        for paper_id, student, label, reading, crops, q in rows
    ]
