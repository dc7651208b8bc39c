"""Grading one paper, as plain functions that take their dependencies as arguments.

The Celery task decides when to call these; they decide what happens to the data.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.spending.caps import CallEstimate
from shared.spending.costs import UnknownModel, call_cost, image_tokens
from shared.spending.estimate import OUTPUT_TOKENS_PER_QUESTION
from shared.grading import local
from shared.grading.answer_key import AnswerKey
from shared.grading.equivalence import equivalent
from shared.grading.marks import QuestionMark, parse_marks
from shared.grading.prompt import PageImage, build_request, estimate_prompt_tokens, prompt_version
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
from shared.ocr import ENGINE_NAME
from shared.provider import ProviderReply
from shared.storage import Storage, crop_sheet_key, normalised_page_key, reply_key

REVIEW_BELOW_CONFIDENCE = 0.6
LOCAL_CONFIDENCE_THRESHOLD = 0.9  # the offline reader's; the setting local_confidence_threshold


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


@dataclass(frozen=True)
class MarkingContext:
    """What recording a reply needs: the paper's ids and the exam's key and vocabulary."""

    paper_id: uuid.UUID
    exam_id: uuid.UUID
    school_id: int
    attempt: int
    model: str
    answer_key: AnswerKey
    vocabulary: frozenset[str]
    # A cascade paper: the questions asked of the vision model (the rest were marked offline, with
    # these marks). None: every question is asked.
    asked_key: AnswerKey | None = field(default=None, kw_only=True)
    local_marks: Mapping[str, QuestionMark] = field(default_factory=dict, kw_only=True)


@dataclass(frozen=True)
class PreparedPaper(MarkingContext):
    """A paper ready to send: its context, the chat request and what the call may cost."""

    request: dict[str, Any]
    prompt_version: str
    pages_hash: str | None
    estimate: CallEstimate


# The text estimate is a heuristic; the reservation allows this much more, so a cap still holds
# when the real tokenizer counts higher.
PROMPT_MARGIN = 1.25


def completion_allowance(questions: int, ceiling: int) -> int:
    """The most output a paper may produce: enough for every question's verdict and explanation,
    small enough that a runaway reply cannot burn the budget."""
    return min(ceiling, 400 + 250 * questions)


def call_estimate(model: str, request: dict[str, Any], page_sizes: list[tuple[int, int]], questions: int) -> CallEstimate:
    prompt = estimate_prompt_tokens(request, page_sizes)
    expected_out = OUTPUT_TOKENS_PER_QUESTION * questions
    try:
        expected = call_cost(model, prompt, 0, expected_out)
        worst = call_cost(model, int(prompt * PROMPT_MARGIN), 0, request["max_completion_tokens"])
    except UnknownModel:
        expected = worst = Decimal(0)
    return CallEstimate(prompt, expected_out, expected, worst)


def normalise_pages(session: Session, storage: Storage, paper: Paper) -> dict[int, bytes]:
    """Normalise and store every page not done yet; returns the new JPEGs by page number."""
    exam = session.get_one(Exam, paper.exam_id)
    fresh = {}
    for page in paper.pages:
        if page.normalised_key is not None and page.sent_width is not None:
            continue
        key = normalised_page_key(paper.school_id, exam.id, paper.id, page.number)
        normalised = normalise_page(storage.get(page.original_key), exam.model, exam.image_detail)
        storage.put(key, io.BytesIO(normalised.jpeg), "image/jpeg")
        page.normalised_key = key
        page.sent_width, page.sent_height = normalised.width, normalised.height
        fresh[page.number] = normalised.jpeg
    return fresh


def marking_context(session: Session, paper_id: uuid.UUID) -> MarkingContext:
    """The context of a paper whose request was already sent (a Batch API line): no page is read."""
    paper = session.get_one(Paper, paper_id)
    exam = session.get_one(Exam, paper.exam_id)
    return MarkingContext(
        paper_id=paper.id,
        exam_id=exam.id,
        school_id=paper.school_id,
        attempt=paper.attempts,
        model=exam.model,
        answer_key=AnswerKey.model_validate(exam.answer_key),
        vocabulary=frozenset(kp.id for kp in exam_vocabulary(session, exam)),
    )


def _image_url(storage: Storage, key: str, presign_seconds: int, jpeg: bytes | None) -> str:
    """A presigned URL when the provider can reach the storage, else an inline data: URL."""
    url = storage.presign_get(key, presign_seconds)
    if url is None:
        url = "data:image/jpeg;base64," + base64.b64encode(jpeg or storage.get(key)).decode("ascii")
    return url


def prepare_paper(
    session: Session, storage: Storage, paper_id: uuid.UUID, *, presign_seconds: int, max_completion_tokens: int,
    local_threshold: float = LOCAL_CONFIDENCE_THRESHOLD,
) -> PreparedPaper:
    """Normalise each page (once; stored beside the original) and build the chat request. A
    cascade paper asks only about the questions the offline reader was unsure of."""
    paper = session.get_one(Paper, paper_id)
    exam = session.get_one(Exam, paper.exam_id)
    answer_key = AnswerKey.model_validate(exam.answer_key)
    vocabulary = exam_vocabulary(session, exam)
    fresh = normalise_pages(session, storage, paper)
    sizes = [(page.sent_width or 0, page.sent_height or 0) for page in paper.pages]
    images = [PageImage(_image_url(storage, page.normalised_key, presign_seconds, fresh.get(page.number)))
              for page in paper.pages]
    asked, confident, caption = answer_key, {}, None
    if exam.provider == "cascade" and paper.local_reading is not None:
        marks = offline_marks(paper.local_reading, answer_key, exam.subject, exam.language)
        unsure = unsure_questions(marks, local_threshold)
        confident = {qid: mark for qid, mark in marks.items() if qid not in unsure}
        asked = AnswerKey(questions=[q for q in answer_key.questions if q.id in unsure])
        if (crops := cheaper_crops(paper.local_reading, unsure, exam.model, exam.image_detail, sizes)) is not None:
            images = [PageImage(_image_url(storage, crops["key"], presign_seconds, None))]
            sizes = [(crops["width"], crops["height"])]
            caption = (f"Question(s) {', '.join(unsure)} cut from the student's paper, one under "
                       "another, each labelled with its number on the left.")
    max_out = completion_allowance(len(asked.questions), max_completion_tokens)
    request = build_request(exam, asked, vocabulary, images, max_out, caption=caption)
    version = prompt_version(request)
    paper.prompt_version = version
    return PreparedPaper(
        paper_id=paper.id,
        exam_id=exam.id,
        school_id=paper.school_id,
        attempt=paper.attempts,
        model=exam.model,
        answer_key=answer_key,
        vocabulary=frozenset(kp.id for kp in vocabulary),
        asked_key=asked if asked is not answer_key else None,
        local_marks=confident,
        request=request,
        prompt_version=version,
        pages_hash=paper.pages_hash,
        estimate=call_estimate(exam.model, request, sizes, len(asked.questions)),
    )


def cheaper_crops(local_reading: Mapping[str, Any], unsure: list[str], model: str, detail: str,
                  pages: list[tuple[int, int]]) -> Mapping[str, Any] | None:
    """The crops cut when the pages were read, if they are of these very questions (the threshold
    may have changed since) and cost fewer tokens than the pages; None: send the pages."""
    crops = local_reading.get("crops")
    if not crops or crops["questions"] != unsure:
        return None
    cost = image_tokens(model, crops["width"], crops["height"], detail)
    return crops if cost < sum(image_tokens(model, w, h, detail) for w, h in pages) else None


@dataclass
class OfflineReading:
    """A paper read offline: what papers.local_reading stores, the marks, and (for a cascade) one
    image of the unsure questions' crops, cut from the pages as they were read."""

    local_reading: dict[str, Any]
    marks: dict[str, QuestionMark]
    crops: Image.Image | None


