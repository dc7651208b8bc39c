"""The offline lane's step: the OCR engine reads a claimed paper and marks it against the key.

A local exam's paper is recorded here. A cascade paper with questions the reader is unsure of is
released for the vision model (lanes.next_step sends it on), which asks about those alone; past
the exam's trial run, before its release, it waits paused instead (its reading stored, counted by
the exam's estimate).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

from shared.db import transaction
from shared.grading import exam_template, lanes, papers
from shared.grading.answer_key import AnswerKey
from shared.grading.offline import (
    offline_marks,
    read_offline,
    store_crops,
    unsure_questions,
)
from shared.grading.requests import marking_context
from shared.grading.results import record_marks
from shared.grading.steps import CannotMark
from shared.models import Exam, Paper
from shared.resources import Resources

log = logging.getLogger(__name__)
TO_VISION = "to the vision model"
HELD = "read; held for the trial run"


def read_and_mark(res: Resources, paper_id: uuid.UUID) -> str:
    """Read (or reuse the stored reading), then record or hand the unsure questions on."""
    threshold = res.settings.local_confidence_threshold
    with transaction(res.sessions) as session:
        paper = session.get_one(Paper, paper_id)
        exam = session.get_one(Exam, paper.exam_id)
        page_keys = [page.original_key for page in paper.pages]
        stored = paper.local_reading
    reading = stored or _read(res, exam, paper_id, page_keys, threshold)
    with transaction(res.sessions) as session:
        session.get_one(Paper, paper_id).local_reading = reading
        answer_key = AnswerKey.model_validate(exam.answer_key)
        marks = offline_marks(reading, answer_key, exam.subject, exam.language)
        unsure = unsure_questions(marks, threshold)
        if not lanes.ends_offline(exam, unsure):
            if lanes.held_for_trial(exam, session.get_one(Paper, paper_id)) and papers.hold(
                session,
                paper_id,
                reason=(
                    f"trial run: read offline; {len(unsure)} question(s) the reader is unsure of wait for the "
                    "exam's release to go to the vision model"
                ),
            ):
                return HELD
            papers.release(
                session,
                paper_id,
                refund_attempt=True,
                reason=(f"read offline; {len(unsure)} question(s) the reader is unsure of go to the vision model"),
            )
            return TO_VISION
        session.flush()
        context = replace(marking_context(session, paper_id, threshold), local_marks=marks, asked_key=None)
        return record_marks(session, context, {}, None, local_threshold=threshold).value


def _read(res: Resources, exam: Exam, paper_id: uuid.UUID, page_keys: list[str], threshold: float) -> dict[str, Any]:
    """A new reading (no transaction open meanwhile), with a cascade's unsure crops stored."""
    pages = [res.storage.get(key) for key in page_keys]  # StorageError: try later
    template = exam_template.usable(exam, res.storage)
    try:
        offline = read_offline(
            pages,
            AnswerKey.model_validate(exam.answer_key),
            subject=exam.subject,
            language=exam.language,
            threshold=threshold,
            crops=lanes.cuts_crops(exam),
            template=template,
        )
    except Exception as exc:
        log.exception("paper %s could not be read offline", paper_id)
        raise CannotMark(f"the pages could not be read offline: {exc}") from exc
    store_crops(res.storage, offline, exam.school_id, exam.id, paper_id)
    return offline.local_reading
