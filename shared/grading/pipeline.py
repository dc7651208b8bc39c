"""Grading one paper, as plain functions that take their dependencies as arguments.

The Celery task decides when to call these; they decide what happens to the data.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.costs import UnknownModel, call_cost
from shared.grading.answer_key import AnswerKey
from shared.grading.marks import QuestionMark, parse_marks
from shared.grading.prompt import PageImage, build_request
from shared.grading.vocabulary import exam_vocabulary
from shared.images import normalise_page
from shared.models import (
    Exam,
    Paper,
    PaperStatus,
    QuestionKnowledgePoint,
    QuestionResult,
    Usage,
    utcnow,
)
from shared.provider import ProviderReply
from shared.storage import Storage, normalised_page_key, reply_key

REVIEW_BELOW_CONFIDENCE = 0.6


def claim_paper(session: Session, paper_id: uuid.UUID) -> bool:
    """queued -> processing in one conditional UPDATE; False when someone else has it (or it is done)."""
    now = utcnow()
    result = session.execute(
        update(Paper)
        .where(Paper.id == paper_id, Paper.status == PaperStatus.queued)
        .values(status=PaperStatus.processing, attempts=Paper.attempts + 1, claimed_at=now, updated_at=now)
    )
    return result.rowcount == 1


def release_paper(session: Session, paper_id: uuid.UUID, *, reason: str, refund_attempt: bool) -> None:
    """processing -> queued, to be tried again. A wait the provider asked for is not an attempt."""
    values: dict[str, Any] = {"status": PaperStatus.queued, "status_reason": reason, "updated_at": utcnow()}
    if refund_attempt:
        values["attempts"] = Paper.attempts - 1
    session.execute(
        update(Paper).where(Paper.id == paper_id, Paper.status == PaperStatus.processing).values(**values)
    )


def fail_paper(session: Session, paper_id: uuid.UUID, reason: str) -> None:
    session.execute(
        update(Paper)
        .where(Paper.id == paper_id, Paper.status.in_([PaperStatus.processing, PaperStatus.queued]))
        .values(status=PaperStatus.failed, status_reason=reason, updated_at=utcnow())
    )


def pause_exam(session: Session, exam_id: uuid.UUID, reason: str) -> int:
    """Every paper of the exam still waiting is paused with `reason`; returns how many."""
    session.execute(update(Exam).where(Exam.id == exam_id).values(status_reason=reason))
    result = session.execute(
        update(Paper)
        .where(Paper.exam_id == exam_id, Paper.status.in_([PaperStatus.queued, PaperStatus.processing]))
        .values(status=PaperStatus.paused, status_reason=reason, updated_at=utcnow())
    )
    return result.rowcount


@dataclass(frozen=True)
class PreparedPaper:
    paper_id: uuid.UUID
    exam_id: uuid.UUID
    school_id: int
    attempt: int
    model: str
    answer_key: AnswerKey
    vocabulary: frozenset[str]
    request: dict[str, Any]


def prepare_paper(
    session: Session, storage: Storage, paper_id: uuid.UUID, *, presign_seconds: int, max_completion_tokens: int
) -> PreparedPaper:
    """Normalise each page (once; stored beside the original) and build the chat request."""
    paper = session.get_one(Paper, paper_id)
    exam = session.get_one(Exam, paper.exam_id)
    answer_key = AnswerKey.model_validate(exam.answer_key)
    vocabulary = exam_vocabulary(session, exam)
    images = []
    for page in paper.pages:
        key = normalised_page_key(paper.school_id, exam.id, paper.id, page.number)
        if page.normalised_key is None:
            normalised = normalise_page(storage.get(page.original_key), exam.model, exam.image_detail)
            storage.put(key, io.BytesIO(normalised.jpeg), "image/jpeg")
            page.normalised_key = key
            jpeg = normalised.jpeg
        else:
            jpeg = b""
        url = storage.presign_get(key, presign_seconds)
        if url is None:
            jpeg = jpeg or storage.get(key)
            url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        images.append(PageImage(url))
    request = build_request(exam, answer_key, vocabulary, images, max_completion_tokens)
    return PreparedPaper(
        paper_id=paper.id,
        exam_id=exam.id,
        school_id=paper.school_id,
        attempt=paper.attempts,
        model=exam.model,
        answer_key=answer_key,
        vocabulary=frozenset(kp.id for kp in vocabulary),
        request=request,
    )


def archive_reply(storage: Storage, prepared: PreparedPaper, reply: ProviderReply) -> str:
    key = reply_key(prepared.school_id, prepared.exam_id, prepared.paper_id, prepared.attempt)
    body = json.dumps(
        {"model": reply.model, "request_id": reply.request_id, "content": reply.content},
        ensure_ascii=False,
    ).encode("utf-8")
    storage.put(key, io.BytesIO(body), "application/json")
    return key


def record_usage(
    session: Session, prepared: PreparedPaper, reply: ProviderReply | None, outcome: str,
    request_id: str | None = None,
) -> Usage:
    """One usage row per provider call, priced by the exam's model (unknown models cost 0, flagged)."""
    usage = Usage(
        school_id=prepared.school_id,
        exam_id=prepared.exam_id,
        paper_id=prepared.paper_id,
        model=prepared.model,
        outcome=outcome,
        request_id=reply.request_id if reply else request_id,
    )
    if reply is not None:
        usage.prompt_tokens = reply.prompt_tokens
        usage.cached_tokens = reply.cached_tokens
        usage.completion_tokens = reply.completion_tokens
        try:
            usage.cost_usd = call_cost(
                prepared.model, reply.prompt_tokens, reply.cached_tokens, reply.completion_tokens
            )
        except UnknownModel:
            usage.outcome = f"{outcome}:unpriced"
    session.add(usage)
    return usage


