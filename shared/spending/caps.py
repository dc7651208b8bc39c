"""Budget caps: per exam, and per school per UTC day. No call is ever made past a cap.

Before a call, the worst case it can cost (estimated prompt with a margin, plus the most output
it may produce) is checked here under a lock on the exam and school rows, and reserved as a usage
row by the ledger (shared.spending.ledger) in the same transaction, only if spent + reserved + this
reservation fits under each cap. Concurrent workers therefore cannot jointly pass a cap.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.grading import papers
from shared.models import Exam, Paper, PaperStatus, PauseCause, School, Usage, utcnow


class BudgetExceeded(Exception):
    def __init__(self, cause: PauseCause, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason


def start_of_day(now: datetime | None = None) -> datetime:
    now = now or utcnow()
    return datetime.combine(now.date(), time(0), tzinfo=timezone.utc)


def exam_spent(session: Session, exam_id: uuid.UUID) -> Decimal:
    """Dollars spent or reserved by the exam."""
    return Decimal(
        session.scalar(select(func.coalesce(func.sum(Usage.cost_usd), 0)).where(Usage.exam_id == exam_id)) or 0
    )


def school_spent_today(session: Session, school_id: int) -> Decimal:
    """Dollars spent or reserved by the school since 00:00 UTC."""
    return Decimal(
        session.scalar(
            select(func.coalesce(func.sum(Usage.cost_usd), 0)).where(
                Usage.school_id == school_id, Usage.created_at >= start_of_day()
            )
        )
        or 0
    )


def _lock(session: Session, exam_id: uuid.UUID, school_id: int) -> None:
    """Lock the exam row, then the school row, with no-op UPDATEs: a row lock on PostgreSQL, and the
    write lock from the first statement on SQLite (so the sums below cannot go stale)."""
    session.execute(update(Exam).where(Exam.id == exam_id).values(budget_usd=Exam.budget_usd))
    session.execute(update(School).where(School.id == school_id).values(daily_budget_usd=School.daily_budget_usd))


def check(session: Session, *, exam_id: uuid.UUID, school_id: int, need: Decimal) -> None:
    """Raise BudgetExceeded unless `need` more dollars fit under the exam's and the school's caps.
    Locks both rows first, so the ledger's reservation that follows cannot race another worker."""
    _lock(session, exam_id, school_id)
    exam = session.get_one(Exam, exam_id)
    school = session.get_one(School, school_id)
    if exam.budget_usd is not None:
        spent = exam_spent(session, exam_id)
        if spent + need > exam.budget_usd:
            raise BudgetExceeded(
                PauseCause.exam_budget,
                (
                    f"exam budget ${exam.budget_usd:.4f} reached: ${spent:.4f} spent, "
                    f"the next paper may cost up to ${need:.4f}; raise the budget to continue"
                ),
            )
    if school.daily_budget_usd is not None:
        spent = school_spent_today(session, school_id)
        if spent + need > school.daily_budget_usd:
            raise BudgetExceeded(
                PauseCause.school_budget,
                (
                    f"school daily budget ${school.daily_budget_usd:.4f} reached: ${spent:.4f} spent today (UTC), "
                    f"the next paper may cost up to ${need:.4f}; it resumes tomorrow or when the budget is raised"
                ),
            )


def pause_scope(exc: BudgetExceeded, exam_id: uuid.UUID, school_id: int) -> dict[str, Any]:
    """Which papers a reached cap pauses: the exam's, or the whole school's."""
    return {"exam_id": exam_id} if exc.cause == PauseCause.exam_budget else {"school_id": school_id}


def resumable_by_budget(session: Session) -> list[uuid.UUID]:
    """Papers paused by a budget that now has room again (raised, removed, or a new day)."""
    ids: list[uuid.UUID] = []
    exams = session.scalars(
        select(Exam).where(
            Exam.id.in_(
                select(Paper.exam_id).where(
                    Paper.status == PaperStatus.paused, Paper.paused_for == PauseCause.exam_budget
                )
            )
        )
    )
    for exam in exams:
        if exam.budget_usd is None or exam_spent(session, exam.id) < exam.budget_usd:
            ids += papers.resume(session, causes=(PauseCause.exam_budget,), exam_id=exam.id)
    schools = session.scalars(
        select(School).where(
            School.id.in_(
                select(Paper.school_id).where(
                    Paper.status == PaperStatus.paused, Paper.paused_for == PauseCause.school_budget
                )
            )
        )
    )
    for school in schools:
        if school.daily_budget_usd is None or school_spent_today(session, school.id) < school.daily_budget_usd:
            ids += papers.resume(session, causes=(PauseCause.school_budget,), school_id=school.id)
    return ids


ACCOUNT_CAUSES = (PauseCause.quota, PauseCause.provider_key)


def quota_pause(session: Session, exam_id: uuid.UUID) -> tuple[PauseCause, str] | None:
    """Why the exam is paused for the provider account (its quota, or a refused key), if it is: no
    call is made for any of its papers until someone resumes it (POST /v1/exams/{id}/resume)."""
    row = session.execute(
        select(Paper.paused_for, Paper.status_reason)
        .where(Paper.exam_id == exam_id, Paper.status == PaperStatus.paused, Paper.paused_for.in_(ACCOUNT_CAUSES))
        .limit(1)
    ).first()
    return None if row is None else (PauseCause(row[0]), row[1] or "")
