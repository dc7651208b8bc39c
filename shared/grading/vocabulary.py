"""The knowledge-point vocabulary (知识点): loaded from the packaged data file into SQL."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Exam, KnowledgePoint


@lru_cache(maxsize=1)
def packaged_vocabulary() -> tuple[str, list[dict[str, object]]]:
    raw = json.loads(
        resources.files("shared").joinpath("data/knowledge_points.json").read_text("utf-8")
    )
    keys = ("id", "subject", "grade", "strand", "name_zh", "name_en")
    return raw["version"], [dict(zip(keys, row, strict=True)) for row in raw["points"]]


def sync_vocabulary(session: Session) -> int:
    """Insert or update every packaged knowledge point; returns how many were written."""
    version, points = packaged_vocabulary()
    existing = {kp.id: kp for kp in session.scalars(select(KnowledgePoint))}
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
    rows = session.scalars(
        select(KnowledgePoint).where(
            (KnowledgePoint.subject == exam.subject)
            & KnowledgePoint.grade.between(exam.grade - 1, exam.grade)
            | KnowledgePoint.id.in_(named)
        )
    )
    return sorted(rows, key=lambda kp: kp.id)


def unknown_points(session: Session, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    found = set(session.scalars(select(KnowledgePoint.id).where(KnowledgePoint.id.in_(ids))))
    return ids - found