def read_offline(pages: list[bytes], answer_key: AnswerKey, *, subject: str, language: str,
                 threshold: float, crops: bool) -> OfflineReading:
    """Read and mark a paper's pages (original uploads, in order) with the offline reader; with
    `crops`, also cut the questions below `threshold`, when every one of them was found."""
    started = time.process_time()
    scans = local.scan_pages(pages)
    readings = local.read_answers(scans, answer_key)
    marks = _marks(readings, answer_key, subject, language)
    local_reading: dict[str, Any] = {"engine": ENGINE_NAME,
                                     "questions": {qid: reading.to_json() for qid, reading in readings.items()}}
    unsure = unsure_questions(marks, threshold)
    sheet = None
    if crops and unsure and all(readings[qid].region is not None for qid in unsure):
        sheet = local.crop_sheet(scans, [readings[qid] for qid in unsure])
        local_reading["crops"] = {"questions": unsure, "width": sheet.width, "height": sheet.height}
    local_reading["cpu_seconds"] = round(time.process_time() - started, 3)
    return OfflineReading(local_reading, marks, sheet)


def store_crops(storage: Storage, offline: OfflineReading, school_id: int, exam_id: uuid.UUID,
                paper_id: uuid.UUID) -> None:
    """Keep the crops beside the pages, for the vision call that asks about those questions."""
    if offline.crops is None:
        return
    out = io.BytesIO()
    offline.crops.save(out, "JPEG", quality=90)
    key = crop_sheet_key(school_id, exam_id, paper_id)
    storage.put(key, io.BytesIO(out.getvalue()), "image/jpeg")
    offline.local_reading["crops"]["key"] = key