def needs_review(mark: QuestionMark, points: float) -> bool:
    """Illegible is not wrong, a verdict the model is unsure of is not final, and a score above
    the question's points means the model misread the key: a teacher looks."""
    return mark.error_type == "illegible" or mark.confidence < REVIEW_BELOW_CONFIDENCE or mark.score > points


def record_marks(
    session: Session, prepared: PreparedPaper, marks: dict[str, QuestionMark], reply_key: str
) -> PaperStatus:
    """Write the question results and the paper's score and status (caller owns the transaction)."""
    paper = session.get_one(Paper, prepared.paper_id)
    paper.questions.clear()
    session.flush()
    total = 0.0
    any_review = False
    for position, question in enumerate(prepared.answer_key.questions):
        mark = marks[question.id]
        review = needs_review(mark, question.points)
        any_review |= review
        score = 0.0 if review and mark.error_type == "illegible" else min(mark.score, question.points)
        total += score
        result = QuestionResult(
            position=position,
            question_id=question.id,
            student_answer=mark.student_answer,
            correct_answer=question.answer,
            is_correct=mark.is_correct,
            score=score,
            max_score=question.points,
            error_type=mark.error_type,
            explanation=mark.explanation,
            correction=mark.correction,
            confidence=mark.confidence,
            needs_review=review,
        )
        points = dict.fromkeys([*question.knowledge_points, *mark.knowledge_points])
        result.knowledge_points = [QuestionKnowledgePoint(knowledge_point_id=kp) for kp in points]
        paper.questions.append(result)
    paper.score = total
    paper.max_score = prepared.answer_key.max_score
    paper.status = PaperStatus.needs_review if any_review else PaperStatus.graded
    paper.status_reason = "some answers need a teacher's review" if any_review else None
    paper.reply_key = reply_key
    paper.graded_at = utcnow()
    return paper.status


def parse_reply(prepared: PreparedPaper, reply: ProviderReply) -> dict[str, QuestionMark]:
    return parse_marks(reply.content, prepared.answer_key, set(prepared.vocabulary))


def stuck_papers(
    session: Session, *, queued_before: datetime, processing_before: datetime, limit: int = 500
) -> Sequence[uuid.UUID]:
    """Papers whose message may be lost: queued too long, or processing past the deadline (the
    worker died). Processing ones go back to queued here, so the next claim can take them."""
    session.execute(
        update(Paper)
        .where(Paper.status == PaperStatus.processing, Paper.claimed_at < processing_before)
        .values(status=PaperStatus.queued, status_reason="worker did not finish; retrying", updated_at=utcnow())
    )
    ids = session.scalars(
        select(Paper.id)
        .where(Paper.status == PaperStatus.queued, Paper.updated_at < queued_before)
        .order_by(Paper.updated_at)
        .limit(limit)
    ).all()
    if ids:
        session.execute(update(Paper).where(Paper.id.in_(ids)).values(updated_at=utcnow()))
    return ids


def deadline(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)
