"""The vision call for one paper: its marking context, the chat request, and what it may cost.

A cascade paper asks only about the questions the offline reader was unsure of, as one image of
their crops when that costs fewer tokens than the pages; a vision paper of an exam with a blank
paper is sent as one image of all its questions' crops when that costs fewer tokens.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from shared.grading import lanes, vision_crops
from shared.grading.answer_key import AnswerKey
from shared.grading.marks import QuestionMark
from shared.grading.offline import cheaper_crops, offline_marks, unsure_questions
from shared.grading.prompt import (
    PageImage,
    build_request,
    count_prompt_tokens,
    prompt_version,
)
from shared.grading.vocabulary import asked_vocabulary, exam_vocabulary
from shared.images import NormalisedPage, normalise_page
from shared.models import Exam, Paper
from shared.spending import ledger
from shared.spending.costs import UnknownModel, call_cost, sheet_detail
from shared.spending.estimate import OUTPUT_TOKENS_PER_QUESTION
from shared.spending.ledger import CallCost
from shared.storage import Storage, normalised_page_key

# The text count is a heuristic; the reservation allows this much more, so a cap still holds
# when the real tokenizer counts higher.
PROMPT_MARGIN = 1.25


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
    cost: CallCost


def completion_allowance(questions: int, ceiling: int) -> int:
    """The most output a paper may produce: enough for every question's verdict and explanation,
    small enough that a runaway reply cannot burn the budget."""
    return min(ceiling, 400 + 250 * questions)


def call_cost_bounds(
    model: str, request: dict[str, Any], page_sizes: list[tuple[int, int]], questions: int
) -> CallCost:
    """The expected cost of the call, and its worst case (margin on the prompt, every output token);
    a call at the Flex tier at the batch rate."""
    prompt = count_prompt_tokens(request, page_sizes)
    expected_out = OUTPUT_TOKENS_PER_QUESTION * questions
    flex = request.get("service_tier") == "flex"
    try:
        expected = call_cost(model, prompt, 0, expected_out, batch=flex)
        worst = call_cost(model, int(prompt * PROMPT_MARGIN), 0, request["max_completion_tokens"], batch=flex)
    except UnknownModel:
        expected = worst = Decimal(0)
    return CallCost(prompt, expected_out, expected, worst, questions)


def resize_pages(session: Session, storage: Storage, paper: Paper) -> dict[int, NormalisedPage]:
    """Size and store every page not done yet for the vision model; returns those pages by number."""
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
        fresh[page.number] = normalised
    return fresh


def marking_context(session: Session, paper_id: uuid.UUID, local_threshold: float) -> MarkingContext:
    """The context a reply is recorded in, without reading any page (a stored reply, a batch line).
    A cascade paper's context asks only what the offline reader was unsure of."""
    paper = session.get_one(Paper, paper_id)
    exam = session.get_one(Exam, paper.exam_id)
    answer_key = AnswerKey.model_validate(exam.answer_key)
    asked, confident = None, {}
    if lanes.asks_unsure_only(exam, paper):
        marks = offline_marks(paper.local_reading or {}, answer_key, exam.subject, exam.language)
        unsure = unsure_questions(marks, local_threshold)
        confident = {qid: mark for qid, mark in marks.items() if qid not in unsure}
        if unsure:  # none: the reader was sure of every answer, and there is nothing to ask
            asked = AnswerKey(questions=[q for q in answer_key.questions if q.id in unsure])
    return MarkingContext(
        paper_id=paper.id,
        exam_id=exam.id,
        school_id=paper.school_id,
        attempt=paper.attempts,
        model=exam.model,
        answer_key=answer_key,
        vocabulary=frozenset(kp.id for kp in exam_vocabulary(session, exam)),
        asked_key=asked,
        local_marks=confident,
    )


def _image_url(storage: Storage, key: str, presign_seconds: int, jpeg: bytes | None) -> str:
    """A presigned URL when the provider can reach the storage, else an inline data: URL."""
    url = storage.presign_get(key, presign_seconds)
    if url is None:
        url = "data:image/jpeg;base64," + base64.b64encode(jpeg or storage.get(key)).decode("ascii")
    return url


def prepare_paper(
    session: Session,
    storage: Storage,
    paper_id: uuid.UUID,
    *,
    presign_seconds: int,
    max_completion_tokens: int,
    local_threshold: float,
    flex_tries_before_standard: int = 3,
) -> PreparedPaper:
    """Size each page (once; stored beside the original) and build the chat request."""
    context = marking_context(session, paper_id, local_threshold)
    paper = session.get_one(Paper, paper_id)
    exam = session.get_one(Exam, paper.exam_id)
    fresh = resize_pages(session, storage, paper)
    sizes = [(page.sent_width or 0, page.sent_height or 0) for page in paper.pages]
    images = [
        PageImage(
            _image_url(
                storage,
                page.normalised_key or "",
                presign_seconds,
                fresh[page.number].jpeg if page.number in fresh else None,
            )
        )
        for page in paper.pages
    ]
    asked = context.asked_key or context.answer_key
    # One image of the questions' crops instead of the pages, where that is fewer tokens: every
    # question's (a vision paper of an exam with a blank paper), or the unsure ones' (a cascade).
    if context.asked_key is None:
        crops = vision_crops.cheaper(paper.crops, context.answer_key, exam.model, exam.image_detail, sizes)
        caption: str | None = vision_crops.CAPTION
    else:
        unsure = [q.id for q in context.asked_key.questions]
        crops = cheaper_crops(paper.local_reading or {}, unsure, exam.model, exam.image_detail, sizes)
        caption = (
            f"Question(s) {', '.join(unsure)} cut from the student's paper, one under "
            "another, each labelled with its number on the left."
        )
    if crops is not None:
        sizes = [(crops["width"], crops["height"])]
        detail = sheet_detail(exam.model, *sizes[0], exam.image_detail)
        images = [PageImage(_image_url(storage, crops["key"], presign_seconds, None), detail)]
    else:
        caption = None
    vocabulary = exam_vocabulary(session, exam)
    if context.asked_key is not None:
        vocabulary = asked_vocabulary(vocabulary, context.asked_key)
    max_out = completion_allowance(len(asked.questions), max_completion_tokens)
    flex = lanes.flex_tier(exam, ledger.flex_refusals(session, paper_id), flex_tries_before_standard)
    request = build_request(exam, asked, vocabulary, images, max_out, caption=caption, flex=flex)
    version = prompt_version(request)
    paper.prompt_version = version
    return PreparedPaper(
        **{f.name: getattr(context, f.name) for f in fields(MarkingContext)},
        request=request,
        prompt_version=version,
        pages_hash=paper.pages_hash,
        cost=call_cost_bounds(exam.model, request, sizes, len(asked.questions)),
    )