def offline_marks(local_reading: Mapping[str, Any], answer_key: AnswerKey, subject: str,
                  language: str) -> dict[str, QuestionMark]:
    """The marks of a stored offline reading (papers.local_reading)."""
    readings = {qid: local.AnswerReading.from_json(value) for qid, value in local_reading["questions"].items()}
    return _marks(readings, answer_key, subject, language)


def _marks(readings: Mapping[str, local.AnswerReading], answer_key: AnswerKey, subject: str,
           language: str) -> dict[str, QuestionMark]:
    return {q.id: local.mark_reading(readings[q.id], q, subject, language) for q in answer_key.questions}


def unsure_questions(marks: Mapping[str, QuestionMark], threshold: float) -> list[str]:
    """The questions, in key order, whose offline verdict is below the confidence threshold."""
    return [qid for qid, mark in marks.items() if mark.confidence < threshold]


def archive_reply(storage: Storage, prepared: MarkingContext, reply: ProviderReply) -> str:
    key = reply_key(prepared.school_id, prepared.exam_id, prepared.paper_id, prepared.attempt)
    body = json.dumps(
        {"model": reply.model, "request_id": reply.request_id, "content": reply.content},
        ensure_ascii=False,
    ).encode("utf-8")
    storage.put(key, io.BytesIO(body), "application/json")
    return key


def settle_usage(
    session: Session, usage_id: int, reply: ProviderReply | None, outcome: str, request_id: str | None = None,
    batch: bool = False,
) -> Usage:
    """Replace a call's reservation with what it really cost (nothing, when no reply came back);
    a reply through the Batch API is priced at the batch rate."""
    usage = session.get_one(Usage, usage_id)
    usage.outcome = outcome
    usage.request_id = reply.request_id if reply else request_id
    usage.prompt_tokens = reply.prompt_tokens if reply else 0
    usage.cached_tokens = reply.cached_tokens if reply else 0
    usage.completion_tokens = reply.completion_tokens if reply else 0
    usage.cost_usd = Decimal(0)
    if reply is not None:
        try:
            usage.cost_usd = call_cost(usage.model, reply.prompt_tokens, reply.cached_tokens,
                                       reply.completion_tokens, batch=batch)
            if batch:
                usage.outcome = f"{outcome}:batch"
        except UnknownModel:
            usage.outcome = f"{outcome}:unpriced"
    return usage


def reuse_earlier_result(session: Session, prepared: PreparedPaper) -> PaperStatus | None:
    """If the school already graded these exact pages under this exact prompt, copy that result:
    no provider call, no cost. Returns the new status, or None when there is nothing to reuse."""
    if prepared.pages_hash is None:
        return None
    source = session.scalar(
        select(Paper).where(
            Paper.school_id == prepared.school_id,
            Paper.pages_hash == prepared.pages_hash,
            Paper.prompt_version == prepared.prompt_version,
            Paper.status.in_([PaperStatus.graded, PaperStatus.needs_review]),
            Paper.id != prepared.paper_id,
        ).order_by(Paper.graded_at).limit(1)
    )
    if source is None:
        return None
    paper = session.get_one(Paper, prepared.paper_id)
    paper.questions.clear()
    session.flush()
    skip = {"id", "paper_id"}
    for question in source.questions:
        copy = QuestionResult(**{c.key: getattr(question, c.key) for c in QuestionResult.__table__.columns
                                 if c.key not in skip})
        copy.knowledge_points = [QuestionKnowledgePoint(knowledge_point_id=kp.knowledge_point_id)
                                 for kp in question.knowledge_points]
        paper.questions.append(copy)
    paper.score, paper.max_score = source.score, source.max_score
    paper.status, paper.status_reason = source.status, source.status_reason
    paper.reply_key, paper.reused_from, paper.graded_at = source.reply_key, source.id, utcnow()
    session.add(Usage(school_id=prepared.school_id, exam_id=prepared.exam_id, paper_id=prepared.paper_id,
                      model=prepared.model, outcome="reused"))
    return paper.status


