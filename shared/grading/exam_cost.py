"""What an exam will cost: its own request counted, priced on its lane, and corrected by its papers.

Before any paper is marked, the estimate is the exam's request as markq builds it (its key, its
vocabulary, its schema), the pages as they are known (sent sizes once normalised, else as the
provider would scale them, else an A4 scan), replies of the length the school's ledger has measured,
and for the cascade the share of unsure questions measured on this exam (else the school's, else the
prior). As papers finish, what they really cost replaces the estimate paper by paper: the estimate
per paper left is the prior weighted as `PRIOR_WEIGHT` papers against the mean of those finished.
A cascade paper already read offline (free) but not finished is priced from its own reading: the
questions it leaves unsure and their crops, the call it will make. A trial run has every paper past
its first ones read this way before the teacher releases the exam, so the estimate for the rest is
counted, not extrapolated from a few papers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.grading import lanes
from shared.grading.answer_key import AnswerKey
from shared.grading.prompt import PageImage, build_request, count_prompt_tokens, schema_tokens
from shared.grading.reader.reading import CROP_GAP_PX, CROP_LINE_PX, CROP_ROW_PX, label_width
from shared.grading.reader.template import CROP_PAD
from shared.grading.vision_crops import LEGIBLE_LINE_PX
from shared.grading.vocabulary import asked_vocabulary, exam_vocabulary
from shared.models import Exam, Page, Paper, PaperStatus, Usage, UsageOutcome
from shared.spending import ledger
from shared.spending.costs import UnknownModel, call_cost, sheet_tokens, text_tokens
from shared.spending.estimate import (
    OUTPUT_TOKENS_PER_QUESTION,
    UNSURE_SHARE,
    Calibration,
    PageSize,
    PromptShape,
    asked_call,
    lane_costs,
    page_tokens,
)

PRIOR_WEIGHT = 2  # the estimate before any paper counts as this many finished papers
A4_SCAN = (1240, 1754)  # 150 dpi: the page assumed before any is seen
FINISHED = (PaperStatus.graded, PaperStatus.needs_review, PaperStatus.failed)


def cacheable_tokens(request: dict[str, Any]) -> int:
    """The part of a request a provider caches: the reply's schema and the text before the first image."""
    tokens = schema_tokens(request)
    for message in request["messages"]:
        content = message["content"]
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if part["type"] != "text":
                return tokens
            tokens += text_tokens(part["text"])
    return tokens


def prompt_shape(session: Session, exam: Exam) -> PromptShape:
    """The exam's own request, counted: all its text, the cacheable part, and a question's share."""
    key = AnswerKey.model_validate(exam.answer_key)
    vocabulary = exam_vocabulary(session, exam)
    page = [PageImage("https://storage.invalid/page.jpg")]
    request = build_request(exam, key, vocabulary, page, 1000)
    text = count_prompt_tokens(request, [])
    per_question = 0.0
    if len(key.questions) > 1:
        one = AnswerKey(questions=key.questions[:1])
        single = count_prompt_tokens(build_request(exam, one, asked_vocabulary(vocabulary, one), page, 1000), [])
        per_question = max(0.0, (text - single) / (len(key.questions) - 1))
    return PromptShape(text, cacheable_tokens(request), per_question)


def known_pages(session: Session, exam: Exam) -> list[PageSize]:
    """One paper's pages as this exam's papers show them: the mean size per page number, as sent
    where pages were normalised; an A4 scan when no paper has come yet."""
    rows = session.execute(
        select(Page.number, Page.width, Page.height, Page.sent_width, Page.sent_height)
        .join(Paper, Paper.id == Page.paper_id)
        .where(Paper.exam_id == exam.id)
        .limit(2000)
    ).all()
    if not rows:
        return [PageSize("page-1", *A4_SCAN)]
    by_number: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_number[row.number].append(row)
    papers = session.scalar(select(func.count()).select_from(Paper).where(Paper.exam_id == exam.id)) or 1
    pages = []
    for number, seen in sorted(by_number.items()):
        if len(seen) * 2 < papers and number > 1:
            continue  # a page only some papers have (a stray photo) is not a page of the exam
        sent = [r for r in seen if r.sent_width]
        size = (round(sum(r.width for r in seen) / len(seen)), round(sum(r.height for r in seen) / len(seen)))
        page = PageSize(f"page-{number}", *size)
        if sent:
            mean = (
                round(sum(r.sent_width for r in sent) / len(sent)),
                round(sum(r.sent_height for r in sent) / len(sent)),
            )
            page = PageSize(page.name, page.width, page.height, {exam.model: mean})
        pages.append(page)
    return pages


