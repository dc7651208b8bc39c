"""Exams: creation, progress, cost so far, and the first report, all from SQL."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from shared.spending.costs import UnknownModel, known_models, model_card
from shared.grading.answer_key import AnswerKey
from shared.grading.batches import exam_batches
from shared.webhooks import summary as webhook_summary
from shared.grading.reports import review_summary
from shared.grading.vocabulary import custom_point_id, unknown_points
from shared.models import Exam, KnowledgePoint, Paper, PaperStatus, School, Usage


class InvalidExam(ValueError):
    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


def create_exam(session: Session, school: School, fields: dict[str, Any], *, vision_available: bool = True) -> Exam:
    """Validate and store an exam. `vision_available`: whether this installation has a key for the
    vision model (providers vision and cascade need one)."""
    try:
        answer_key = AnswerKey.model_validate(fields["answer_key"])
    except ValidationError as exc:
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise InvalidExam("the answer key is not valid", details) from exc
    check_provider(fields.get("provider", "vision"), answer_key, fields.get("priority", "standard"), vision_available)
    try:
        model_card(fields["model"])
    except UnknownModel as exc:
        raise InvalidExam(f"unknown model {fields['model']!r}; known: {', '.join(known_models())}") from exc
    own = {point["id"]: point for point in fields.get("knowledge_points") or []}
    missing = unknown_points(session, answer_key.knowledge_point_ids() - own.keys())
    if missing:
        raise InvalidExam(f"unknown knowledge points in the answer key: {', '.join(sorted(missing))}; "
                          "list them with GET /v1/knowledge-points, or add them to the exam's knowledge_points")
    exam_id = uuid.uuid4()
    renamed = {given: custom_point_id(exam_id, given) for given in own}
    for question in answer_key.questions:
        question.knowledge_points = [renamed.get(kp, kp) for kp in question.knowledge_points]
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
        priority=fields.get("priority", "standard"),
        provider=fields.get("provider", "vision"),
        callback_url=fields.get("callback_url"),
        callback_secret=secrets.token_hex(32) if fields.get("callback_url") else None,
    )
    session.add(exam)
    session.flush()
    for given, point in own.items():
        session.add(KnowledgePoint(
            id=renamed[given], subject=exam.subject, grade=exam.grade, strand=point.get("strand") or "exam",
            name_zh=point["name_zh"], name_en=point.get("name_en") or point["name_zh"], aliases=[],
            vocabulary_version="exam", exam_id=exam.id))
    session.flush()
    return exam


def check_provider(provider: str, answer_key: AnswerKey, priority: str, vision_available: bool) -> None:
    """Refuse a provider that cannot mark this exam here, saying why."""
    if provider in ("vision", "cascade") and not vision_available:
        raise InvalidExam(f"provider {provider!r} needs the vision model, and this server has no OPENAI_API_KEY; "
                          "use provider 'local' (offline marking against the answer key)")
    if provider == "local":
        unanswered = [q.id for q in answer_key.questions if not q.answer]
        if unanswered:
            raise InvalidExam(
                "offline marking compares each answer with the answer key, which gives no answer for "
                f"question(s) {', '.join(unanswered)}; add the answers, or use provider 'cascade' or 'vision'")
    if provider != "vision" and priority == "economy":
        raise InvalidExam("priority 'economy' (the Batch API) is for provider 'vision' only")


def get_exam(session: Session, school: School, exam_id: uuid.UUID) -> Exam | None:
    """The exam, only if it belongs to `school`."""
    return session.scalar(select(Exam).where(Exam.id == exam_id, Exam.school_id == school.id))


def usage_totals(session: Session, *conditions: Any) -> dict[str, Any]:
    """The ledger summed: calls made, tokens and dollars, estimated beside actual. Reservations of
    calls in flight count in cost_usd (at their worst case) until the call settles."""
    total = lambda column: func.coalesce(func.sum(column), 0)  # noqa: E731
    calls = func.sum(case((Usage.outcome.notin_(["reused", "reserved", "batch_not_sent"]), 1), else_=0))
    row = session.execute(
        select(
            func.coalesce(calls, 0),
            total(Usage.prompt_tokens), total(Usage.cached_tokens), total(Usage.completion_tokens),
            total(Usage.cost_usd), total(Usage.estimated_prompt_tokens),
            total(Usage.estimated_completion_tokens), total(Usage.estimated_cost_usd),
            func.coalesce(func.sum(case((Usage.outcome == "reused", 1), else_=0)), 0),
            func.coalesce(func.sum(case((Usage.outcome == "reserved", 1), else_=0)), 0),
        ).where(*conditions)
    ).one()
    return {
        "calls": int(row[0]),
        "prompt_tokens": int(row[1]),
        "cached_tokens": int(row[2]),
        "completion_tokens": int(row[3]),
        "cost_usd": float(row[4]),
        "estimated_prompt_tokens": int(row[5]),
        "estimated_completion_tokens": int(row[6]),
        "estimated_cost_usd": float(row[7]),
        "reused": int(row[8]),
        "in_flight": int(row[9]),
    }


def exam_view(session: Session, exam: Exam) -> dict[str, Any]:
    """The exam with paper counts by status and the usage and cost so far."""
    counts = dict(
        session.execute(
            select(Paper.status, func.count()).where(Paper.exam_id == exam.id).group_by(Paper.status)
        ).all()
    )
    progress = {status.value: int(counts.get(status, 0)) for status in PaperStatus}
    return {
        **{c.key: getattr(exam, c.key) for c in Exam.__table__.columns if c.key != "callback_secret"},
        "webhooks": webhook_summary(session, exam.id),
        "review": review_summary(session, exam.id),
        "batches": exam_batches(session, exam.id),
        "papers": sum(progress.values()),
        "progress": progress,
        "usage": usage_totals(session, Usage.exam_id == exam.id),
    }