NO_KEY_CONFIDENCE = 0.6  # a verdict on a question the key did not answer is never more certain


def local_review_reason(mark: QuestionMark, threshold: float) -> str | None:
    """Why a teacher must look at an offline verdict, or None."""
    if mark.error_type == "illegible":
        return f"illegible: {mark.explanation}"
    if mark.confidence < threshold:
        return f"the offline reader is unsure (confidence {mark.confidence:.2f} < {threshold:g}): {mark.explanation}"
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
        return (f"the check finds {mark.student_answer!r} {relation} the key {key_answer!r}, "
                f"but the model marked it {'correct' if mark.is_correct else 'wrong'}")
    if mark.confidence < REVIEW_BELOW_CONFIDENCE:
        return f"the model is unsure (confidence {mark.confidence:.2f})"
    return None


def record_marks(
    session: Session, prepared: MarkingContext, marks: Mapping[str, QuestionMark], reply_key: str | None,
    *, local_threshold: float = LOCAL_CONFIDENCE_THRESHOLD,
) -> PaperStatus:
    """Write the question results and the paper's score and status (caller owns the transaction).
    A question not in `marks` takes its offline mark from the context (a cascade paper)."""
    paper = session.get_one(Paper, prepared.paper_id)
    subject = session.get_one(Exam, prepared.exam_id).subject
    paper.questions.clear()
    session.flush()
    for position, question in enumerate(prepared.answer_key.questions):
        marked_by = "vision" if question.id in marks else "local"
        mark = marks[question.id] if marked_by == "vision" else prepared.local_marks[question.id]
        check = (equivalent(mark.student_answer, question.answer, tuple(question.accepted))
                 if subject == "math" and question.answer else None)
        reason = (review_reason(mark, question.points, check, question.answer) if marked_by == "vision"
                  else local_review_reason(mark, local_threshold))
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
    settle_paper(paper, prepared.answer_key.max_score)
    paper.reply_key = reply_key
    paper.graded_at = utcnow()
    return paper.status


def settle_paper(paper: Paper, max_score: float) -> None:
    """The paper's score and status from its questions: needs_review while any question does."""
    paper.score = sum(q.score for q in paper.questions if q.score is not None)
    paper.max_score = max_score
    waiting = sum(1 for q in paper.questions if q.needs_review)
    paper.status = PaperStatus.needs_review if waiting else PaperStatus.graded
    paper.status_reason = f"{waiting} answer(s) need a teacher's review" if waiting else None


def parse_reply(prepared: MarkingContext, reply: ProviderReply) -> dict[str, QuestionMark]:
    return parse_marks(reply.content, prepared.asked_key or prepared.answer_key, set(prepared.vocabulary))


def stuck_papers(
    session: Session, *, queued_before: datetime, processing_before: datetime, limit: int = 500
) -> Sequence[uuid.UUID]:
    """Papers whose message may be lost: queued too long, or processing past the deadline (the
    worker died). Processing ones go back to queued here, so the next claim can take them."""
    session.execute(
        update(Paper)  # papers in a batch belong to the batch poller, which has 24 hours
        .where(Paper.status == PaperStatus.processing, Paper.claimed_at < processing_before,
               Paper.batch_id.is_(None))
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
    # A reservation whose worker died keeps its worst-case cost (the call may have been made and
    # billed), so a cap still holds; it is only relabelled so it stops looking in flight.
    session.execute(
        update(Usage).where(Usage.outcome == "reserved", Usage.created_at < processing_before)
        .values(outcome="abandoned")
    )
    return ids


def deadline(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)
