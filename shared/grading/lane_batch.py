"""The economy lane: an exam's papers sent through the Batch API at half the price.

A beat task collects the queued papers of economy exams, claims them, reserves their worst-case
cost at the batch price, and sends them as one JSONL file (custom_id = paper id). Another beat
task polls open batches; when one ends, each answered line is recorded as a live reply would be
(priced at the batch rate), and every paper whose line failed, or that an expired or failed batch
never answered, goes back to queued to be sent again in the next batch.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from shared.db import transaction
from shared.grading import lanes, papers
from shared.grading.lane_live import record_stored_reply, store_reply_first
from shared.grading.requests import prepare_paper
from shared.grading.reuse import reuse_earlier_result
from shared.models import Exam, Page, Paper, PaperStatus, ProviderBatch, UsageOutcome, utcnow
from shared.provider import (
    ProviderError,
    batch_state,
    file_lines,
    reply_from_completion,
    submit_batch,
)
from shared.resources import Resources
from shared.spending import caps, ledger
from shared.spending.costs import BATCH_DISCOUNT

log = logging.getLogger(__name__)
TERMINAL = {"completed", "expired", "failed", "cancelled"}
MAX_LINES = 1000


def _ready() -> Any:
    """A queued paper not in a batch whose pages are checked and sized by the images worker (and,
    with the exam's blank paper, cut into crops there): what a batch takes."""
    unready = select(Page.id).where(
        Page.paper_id == Paper.id,
        or_(Page.verified.is_(False), Page.normalised_key.is_(None), Page.sent_width.is_(None)),
    )
    return and_(Paper.status == PaperStatus.queued, Paper.batch_id.is_(None), ~exists(unready))


def exams_with_waiting_papers(session: Session) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Exam.id).where(lanes.batched_exams(), Exam.id.in_(select(Paper.exam_id).where(_ready())))
        )
    )


def send_exam_batch(res: Resources, exam_id: uuid.UUID) -> ProviderBatch | None:
    """Send the exam's queued papers as one batch; None when there was nothing to send."""
    sessions, settings = res.sessions, res.settings
    with sessions() as session:
        ids = list(
            session.scalars(
                select(Paper.id).where(Paper.exam_id == exam_id, _ready()).order_by(Paper.created_at).limit(MAX_LINES)
            )
        )
    lines, reservations = [], {}
    for paper_id in ids:
        with transaction(sessions) as session:
            if not papers.claim(session, paper_id):
                continue
            stored = ledger.stored_reply(session, paper_id)
        if stored is not None:  # paid for before, not recorded: never sent again
            record_stored_reply(res, paper_id, stored.id, ask_again=False)
            continue
        with transaction(sessions) as session:
            prepared = prepare_paper(
                session,
                res.storage,
                paper_id,
                presign_seconds=settings.batch_presign_seconds,
                max_completion_tokens=settings.max_completion_tokens,
                local_threshold=settings.local_confidence_threshold,
            )
            if reuse_earlier_result(session, prepared) is not None:
                continue
        try:
            with transaction(sessions) as session:
                reservations[paper_id] = ledger.reserve(
                    session,
                    exam_id=prepared.exam_id,
                    school_id=prepared.school_id,
                    paper_id=paper_id,
                    model=prepared.model,
                    cost=prepared.cost.at_batch_rate(BATCH_DISCOUNT),
                ).id
        except caps.BudgetExceeded as exc:
            with transaction(sessions) as session:
                papers.pause(
                    session,
                    cause=exc.cause,
                    reason=exc.reason,
                    paper_id=paper_id,
                    **caps.pause_scope(exc, exam_id, prepared.school_id),
                )
            break
        lines.append(
            {"custom_id": str(paper_id), "method": "POST", "url": "/v1/chat/completions", "body": prepared.request}
        )
    if not lines:
        return None
    try:
        provider_batch_id, input_file_id = submit_batch(res.provider, lines)
    except ProviderError as exc:
        with transaction(sessions) as session:
            for paper_id, usage_id in reservations.items():
                ledger.settle_unpaid(session, usage_id, UsageOutcome.batch_not_sent)
                papers.release(session, paper_id, reason=f"batch not sent: {exc.reason}", refund_attempt=True)
        raise
    with transaction(sessions) as session:
        exam = session.get_one(Exam, exam_id)
        batch = ProviderBatch(
            school_id=exam.school_id,
            exam_id=exam_id,
            provider_batch_id=provider_batch_id,
            input_file_id=input_file_id,
            total=len(lines),
        )
        session.add(batch)
        session.flush()
        session.execute(
            update(Paper)
            .where(Paper.id.in_(reservations))
            .values(batch_id=batch.id, status_reason="in a batch (economy lane)")
        )
    return batch


