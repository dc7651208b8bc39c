"""Budget caps: per exam, and per school per UTC day. No call is ever made past a cap.

Before a call, the worst case it can cost (estimated prompt with a margin, plus the most output
it may produce) is reserved as a usage row, under a lock on the exam and school rows, and only if
spent + reserved + this reservation fits under each cap. After the call the row holds the actual
cost. Concurrent workers therefore cannot jointly pass a cap.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timezone
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.models import Exam, Paper, PaperStatus, School, Usage, utcnow

EXAM_BUDGET = "exam_budget"
SCHOOL_BUDGET = "school_budget"
QUOTA = "quota"
TRIAL = "trial"  # held by a trial run until the teacher releases the exam


class BudgetExceeded(Exception):
    def __init__(self, cause: str, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason


@dataclass(frozen=True)
class CallEstimate:
    prompt_tokens: int
    completion_tokens: int
    expected_cost: Decimal
    worst_case_cost: Decimal


def start_of_day(now: datetime | None = None) -> datetime:
    now = now or utcnow()
    return datetime.combine(now.date(), time(0), tzinfo=timezone.utc)


def exam_spent(session: Session, exam_id: uuid.UUID) -> Decimal:
    """Dollars spent or reserved by the exam."""
    return Decimal(session.scalar(
        select(func.coalesce(func.sum(Usage.cost_usd), 0)).where(Usage.exam_id == exam_id)) or 0)


def school_spent_today(session: Session, school_id: int) -> Decimal:
    """Dollars spent or reserved by the school since 00:00 UTC."""
    return Decimal(session.scalar(
        select(func.coalesce(func.sum(Usage.cost_usd), 0))
        .where(Usage.school_id == school_id, Usage.created_at >= start_of_day())) or 0)


def _lock(session: Session, exam_id: uuid.UUID, school_id: int) -> None:
    """Lock the exam row, then the school row, with no-op UPDATEs: a row lock on PostgreSQL, and the
    write lock from the first statement on SQLite (so the sums below cannot go stale)."""
    session.execute(update(Exam).where(Exam.id == exam_id).values(budget_usd=Exam.budget_usd))
    session.execute(update(School).where(School.id == school_id).values(daily_budget_usd=School.daily_budget_usd))


def reserve(
    session: Session, *, exam_id: uuid.UUID, school_id: int, paper_id: uuid.UUID, model: str,
    estimate: CallEstimate,
) -> Usage:
    """Reserve the call's worst case, or raise BudgetExceeded. Call first in a fresh transaction."""
    _lock(session, exam_id, school_id)
    exam = session.get_one(Exam, exam_id)
    school = session.get_one(School, school_id)
    need = estimate.worst_case_cost
    if exam.budget_usd is not None:
        spent = exam_spent(session, exam_id)
        if spent + need > exam.budget_usd:
            raise BudgetExceeded(EXAM_BUDGET, (
                f"exam budget ${exam.budget_usd:.4f} reached: ${spent:.4f} spent, "
                f"the next paper may cost up to ${need:.4f}; raise the budget to continue"))
    if school.daily_budget_usd is not None:
        spent = school_spent_today(session, school_id)
        if spent + need > school.daily_budget_usd:
            raise BudgetExceeded(SCHOOL_BUDGET, (
                f"school daily budget ${school.daily_budget_usd:.4f} reached: ${spent:.4f} spent today (UTC), "
                f"the next paper may cost up to ${need:.4f}; it resumes tomorrow or when the budget is raised"))
    usage = Usage(
        school_id=school_id, exam_id=exam_id, paper_id=paper_id, model=model, outcome="reserved",
        estimated_prompt_tokens=estimate.prompt_tokens,
        estimated_completion_tokens=estimate.completion_tokens,
        estimated_cost_usd=estimate.expected_cost,
        cost_usd=estimate.worst_case_cost,
    )
    session.add(usage)
    session.flush()
    return usage


def pause_papers(
    session: Session, *, cause: str, reason: str, paper_id: uuid.UUID,
    exam_id: uuid.UUID | None = None, school_id: int | None = None,
) -> int:
    """Pause this paper and every queued paper of the exam (or of the school); returns how many."""
    scope = Paper.exam_id == exam_id if exam_id is not None else Paper.school_id == school_id
    waiting = (Paper.status == PaperStatus.queued) & scope
    this = (Paper.id == paper_id) & Paper.status.in_([PaperStatus.queued, PaperStatus.processing])
    result = session.execute(
        update(Paper).where(waiting | this)
        .values(status=PaperStatus.paused, paused_for=cause, status_reason=reason, updated_at=utcnow())
    )
    if exam_id is not None:
        session.execute(update(Exam).where(Exam.id == exam_id).values(status_reason=reason))
    return result.rowcount


def resume_papers(
    session: Session, *, causes: tuple[str, ...], exam_id: uuid.UUID | None = None,
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
            update(Paper).where(Paper.id.in_(ids))
            .values(status=PaperStatus.queued, paused_for=None, status_reason=None, updated_at=utcnow())
        )
    if exam_id is not None:
        session.execute(update(Exam).where(Exam.id == exam_id).values(status_reason=None))
    return ids


def resumable_by_budget(session: Session) -> list[uuid.UUID]:
    """Papers paused by a budget that now has room again (raised, removed, or a new day)."""
    ids: list[uuid.UUID] = []
    exams = session.scalars(
        select(Exam).where(Exam.id.in_(select(Paper.exam_id).where(
            Paper.status == PaperStatus.paused, Paper.paused_for == EXAM_BUDGET)))
    )
    for exam in exams:
        if exam.budget_usd is None or exam_spent(session, exam.id) < exam.budget_usd:
            ids += resume_papers(session, causes=(EXAM_BUDGET,), exam_id=exam.id)
    schools = session.scalars(
        select(School).where(School.id.in_(select(Paper.school_id).where(
            Paper.status == PaperStatus.paused, Paper.paused_for == SCHOOL_BUDGET)))
    )
    for school in schools:
        if school.daily_budget_usd is None or school_spent_today(session, school.id) < school.daily_budget_usd:
            ids += resume_papers(session, causes=(SCHOOL_BUDGET,), school_id=school.id)
    return ids


def quota_pause(session: Session, exam_id: uuid.UUID) -> str | None:
    """The reason the exam is paused for the provider's quota, if it is: no call is made for any of
    its papers until someone resumes it (POST /v1/exams/{id}/resume)."""
    return session.scalar(select(Paper.status_reason).where(
        Paper.exam_id == exam_id, Paper.status == PaperStatus.paused, Paper.paused_for == QUOTA).limit(1))
