"""Exams: creation, progress, cost so far, and the first report, all from SQL."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.grading import lanes
from shared.grading.answer_key import AnswerKey
from shared.grading.exam_cost import exam_cost
from shared.grading.lane_batch import exam_batches
from shared.grading.reports import review_summary
from shared.grading.vocabulary import UnknownPoints, add_school_points, resolve_points
from shared.models import (
    Exam,
    FlexFallback,
    Paper,
    PaperStatus,
    Priority,
    Reader,
    School,
    Usage,
)
from shared.spending import ledger
from shared.spending.costs import UnknownModel, known_models, model_card
from shared.webhooks import summary as webhook_summary


class InvalidExam(ValueError):
    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


def _located(error: Any, answer_key: Any) -> dict[str, Any]:
    """A validation error placed by the question's id as the teacher wrote it ("question 7"), not
    its position in the list; `loc` keeps the JSON path for programs."""
    loc = list(error["loc"])
    located: dict[str, Any] = {"loc": ["answer_key", *loc], "msg": error["msg"].removeprefix("Value error, ")}
    if len(loc) >= 2 and loc[0] == "questions" and isinstance(loc[1], int):
        questions = answer_key.get("questions") if isinstance(answer_key, dict) else None
        question = questions[loc[1]] if isinstance(questions, list) and loc[1] < len(questions) else None
        qid = question.get("id") if isinstance(question, dict) else None
        located["question"] = str(qid) if qid is not None else f"number {loc[1] + 1} in the list"
        located["field"] = ".".join(str(part) for part in loc[2:]) or None
    return located


def create_exam(session: Session, school: School, fields: dict[str, Any], *, vision_available: bool = True) -> Exam:
    """Validate and store an exam. `vision_available`: whether this installation has a key for the
    vision model (providers vision and cascade need one)."""
    try:
        answer_key = AnswerKey.model_validate(fields["answer_key"])
    except ValidationError as exc:
        details = [_located(error, fields["answer_key"]) for error in exc.errors()]
        first = details[0]
        where = f"question {first['question']}" + (f", {first['field']}" if first.get("field") else "") + ": "
        raise InvalidExam(
            f"the answer key is not valid: {where if 'question' in first else ''}{first['msg']}", details
        ) from exc
    reader, priority = (
        Reader(fields.get("provider", Reader.vision)),
        Priority(fields.get("priority", Priority.standard)),
    )
    unanswered = [q.id for q in answer_key.questions if not q.answer]
    if (refusal := lanes.check_lane(reader, priority, unanswered, vision_available)) is not None:
        raise InvalidExam(refusal)
    try:
        model_card(fields["model"])
    except UnknownModel as exc:
        raise InvalidExam(f"unknown model {fields['model']!r}; known: {', '.join(known_models())}") from exc
    if (refusal := lanes.check_flex(priority, fields["model"])) is not None:
        raise InvalidExam(refusal)
    own = {point["id"]: point for point in fields.get("knowledge_points") or []}
    try:  # the exam's own points are the school's: later exams count into them
        add_school_points(session, school.id, list(own.values()), fields["subject"], fields["grade"])
        resolved = resolve_points(session, school.id, answer_key.knowledge_point_ids(), fields["subject"])
    except UnknownPoints as exc:
        raise InvalidExam(
            f"{exc}; list them with GET /v1/knowledge-points, or add them to the exam's knowledge_points"
        ) from exc
    for question in answer_key.questions:
        question.knowledge_points = list(dict.fromkeys(resolved[kp] for kp in question.knowledge_points))
    exam_id = uuid.uuid4()
    exam = Exam(
        id=exam_id,
        school_id=school.id,
        title=fields["title"],
        subject=fields["subject"],
        grade=fields["grade"],
        language=fields["language"],
        answer_key=answer_key.model_dump(mode="json"),
        rubric=fields["rubric"],
        model=fields["model"],
        image_detail=fields["image_detail"],
        budget_usd=fields.get("budget_usd"),
        trial_papers=fields.get("trial_papers"),
        priority=priority,
        flex_fallback=FlexFallback(fields.get("flex_fallback") or FlexFallback.wait),
        provider=reader,
        callback_url=fields.get("callback_url"),
        callback_secret=secrets.token_hex(32) if fields.get("callback_url") else None,
    )
    session.add(exam)
    session.flush()
    return exam


def get_exam(session: Session, school: School, exam_id: uuid.UUID) -> Exam | None:
    """The exam, only if it belongs to `school`."""
    return session.scalar(select(Exam).where(Exam.id == exam_id, Exam.school_id == school.id))


def exam_view(session: Session, exam: Exam, *, cost: bool = True) -> dict[str, Any]:
    """The exam with paper counts by status and the usage and cost so far; with `cost`, also its
    estimate against its actual cost (its request counted: left out of long lists)."""
    counts = dict(
        session.execute(select(Paper.status, func.count()).where(Paper.exam_id == exam.id).group_by(Paper.status)).all()
    )
    progress = {status.value: int(counts.get(status, 0)) for status in PaperStatus}
    return {
        **{c.key: getattr(exam, c.key) for c in Exam.__table__.columns if c.key != "callback_secret"},
        "webhooks": webhook_summary(session, exam.id),
        "review": review_summary(session, exam.id),
        "batches": exam_batches(session, exam.id),
        "papers": sum(progress.values()),
        "progress": progress,
        "usage": ledger.usage_totals(session, Usage.exam_id == exam.id),
        **({"cost": exam_cost(session, exam, progress)} if cost else {}),
        "warnings": lane_warnings(exam),
    }


def lane_warnings(exam: Exam) -> list[str]:
    """What the exam asks of its lane that the lane cannot do, in the teacher's words."""
    if not lanes.reads_offline(exam):
        return []
    key = AnswerKey.model_validate(exam.answer_key)
    noted = [q.id for q in key.questions if q.notes]
    warnings = []
    if exam.rubric.strip() or noted:
        where = "the rubric" if exam.rubric.strip() else f"the partial-credit notes of question(s) {', '.join(noted)}"
        warnings.append(
            f"the offline reader cannot apply {where}: it marks each answer right or wrong against the key "
            "(blanks earn their own points); a teacher applies the rest in review"
            + (", or the vision model for the questions it is asked" if exam.provider == Reader.cascade else "")
        )
    return warnings