def poll_batch(res: Resources, batch_id: uuid.UUID) -> tuple[str, list[uuid.UUID]]:
    """Update one open batch; when it has ended, record its answers and requeue the rest.
    Returns the batch's status and the papers it finished."""
    sessions, provider = res.sessions, res.provider
    with sessions() as session:
        batch = session.get_one(ProviderBatch, batch_id)
        provider_batch_id = batch.provider_batch_id
    state = batch_state(provider, provider_batch_id)
    with transaction(sessions) as session:
        session.execute(
            update(ProviderBatch)
            .where(ProviderBatch.id == batch_id)
            .values(status=state.status, completed=state.completed, failed=state.failed)
        )
    if state.status not in TERMINAL:
        return state.status, []
    answered: set[str] = set()
    for line in file_lines(provider, state.output_file_id):
        response = line.get("response") or {}
        if response.get("status_code") == 200 and record_line(res, line["custom_id"], response):
            answered.add(line["custom_id"])
    with transaction(sessions) as session:
        left = session.scalars(
            select(Paper).where(Paper.batch_id == batch_id, Paper.status == PaperStatus.processing)
        ).all()
        for paper in left:  # a failed line, or one an expired or failed batch never answered
            if (usage := ledger.reservation(session, paper.id)) is not None:
                ledger.settle_unpaid(session, usage.id, UsageOutcome.batch_line_failed)
            paper.status, paper.batch_id, paper.claimed_at = PaperStatus.queued, None, None
            paper.status_reason = f"batch {state.status}: sent again in the next batch"
            paper.updated_at = utcnow()
        session.execute(update(ProviderBatch).where(ProviderBatch.id == batch_id).values(finished_at=utcnow()))
    return state.status, [uuid.UUID(custom_id) for custom_id in answered]


def record_line(res: Resources, custom_id: str, response: dict[str, Any]) -> bool:
    """Record one answered line like a live reply (stored first), priced at the batch rate."""
    try:
        paper_id = uuid.UUID(custom_id)
    except ValueError:
        return False
    with transaction(res.sessions) as session:
        paper = session.get(Paper, paper_id)
        if paper is None or paper.status != PaperStatus.processing:
            return False
        usage = ledger.reservation(session, paper_id) or ledger.stored_reply(session, paper_id)
    if usage is None:
        return False
    if usage.outcome == UsageOutcome.reserved:
        try:
            reply = reply_from_completion(response["body"], response.get("request_id"))
        except (ProviderError, ValueError) as exc:
            with transaction(res.sessions) as session:
                ledger.settle_unpaid(session, usage.id, UsageOutcome.batch_rejected)
                papers.fail(session, paper_id, f"batch reply unusable: {exc}")
            return True
        store_reply_first(res, usage.id, reply, batch=True)
    record_stored_reply(res, paper_id, usage.id, ask_again=False)
    return True


def open_batches(session: Session) -> list[uuid.UUID]:
    return list(session.scalars(select(ProviderBatch.id).where(ProviderBatch.finished_at.is_(None))))


def exam_batches(session: Session, exam_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ProviderBatch).where(ProviderBatch.exam_id == exam_id).order_by(ProviderBatch.created_at)
    ).all()
    return [
        {
            "id": b.id,
            "status": b.status,
            "total": b.total,
            "completed": b.completed,
            "failed": b.failed,
            "created_at": b.created_at,
            "finished_at": b.finished_at,
        }
        for b in rows
    ]
