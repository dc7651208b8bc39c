"""Share links: markq's pages for people without an API key (a teacher's browser, a parent's phone).

A link opens one exam's report and every student's sheet, or one student's sheet only. Its token
is random (192 bits) and only its SHA-256 is kept, as with API keys; it expires (7 days unless
asked otherwise, at most 90) and can be revoked at once. Links are built on the configured public
address (MARKQ_PUBLIC_BASE_URL), never on the Host header a client sends.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Exam, ShareLink, utcnow

DEFAULT_DAYS = 7
MAX_DAYS = 90


class LinkRefused(LookupError):
    """The token opens nothing here: unknown, for another exam or student, expired or revoked."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewLink:
    link: ShareLink
    token: str  # shown once, in the URL; never stored


def create_link(session: Session, exam: Exam, student_ref: str | None, days: int = DEFAULT_DAYS) -> NewLink:
    token = secrets.token_urlsafe(24)
    link = ShareLink(
        school_id=exam.school_id,
        exam_id=exam.id,
        student_ref=student_ref,
        token_hash=_hash(token),
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(link)
    session.flush()
    return NewLink(link, token)


def links_of(session: Session, exam_id: uuid.UUID) -> list[ShareLink]:
    return list(session.scalars(select(ShareLink).where(ShareLink.exam_id == exam_id).order_by(ShareLink.id)))


def revoke(session: Session, exam_id: uuid.UUID, link_id: int) -> ShareLink | None:
    link = session.scalar(select(ShareLink).where(ShareLink.id == link_id, ShareLink.exam_id == exam_id))
    if link is not None and link.revoked_at is None:
        link.revoked_at = utcnow()
    return link


def opened(session: Session, token: str, exam_id: uuid.UUID, student_ref: str | None) -> ShareLink:
    """The link this token is, if it opens this exam's page (`student_ref`: a student's sheet;
    None: the exam's report, which a one-student link does not open)."""
    link = session.scalar(select(ShareLink).where(ShareLink.token_hash == _hash(token))) if token else None
    if link is None or link.exam_id != exam_id:
        raise LinkRefused("bad_link", "this link is not valid for this page")
    if link.revoked_at is not None:
        raise LinkRefused("link_revoked", "this link was withdrawn; ask the teacher for a new one")
    if link.expires_at <= utcnow():
        raise LinkRefused("link_expired", "this link has expired; ask the teacher for a new one")
    if link.student_ref is not None and link.student_ref != student_ref:
        raise LinkRefused("bad_link", "this link opens one student's sheet only")
    return link
