"""The offline lane's step: read and mark a paper with the OCR engine on this machine.

The reader itself is `shared.grading.reader` (scanning, layout, reading, marking); this module
runs it over a paper, keeps what it read (papers.local_reading) and, for a cascade, cuts the
unsure questions' crops once, from the pages as they were read.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from shared.grading.answer_key import AnswerKey
from shared.grading.marks import QuestionMark
from shared.grading.reader import marking, reading, scanning
from shared.grading.reader.template import Template, read_with_template
from shared.images import jpeg_bytes
from shared.ocr import ENGINE_NAME
from shared.spending.costs import sheet_cheaper
from shared.storage import Storage, crop_sheet_key, question_crop_key


@dataclass
class OfflineReading:
    """A paper read offline: what papers.local_reading stores, the marks, and (for a cascade) one
    image of the unsure questions' crops, cut from the pages as they were read."""

    local_reading: dict[str, Any]
    marks: dict[str, QuestionMark]
    crops: Image.Image | None
    # Each question's answer as it sits on the page: what a teacher sees beside the reading.
    question_crops: dict[str, Image.Image] = field(default_factory=dict)


def read_offline(
    pages: list[bytes],
    answer_key: AnswerKey,
    *,
    subject: str,
    language: str,
    threshold: float,
    crops: bool,
    template: Template | None = None,
) -> OfflineReading:
    """Read and mark a paper's pages (original uploads, in order) with the offline reader, with
    the exam's blank paper where it has one and every page aligns to it; with `crops`, also cut
    the questions below `threshold`, when every one of them was found."""
    started = time.process_time()
    templated = read_with_template(pages, template, answer_key) if template is not None else None
    if templated is not None:
        scans, readings = templated.aligned, templated.readings
    else:
        scans = scanning.scan_pages(pages)
        readings = reading.read_answers(scans, answer_key)
    derived = templated is not None and template is not None and template.derived
    marks = mark_readings(readings, answer_key, subject, language, derived=derived)
    local_reading: dict[str, Any] = {
        "engine": ENGINE_NAME,
        "template": templated is not None,
        "template_derived": derived,
        "questions": {qid: answer.to_json() for qid, answer in readings.items()},
    }
    unsure = unsure_questions(marks, threshold)
    local_reading["unsure"] = unsure  # what the vision model will be asked: the estimate counts them
    sheet = None
    if crops and unsure and all(readings[qid].region is not None for qid in unsure):
        sheet = reading.crop_sheet(scans, [readings[qid] for qid in unsure])
        local_reading["crops"] = {"questions": unsure, "width": sheet.width, "height": sheet.height}
    local_reading["cpu_seconds"] = round(time.process_time() - started, 3)
    question_crops = {qid: crop for qid, r in readings.items() if (crop := reading.question_crop(scans, r)) is not None}
    return OfflineReading(local_reading, marks, sheet, question_crops)


def store_crops(
    storage: Storage, offline: OfflineReading, school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID
) -> None:
    """Keep the crops beside the pages: each question's (for review), and the unsure questions'
    sheet (for the vision call that asks about those questions)."""
    stored = {}
    for qid, crop in offline.question_crops.items():
        key = question_crop_key(school_id, exam_id, paper_id, qid)
        storage.put(key, io.BytesIO(jpeg_bytes(crop)), "image/jpeg")
        stored[qid] = key
    offline.local_reading["question_crops"] = stored
    if offline.crops is None:
        return
    key = crop_sheet_key(school_id, exam_id, paper_id)
    storage.put(key, io.BytesIO(jpeg_bytes(offline.crops)), "image/jpeg")
    offline.local_reading["crops"]["key"] = key


def offline_marks(
    local_reading: Mapping[str, Any], answer_key: AnswerKey, subject: str, language: str
) -> dict[str, QuestionMark]:
    """The marks of a stored offline reading (papers.local_reading)."""
    readings = {qid: reading.AnswerReading.from_json(value) for qid, value in local_reading["questions"].items()}
    return mark_readings(readings, answer_key, subject, language, derived=bool(local_reading.get("template_derived")))


DERIVED_DOUBT = 0.8  # a wrong or blank verdict read with a blank paper derived from the papers


def mark_readings(
    readings: Mapping[str, reading.AnswerReading],
    answer_key: AnswerKey,
    subject: str,
    language: str,
    *,
    derived: bool = False,
) -> dict[str, QuestionMark]:
    """Each question's mark. With a derived blank paper (`derived`), strokes that most pupils wrote
    alike may have been taken for print and painted out of the writing (44 read 41), so a wrong or
    blank verdict is never sure: a teacher looks. A right one stands: paint-out rarely makes the key."""
    marks = {q.id: marking.mark_reading(readings[q.id], q, subject, language) for q in answer_key.questions}
    if derived:
        marks = {
            qid: mark
            if mark.is_correct
            else mark.model_copy(update={"confidence": round(mark.confidence * DERIVED_DOUBT, 4)})
            for qid, mark in marks.items()
        }
    return marks


def unsure_questions(marks: Mapping[str, QuestionMark], threshold: float) -> list[str]:
    """The questions, in key order, whose offline verdict is below the confidence threshold."""
    return [qid for qid, mark in marks.items() if mark.confidence < threshold]


def cheaper_crops(
    local_reading: Mapping[str, Any], unsure: list[str], model: str, detail: str, pages: list[tuple[int, int]]
) -> Mapping[str, Any] | None:
    """The crops cut when the pages were read, if they are of these very questions (the threshold
    may have changed since) and cost fewer tokens than the pages; None: send the pages."""
    crops = local_reading.get("crops")
    if not crops or crops["questions"] != unsure:
        return None
    return crops if sheet_cheaper(model, detail, (crops["width"], crops["height"]), pages) else None
