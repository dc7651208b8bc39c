"""The vision lane's crops: a paper of an exam with a blank paper, cut into its questions' regions.

Cut once, in the images worker, right after the pages are sized for the model: each page aligned
to its blank page, each question's region cut (its print and the writing in it, down to the last
of either), scaled so the printed text is as tall as on the page as sent and at least
LEGIBLE_LINE_PX, stacked into one labelled image, and grown to fill the tiles or patches that
image takes anyway (as the pages are; a sheet small enough to go at low detail, within its 512 px
square: costs.sheet_detail). The call sends that image instead of the pages when it is
fewer image tokens by the model's rules (`cheaper`); otherwise the pages, as without a template.
A page that cannot be aligned leaves a note, and the pages are sent.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageFilter

from shared.grading import exam_template, lanes
from shared.grading.answer_key import AnswerKey
from shared.grading.reader.reading import stack_crops
from shared.grading.reader.template import cut_questions
from shared.images import jpeg_bytes
from shared.models import Exam, Paper
from shared.spending.costs import sheet_cheaper, sheet_tokens
from shared.storage import Storage, question_crop_key, vision_crops_key

# The crops' printed text is at least this tall. Measured (bench.cost's OCR recall of the sent
# image against the same crops at full resolution, eight students of its class): at the cascade's
# 16 px (CROP_LINE_PX) recall was 0.971-0.985 for the patch models, at 20 px 0.956-0.986, at 22 px
# 0.982-0.993 for every model, at 24 px 0.985-1.0; pages sent at their 10-12 px lines 0.949-0.965.
# At 22 px the image is still fewer tokens than the pages for gpt-5, gpt-5-mini and gpt-5-nano.
LEGIBLE_LINE_PX = 22
MAX_GROWTH = 2.0  # the sheet grows at most this much to fill the tiles or patches it pays for
CAPTION = "Every question cut from the student's paper, one under another, each labelled with its number on the left."


def cut(storage: Storage, exam: Exam, paper: Paper, line_px: Mapping[int, float | None]) -> None:
    """Cut and store the paper's crops (once), recording them, or why there are none, on the
    paper. `line_px`: the text line height of each page (by number) as sized for the model."""
    if paper.crops is not None or not lanes.cuts_vision_crops(exam):
        return
    template = exam_template.usable(exam, storage)
    if template is None:
        return  # not read yet, or unreadable: the pages are sent
    key = AnswerKey.model_validate(exam.answer_key)
    cut_out = cut_questions([storage.get(page.original_key) for page in paper.pages], template, key)
    if cut_out is None:
        paper.crops = {"note": "a page could not be aligned to the blank paper, or a question has no region"}
        return
    sheet = sheet_image(exam.model, exam.image_detail, cut_out, template.line_heights, line_px)
    stored = vision_crops_key(paper.school_id, exam.id, paper.id)
    storage.put(stored, io.BytesIO(jpeg_bytes(sheet)), "image/jpeg")
    answers = {}  # each question's crop alone, for a teacher's review
    for qid, _index, crop in cut_out:
        answers[qid] = question_crop_key(paper.school_id, exam.id, paper.id, qid)
        storage.put(answers[qid], io.BytesIO(jpeg_bytes(crop)), "image/jpeg")
    paper.crops = {
        "key": stored,
        "width": sheet.width,
        "height": sheet.height,
        "questions": [qid for qid, _index, _crop in cut_out],
        "question_crops": answers,
    }


def sheet_image(
    model: str,
    detail: str,
    cut_out: list[tuple[str, int, Image.Image]],
    line_heights: list[int],
    line_px: Mapping[int, float | None],
) -> Image.Image:
    """The one image of the crops: each scaled so its printed text is as tall as on its page as
    sent (`line_px`, by page number; the blank page's `line_heights` in the crops' pixels) and at
    least LEGIBLE_LINE_PX, stacked and labelled, grown to fill the tiles or patches it takes
    anyway, sharpened as the pages are after scaling."""
    scales = [min(1.0, max(line_px.get(n + 1) or 0, LEGIBLE_LINE_PX) / height) for n, height in enumerate(line_heights)]
    sheet = stack_crops([(qid, crop, scales[index]) for qid, index, crop in cut_out])
    tokens, grow = sheet_tokens(model, sheet.width, sheet.height, detail), 1.0
    while (
        grow < MAX_GROWTH
        and sheet_tokens(model, *(round(side * (grow + 0.02)) for side in sheet.size), detail) <= tokens
    ):
        grow += 0.02
    if grow > 1.0:
        grown = stack_crops([(qid, crop, min(1.0, scales[index] * grow)) for qid, index, crop in cut_out])
        if sheet_tokens(model, grown.width, grown.height, detail) <= tokens:
            sheet = grown
    return sheet.filter(ImageFilter.UnsharpMask(radius=1, percent=80, threshold=2))


def cheaper(
    crops: Mapping[str, Any] | None, key: AnswerKey, model: str, detail: str, pages: list[tuple[int, int]]
) -> Mapping[str, Any] | None:
    """The paper's crops, if they hold every question of the key and cost fewer image tokens than
    its pages; None: send the pages."""
    if not crops or crops.get("questions") != [q.id for q in key.questions]:
        return None
    return crops if sheet_cheaper(model, detail, (crops["width"], crops["height"]), pages) else None
