"""The knowledge-point vocabulary (知识点): loaded from the packaged data file into SQL."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.grading.answer_key import AnswerKey
from shared.models import Exam, KnowledgePoint


@lru_cache(maxsize=1)
def packaged_vocabulary() -> tuple[str, list[dict[str, object]]]:
    raw = json.loads(resources.files("shared").joinpath("data/knowledge_points.json").read_text("utf-8"))
    keys = ("id", "subject", "grade", "strand", "name_zh", "name_en", "aliases")
    return raw["version"], [dict(zip(keys, row, strict=True)) for row in raw["points"]]


def sync_vocabulary(session: Session) -> int:
    """Insert or update every packaged knowledge point; returns how many were written. Points a
    newer vocabulary drops are kept, so results that name them still read."""
    version, points = packaged_vocabulary()
    existing = {kp.id: kp for kp in session.scalars(select(KnowledgePoint).where(KnowledgePoint.exam_id.is_(None)))}
    for point in points:
        row = existing.get(str(point["id"])) or KnowledgePoint(id=point["id"])
        for field, value in point.items():
            setattr(row, field, value)
        row.vocabulary_version = version
        session.add(row)
    return len(points)


def exam_vocabulary(session: Session, exam: Exam) -> list[KnowledgePoint]:
    """The points the model may tag for this exam: the subject at this grade and the one before,
    plus every point the answer key names. Sorted by id, so the request prefix never changes."""
    named = {kp for question in exam.answer_key.get("questions", []) for kp in question.get("knowledge_points", [])}
    shared = KnowledgePoint.exam_id.is_(None)
    rows = session.scalars(
        select(KnowledgePoint).where(
            (
                shared
                & (KnowledgePoint.subject == exam.subject)
                & KnowledgePoint.grade.between(exam.grade - 1, exam.grade)
            )
            | (shared & KnowledgePoint.id.in_(named))
            | (KnowledgePoint.exam_id == exam.id)
        )
    )
    return sorted(rows, key=lambda kp: kp.id)


def asked_vocabulary(vocabulary: list[KnowledgePoint], asked: AnswerKey) -> list[KnowledgePoint]:
    """The points listed when only some questions are asked (the cascade's unsure ones): where the
    key names points for every one of them, just those (the model tags from what the key already
    says, and a per-paper prompt is never cached, so the whole list would be paid in full on every
    paper); else the exam's whole list."""
    if not asked.questions or any(not q.knowledge_points for q in asked.questions):
        return vocabulary
    named = asked.knowledge_point_ids()
    return [kp for kp in vocabulary if kp.id in named]


def unknown_points(session: Session, ids: set[str]) -> set[str]:
    """Ids that are not in the shared vocabulary."""
    if not ids:
        return set()
    found = set(
        session.scalars(select(KnowledgePoint.id).where(KnowledgePoint.id.in_(ids), KnowledgePoint.exam_id.is_(None)))
    )
    return ids - found


def custom_point_id(exam_id: object, given: str) -> str:
    """An exam's own point gets an id no other exam can collide with."""
    return f"exam-{str(exam_id).replace('-', '')[:12]}.{given}"
