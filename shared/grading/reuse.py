"""Identical pages under the identical prompt are marked once: a later paper copies the result."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.grading.requests import PreparedPaper
from shared.models import (
    Paper,
    PaperStatus,
    QuestionKnowledgePoint,
    QuestionResult,
    utcnow,
)
from shared.spending import ledger


def reuse_earlier_result(session: Session, prepared: PreparedPaper) -> PaperStatus | None:
    """If the school already graded these exact pages under this exact prompt, copy that result:
    no provider call, no cost. Returns the new status, or None when there is nothing to reuse."""
    if prepared.pages_hash is None:
        return None
    source = session.scalar(
        select(Paper)
        .where(
            Paper.school_id == prepared.school_id,
            Paper.pages_hash == prepared.pages_hash,
            Paper.prompt_version == prepared.prompt_version,
            Paper.status.in_([PaperStatus.graded, PaperStatus.needs_review]),
            Paper.id != prepared.paper_id,
        )
        .order_by(Paper.graded_at)
        .limit(1)
    )
    if source is None:
        return None
    paper = session.get_one(Paper, prepared.paper_id)
    paper.questions.clear()
    session.flush()
    skip = {"id", "paper_id"}
    for question in source.questions:
        copy = QuestionResult(
            **{c.key: getattr(question, c.key) for c in QuestionResult.__table__.columns if c.key not in skip}
        )
        copy.knowledge_points = [
            QuestionKnowledgePoint(knowledge_point_id=kp.knowledge_point_id) for kp in question.knowledge_points
        ]
        paper.questions.append(copy)
    paper.score, paper.max_score, paper.pending_points = source.score, source.max_score, source.pending_points
    paper.status, paper.status_reason = source.status, source.status_reason
    paper.reply_key, paper.reused_from, paper.graded_at = source.reply_key, source.id, utcnow()
    ledger.record_reuse(
        session,
        school_id=prepared.school_id,
        exam_id=prepared.exam_id,
        paper_id=prepared.paper_id,
        model=prepared.model,
    )
    return paper.status
