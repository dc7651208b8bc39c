"""Recording marks: a reply (or an offline reading) becomes question results, a score and a status."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping

from sqlalchemy.orm import Session

from shared.grading import papers
from shared.grading.answer_key import QuestionType
from shared.grading.equivalence import equivalent
from shared.grading.marks import QuestionMark, parse_marks
from shared.grading.requests import MarkingContext
from shared.grading.review import local_review_reason, review_reason
from shared.models import (
    Exam,
    MarkedBy,
    Paper,
    PaperStatus,
    QuestionKnowledgePoint,
    QuestionResult,
    utcnow,
)
from shared.provider import ProviderReply
from shared.storage import Storage, reply_key

# Answers the value check cannot compare: letters, and several blanks in one string.
UNCHECKED = (QuestionType.choice, QuestionType.blanks)
NO_KEY_CONFIDENCE = 0.6  # a verdict on a question the key did not answer is never more certain


def parse_reply(context: MarkingContext, reply: ProviderReply) -> dict[str, QuestionMark]:
    return parse_marks(reply.content, context.asked_key or context.answer_key, set(context.vocabulary))


def archive_reply(storage: Storage, context: MarkingContext, reply: ProviderReply) -> str:
    """The raw reply beside the pages, for audit; SQL already holds it (the ledger's stored reply)."""
    key = reply_key(context.school_id, context.exam_id, context.paper_id, context.attempt)
    body = json.dumps(
        {"model": reply.model, "request_id": reply.request_id, "content": reply.content},
        ensure_ascii=False,
    ).encode("utf-8")
    storage.put(key, io.BytesIO(body), "application/json")
    return key


def record_marks(
    session: Session,
    context: MarkingContext,
    marks: Mapping[str, QuestionMark],
    reply_key: str | None,
    *,
    local_threshold: float,
    review: str | None = None,
) -> PaperStatus:
    """Write the question results and the paper's score and status (caller owns the transaction).
    A question not in `marks` takes its offline mark from the context (a cascade or local paper).
    `review`: every question in `marks` goes to a teacher for this reason."""
    paper = session.get_one(Paper, context.paper_id)
    subject = session.get_one(Exam, context.exam_id).subject
    paper.questions.clear()
    session.flush()
    for position, question in enumerate(context.answer_key.questions):
        marked_by = MarkedBy.vision if question.id in marks else MarkedBy.local
        mark = marks[question.id] if marked_by == MarkedBy.vision else context.local_marks[question.id]
        check = (
            equivalent(mark.student_answer, question.answer, tuple(question.accepted))
            if subject == "math" and question.answer and question.type not in UNCHECKED
            else None
        )
        reason = (
            (review or review_reason(mark, question.points, check, question.answer))
            if marked_by == MarkedBy.vision
            else local_review_reason(mark, local_threshold)
        )
        illegible = mark.error_type == "illegible"
        confidence = mark.confidence if question.answer else min(mark.confidence, NO_KEY_CONFIDENCE)
        points = list(dict.fromkeys([*question.knowledge_points, *mark.knowledge_points]))
        result = QuestionResult(
            position=position,
            question_id=question.id,
            student_answer=mark.student_answer,
            correct_answer=question.answer or "",
            is_correct=mark.is_correct,
            score=None if illegible else min(mark.score, question.points),
            max_score=question.points,
            error_type=mark.error_type,
            explanation=mark.explanation,
            correction=mark.correction,
            confidence=confidence,
            needs_review=reason is not None,
            review_reason=reason,
            from_key=bool(question.answer),
            check_equivalent=check,
            model_is_correct=mark.is_correct,
            model_score=mark.score,
            model_knowledge_points=points,
            marked_by=marked_by,
        )
        result.knowledge_points = [QuestionKnowledgePoint(knowledge_point_id=kp) for kp in points]
        paper.questions.append(result)
    session.flush()
    papers.settle(paper, context.answer_key.max_score)
    paper.reply_key = reply_key
    paper.graded_at = utcnow()
    return paper.status