def template_crop(exam: Exam) -> tuple[int, int] | None:
    """The size one question's crop takes in the cascade's image, from the exam's blank paper
    (answer regions scaled as the crops are); None without a read template."""
    template = exam.template or {}
    regions, heights = template.get("regions") or {}, template.get("line_heights") or []
    sizes = []
    for region in regions.values():
        x0, y0, x1, y1 = region["box"]
        page = int(region["page"])
        line = heights[page - 1] if 0 < page <= len(heights) and heights[page - 1] else CROP_LINE_PX
        scale = min(1.0, CROP_LINE_PX / line)
        sizes.append((round((x1 - x0) * scale), round((y1 - y0) * scale)))
    if not sizes:
        return None
    # The sheet is as wide as its widest crop (a row of a few is near the widest of all), and each
    # crop adds its height: the median.
    tall = sorted(max(h, CROP_ROW_PX) for _w, h in sizes)
    return label_width(regions) + max(w for w, _h in sizes), tall[len(tall) // 2] + CROP_GAP_PX


def vision_sheet(exam: Exam, pages: list[PageSize], model: str) -> tuple[int, int] | None:
    """The size of the image of every question's crop the vision lanes send for this exam (with a
    read blank paper) instead of its pages: each region scaled as `pages` are sent to `model`
    (the sent width over the blank page's) with its print at least LEGIBLE_LINE_PX tall, stacked
    as shared.grading.vision_crops does; an upper bound, since a crop ends at its last writing.
    None without a read blank paper, or where the pages given are not the blank paper's."""
    template = exam.template or {}
    regions, sizes = template.get("regions") or {}, template.get("sizes") or []
    if not lanes.cuts_vision_crops(exam) or template.get("status") != "ready" or len(pages) != len(sizes):
        return None
    key = AnswerKey.model_validate(exam.answer_key)
    if any(q.id not in regions for q in key.questions):
        return None
    printed, heights = template.get("printed") or {}, template.get("line_heights") or []
    if len(heights) != len(sizes):
        return None
    scales = [  # as the pages are sent, and the print at least LEGIBLE_LINE_PX tall
        max(page.sent.get(model, (page.width, page.height))[0] / max(1, size[0]), LEGIBLE_LINE_PX / max(1, line))
        for page, size, line in zip(pages, sizes, heights, strict=True)
    ]
    crops = []
    for question in key.questions:
        region = regions[question.id]
        x0, y0, x1, y1 = region["box"]
        index = int(region["page"]) - 1
        scale = min(1.0, scales[index])
        width, height = x1 - x0, y1 - y0
        if shown := printed.get(question.id):
            # the crop ends at its last print or writing: the print, and under it half the room
            # left for writing (a row's answer sits on it; working fills part of its area)
            line = heights[index]
            width = min(width, max(shown[2], round(0.6 * width)) + CROP_PAD)
            room = max(0, height - shown[3])
            height = min(height, shown[3] + (room // 2 if room > 2 * line else line // 2) + CROP_PAD)
        crops.append((round(width * scale), round(height * scale)))
    width = label_width(q.id for q in key.questions) + max(w for w, _h in crops)
    return width, sum(max(h, CROP_ROW_PX) + CROP_GAP_PX for _w, h in crops)


def unsure_share(session: Session, *conditions: Any) -> float | None:
    """The share of questions the offline reader left to the vision model, over cascade papers read
    offline (None: none read yet)."""
    read = session.execute(
        select(func.count(), func.coalesce(func.sum(func.json_array_length(Exam.answer_key["questions"])), 0))
        .select_from(Paper)
        .join(Exam, Exam.id == Paper.exam_id)
        .where(lanes.cascade_exams(), Paper.local_reading.is_not(None), Paper.status.in_(FINISHED), *conditions)
    ).one()
    papers, questions = read
    if not papers or not questions:
        return None
    asked = session.scalar(
        select(func.coalesce(func.sum(Usage.questions), 0))
        .join(Paper, Paper.id == Usage.paper_id)
        .join(Exam, Exam.id == Paper.exam_id)
        .where(
            lanes.cascade_exams(),
            Usage.outcome.startswith(UsageOutcome.ok.value),
            Paper.status.in_(FINISHED),
            *conditions,
        )
    )
    return float(asked or 0) / float(questions)


def calibration(session: Session, exam: Exam) -> Calibration:
    """The measurements the estimate uses, the nearest first: this exam, the school, every school
    on this server (replies of the same model; cascade papers of any), else the prior."""
    outputs = (
        ("this exam", (Usage.exam_id == exam.id,)),
        ("the school's calls", (Usage.school_id == exam.school_id, Usage.model == exam.model)),
        ("this server's calls", (Usage.model == exam.model,)),
    )
    output, output_from = OUTPUT_TOKENS_PER_QUESTION, "assumed"
    for where, conditions in outputs:
        if (measured := ledger.output_per_question(session, *conditions)) is not None:
            output, output_from = measured, where
            break
    shares = (
        ("this exam", (Paper.exam_id == exam.id,)),
        ("the school's cascade papers", (Paper.school_id == exam.school_id,)),
        ("this server's cascade papers", ()),
    )
    share, share_from = UNSURE_SHARE, "assumed"
    for where, conditions in shares:
        if (measured := unsure_share(session, *conditions)) is not None:
            share, share_from = measured, where
            break
    return Calibration(output, share, {"output_per_question": output_from, "unsure_share": share_from})


def exam_cost(session: Session, exam: Exam, progress: dict[str, int]) -> dict[str, Any]:
    """Estimated against actual: the whole exam's dollars as estimated now, what its finished papers
    really cost, and a paper's estimate by the token rules and after what the finished papers cost.
    `progress`: the exam's papers by status (exam_view's counts)."""
    lane = lanes.priced_lane(exam)
    papers = sum(progress.values())
    finished = sum(progress.get(status.value, 0) for status in FINISHED)
    actual = float(
        session.scalar(
            select(func.coalesce(func.sum(Usage.cost_usd), 0))
            .join(Paper, Paper.id == Usage.paper_id)
            .where(Usage.exam_id == exam.id, Paper.status.in_(FINISHED))
        )
        or 0
    )
    before, read_usd, read = 0.0, 0.0, 0
    measured: dict[str, str] = {}
    if lane is not None:
        key = AnswerKey.model_validate(exam.answer_key)
        calibrated = calibration(session, exam)
        measured = calibrated.sources
        try:
            pages = known_pages(session, exam)
            shape = prompt_shape(session, exam)
            costs = lane_costs(
                exam.model,
                pages,
                shape,
                len(key.questions),
                exam.image_detail,
                calibrated,
                template_crop(exam),
                vision_sheet(exam, pages, exam.model),
            )
            cost = costs.get(lane) or costs["vision"]
            before = cost.later_usd
            if lane == "cascade":
                read_usd, read = read_not_asked(session, exam, shape, len(key.questions), calibrated, pages)
        except UnknownModel:
            pass
    per_paper = (before * PRIOR_WEIGHT + actual) / (PRIOR_WEIGHT + finished)
    return {
        "lane": lane or "offline",
        "papers": papers,
        "papers_finished": finished,
        "papers_read_offline": read,
        "estimated_usd": round(actual + read_usd + per_paper * (papers - finished - read), 6),
        "actual_usd": round(actual, 6),
        "per_paper_usd_from_rules": round(before, 6),
        "per_paper_usd": round(per_paper, 6),
        "measured": measured,
    }


def read_not_asked(
    session: Session, exam: Exam, shape: PromptShape, questions: int, calibrated: Calibration, pages: list[PageSize]
) -> tuple[float, int]:
    """The cascade's papers read offline and not finished yet (a trial run holds them, or they
    wait for the call): the dollars of the call each will make, priced from the questions its
    reading left unsure and the size of their crops, and how many such papers."""
    rows = session.execute(
        select(
            func.json_array_length(Paper.local_reading["unsure"]),
            Paper.local_reading["crops"]["width"].as_integer(),
            Paper.local_reading["crops"]["height"].as_integer(),
        ).where(
            Paper.exam_id == exam.id,
            Paper.status.not_in(FINISHED),
            Paper.local_reading.is_not(None),
            func.json_typeof(Paper.local_reading["unsure"]) == "array",
        )
    ).all()
    if not rows:
        return 0.0, 0
    pages_tokens = sum(page_tokens(exam.model, page, exam.image_detail) for page in pages)
    usd = 0.0
    for asked, width, height in rows:
        if not asked:
            continue  # nothing unsure: it ends offline, for nothing
        images = pages_tokens
        if width and height:  # its crops, where they are fewer tokens than the pages (as sent)
            images = min(images, sheet_tokens(exam.model, width, height, exam.image_detail))
        prompt, output = asked_call(shape, questions, asked, images, calibrated)
        usd += float(call_cost(exam.model, prompt, 0, output))
    return usd, len(rows)
