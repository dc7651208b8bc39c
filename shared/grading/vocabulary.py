"""The knowledge-point vocabulary (知识点): loaded from the packaged data file into SQL."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

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


NATIONAL = KnowledgePoint.exam_id.is_(None) & KnowledgePoint.school_id.is_(None)


def visible_to(school_id: int, exam_id: object = None) -> Any:
    """The points a school's exam may name: the national vocabulary, the school's own, and (for
    exams made before school vocabularies) the exam's own."""
    condition = NATIONAL | (KnowledgePoint.school_id == school_id)
    return condition | (KnowledgePoint.exam_id == exam_id) if exam_id is not None else condition


def school_point_id(school_id: int, given: str) -> str:
    """A school's point gets an id no other school's can collide with; its exams share it."""
    return f"school-{school_id}.{given}"


class UnknownPoints(ValueError):
    def __init__(self, names: set[str], ambiguous: dict[str, list[str]]) -> None:
        parts = []
        if names:
            parts.append(f"unknown knowledge points: {', '.join(sorted(names))}")
        parts += [
            f"{name!r} names several knowledge points ({', '.join(ids)}): give the id"
            for name, ids in ambiguous.items()
        ]
        super().__init__("; ".join(parts))
        self.names, self.ambiguous = names, ambiguous


def resolve_points(session: Session, school_id: int, names: set[str], subject: str | None = None) -> dict[str, str]:
    """Each name an answer key gives a point by, resolved to its id: an id of the national
    vocabulary, a school point's own id (with or without its `school-N.` prefix), or a Chinese or
    English name or alias (of this subject where given). Raises UnknownPoints naming what did not
    resolve, or resolved to several points."""
    if not names:
        return {}
    points = list(session.scalars(select(KnowledgePoint).where(visible_to(school_id))))
    by_id = {kp.id: kp.id for kp in points}
    prefix = school_point_id(school_id, "")
    resolved: dict[str, str] = {}
    unknown: set[str] = set()
    ambiguous: dict[str, list[str]] = {}
    for name in names:
        if name in by_id:
            resolved[name] = name
        elif prefix + name in by_id:
            resolved[name] = prefix + name
        else:
            folded = name.strip().casefold()
            matches = sorted(
                kp.id
                for kp in points
                if (subject is None or kp.subject == subject)
                and folded in {kp.name_zh.casefold(), kp.name_en.casefold(), *(a.casefold() for a in kp.aliases)}
            )
            if len(matches) == 1:
                resolved[name] = matches[0]
            elif matches:
                ambiguous[name] = matches
            else:
                unknown.add(name)
    if unknown or ambiguous:
        raise UnknownPoints(unknown, ambiguous)
    return resolved


def add_school_point(
    session: Session, school_id: int, point: dict[str, Any], subject: str, grade: int
) -> KnowledgePoint:
    """The school's point with this given id: made if new, else the one its earlier exams used
    (names and aliases brought up to date). Every exam naming it counts into the same point."""
    point_id = school_point_id(school_id, point["id"])
    row = session.get(KnowledgePoint, point_id)
    if row is None:
        row = KnowledgePoint(id=point_id, school_id=school_id, vocabulary_version="school", aliases=[])
        session.add(row)
    row.subject = point.get("subject") or row.subject or subject
    row.grade = int(point.get("grade") or row.grade or grade)
    row.strand = point.get("strand") or row.strand or "school"
    row.name_zh = point.get("name_zh") or row.name_zh or point["id"]
    row.name_en = point.get("name_en") or row.name_en or row.name_zh
    row.aliases = list(dict.fromkeys([*(row.aliases or []), *(point.get("aliases") or [])]))
    row.refines = point.get("refines") or row.refines
    session.flush()
    return row


def add_school_points(
    session: Session, school_id: int, points: list[dict[str, Any]], subject: str, grade: int
) -> list[KnowledgePoint]:
    """Several of the school's points at once (an exam's own, or an imported list): the national
    point each refines is resolved first (by id, name or alias), so a misspelt one adds nothing."""
    refined = resolve_points(session, school_id, {p["refines"] for p in points if p.get("refines")}, subject)
    return [
        add_school_point(session, school_id, {**p, "refines": refined.get(p.get("refines") or "")}, subject, grade)
        for p in points
    ]


def exam_vocabulary(session: Session, exam: Exam) -> list[KnowledgePoint]:
    """The points the model may tag for this exam: the subject at this grade and the one before
    (national and the school's own), plus every point the answer key names. Sorted by id, so the
    request prefix never changes."""
    named = {kp for question in exam.answer_key.get("questions", []) for kp in question.get("knowledge_points", [])}
    shared = visible_to(exam.school_id) & KnowledgePoint.exam_id.is_(None)
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
