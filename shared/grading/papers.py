"""A paper's state, in one place: claim, lease, release, fail, pause, resume, settle and the sweep.

    queued --claim--> processing --settle--> graded | needs_review
      ^                  |  \\--fail--> failed
      |                  |  \\--pause--> paused --resume--> queued
      +----release-------+
      +----sweep (lease expired: the worker died)----+

A claim is one conditional UPDATE, so a duplicate delivery finds nothing to claim. The claim is a
lease: `claimed_at` is renewed just before a provider call, and the sweep takes back a paper whose
lease is older than the provider timeout plus one sweep interval, so a paper whose worker died is
marked again within the provider timeout plus two sweep intervals.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.models import Exam, Paper, PaperStatus, PauseCause, utcnow


def claim(session: Session, paper_id: uuid.UUID) -> bool:
    """queued -> processing in one conditional UPDATE; False when someone else has it (or it is done)."""
    now = utcnow()
    result = session.execute(
        update(Paper)
        .where(Paper.id == paper_id, Paper.status == PaperStatus.queued)
        .values(status=PaperStatus.processing, attempts=Paper.attempts + 1, claimed_at=now, updated_at=now)
    )
    return result.rowcount == 1


def renew_lease(session: Session, paper_id: uuid.UUID, extra_seconds: float = 0.0) -> None:
    """The claimed paper's worker is alive and about to wait on the provider (`extra_seconds`
    longer than the lease allows for: a call at the Flex tier)."""
    claimed = utcnow() + timedelta(seconds=extra_seconds)
    session.execute(
        update(Paper).where(Paper.id == paper_id, Paper.status == PaperStatus.processing).values(claimed_at=claimed)
    )


def release(session: Session, paper_id: uuid.UUID, *, reason: str, refund_attempt: bool) -> None:
    """processing -> queued, to be tried again. A wait the provider asked for is not an attempt."""
    values: dict[str, Any] = {
        "status": PaperStatus.queued,
        "paused_for": None,  # a paper the trial held, read while the exam was released
        "status_reason": reason,
        "updated_at": utcnow(),
    }
    if refund_attempt:
        values["attempts"] = Paper.attempts - 1
    session.execute(update(Paper).where(Paper.id == paper_id, Paper.status == PaperStatus.processing).values(**values))


def hold(session: Session, paper_id: uuid.UUID, *, reason: str) -> bool:
    """processing -> paused for the trial run, unless its exam was released meanwhile (then False:
    release it instead)."""
    released = select(Exam.trial_released).where(Exam.id == Paper.exam_id).scalar_subquery()
    result = session.execute(
        update(Paper)
        .where(Paper.id == paper_id, Paper.status == PaperStatus.processing, released.is_(False))
        .values(status=PaperStatus.paused, paused_for=PauseCause.trial, status_reason=reason, updated_at=utcnow())
    )
    return result.rowcount == 1


def fail(session: Session, paper_id: uuid.UUID, reason: str) -> None:
    session.execute(
        update(Paper)
        .where(Paper.id == paper_id, Paper.status.in_([PaperStatus.processing, PaperStatus.queued]))
        .values(status=PaperStatus.failed, status_reason=reason, updated_at=utcnow())
    )


def retry(session: Session, paper_id: uuid.UUID, reason: str) -> bool:
    """failed -> queued with its attempts back at 0, for a teacher who asks to mark it again;
    False when the paper is not failed."""
    result = session.execute(
        update(Paper)
        .where(Paper.id == paper_id, Paper.status == PaperStatus.failed)
        .values(status=PaperStatus.queued, status_reason=reason, attempts=0, claimed_at=None, updated_at=utcnow())
    )
    return result.rowcount == 1


def pause(
    session: Session,
    *,
    cause: PauseCause,
    reason: str,
    paper_id: uuid.UUID,
    exam_id: uuid.UUID | None = None,
    school_id: int | None = None,
) -> int:
    """Pause this paper and every queued paper of the exam (or of the school); returns how many."""
    scope = Paper.exam_id == exam_id if exam_id is not None else Paper.school_id == school_id
    # a paper the trial holds, queued to be read offline (free), is read and waits anyway
    waiting = (Paper.status == PaperStatus.queued) & scope & Paper.paused_for.is_distinct_from(PauseCause.trial)
    this = (Paper.id == paper_id) & Paper.status.in_([PaperStatus.queued, PaperStatus.processing])
    result = session.execute(
        update(Paper)
        .where(waiting | this)
        .values(status=PaperStatus.paused, paused_for=cause, status_reason=reason, updated_at=utcnow())
    )
    if exam_id is not None:
        session.execute(update(Exam).where(Exam.id == exam_id).values(status_reason=reason))
    return result.rowcount


def resume(
    session: Session,
    *,
    causes: tuple[PauseCause, ...],
    exam_id: uuid.UUID | None = None,
    school_id: int | None = None,
) -> list[uuid.UUID]:
    """Paused papers back to queued; the caller enqueues them after the commit."""
    query = select(Paper.id).where(Paper.status == PaperStatus.paused, Paper.paused_for.in_(causes))
    if exam_id is not None:
        query = query.where(Paper.exam_id == exam_id)
    if school_id is not None:
        query = query.where(Paper.school_id == school_id)
    ids = list(session.scalars(query))
    if ids:
        session.execute(
            update(Paper)
            .where(Paper.id.in_(ids))
            .values(status=PaperStatus.queued, paused_for=None, status_reason=None, updated_at=utcnow())
        )
    if exam_id is not None:
        session.execute(update(Exam).where(Exam.id == exam_id).values(status_reason=None))
    return ids


def unfinished_ahead(session: Session, paper_id: uuid.UUID) -> int:
    """How many of the paper's own exam's papers, submitted before it, are still queued or being
    marked (its place in its exam's line: the queues' fair share)."""
    paper = session.get(Paper, paper_id)
    if paper is None:
        return 0
    return (
        session.scalar(
            select(func.count()).where(
                Paper.exam_id == paper.exam_id,
                Paper.status.in_((PaperStatus.queued, PaperStatus.processing)),
                Paper.created_at < paper.created_at,
            )
        )
        or 0
    )


def settle(paper: Paper, max_score: float) -> None:
    """The paper's score and status from its questions: needs_review while any question does.
    The score counts final verdicts only; the points still waiting for a teacher are kept apart."""
    paper.score = sum(q.score for q in paper.questions if q.score is not None and not q.needs_review)
    paper.pending_points = sum(q.max_score for q in paper.questions if q.needs_review)
    paper.max_score = max_score
    waiting = sum(1 for q in paper.questions if q.needs_review)
    paper.status = PaperStatus.needs_review if waiting else PaperStatus.graded
    paper.status_reason = f"{waiting} answer(s) need a teacher's review" if waiting else None


def sweep(
    session: Session, *, queued_before: datetime, lease_expired_before: datetime, limit: int = 500
) -> Sequence[uuid.UUID]:
    """Papers whose message may be lost: queued too long, or processing past their lease (the
    worker died), or held for a trial run its exam has ended. All come back as queued papers to
    enqueue now, in this same sweep."""
    expired = session.scalars(
        update(Paper)  # papers in a batch belong to the batch poller, which has 24 hours
        .where(
            Paper.status == PaperStatus.processing, Paper.claimed_at < lease_expired_before, Paper.batch_id.is_(None)
        )
        .values(status=PaperStatus.queued, status_reason="worker did not finish; retrying", updated_at=utcnow())
        .returning(Paper.id)
    ).all()
    lost = session.scalars(
        select(Paper.id)
        .where(Paper.status == PaperStatus.queued, Paper.updated_at < queued_before)
        .order_by(Paper.updated_at)
        .limit(limit)
    ).all()
    if lost:
        session.execute(update(Paper).where(Paper.id.in_(lost)).values(updated_at=utcnow()))
    # a paper held for the trial by a reader that finished as its exam was released
    released = select(Exam.id).where(Exam.trial_released.is_(True))
    late = session.scalars(
        update(Paper)
        .where(Paper.status == PaperStatus.paused, Paper.paused_for == PauseCause.trial, Paper.exam_id.in_(released))
        .values(status=PaperStatus.queued, paused_for=None, status_reason=None, updated_at=utcnow())
        .returning(Paper.id)
    ).all()
    return [*expired, *lost, *late]


def deadline(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)
