"""Celery tasks: they carry paper ids only, claim, call the pipeline, and record the outcome."""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import replace

from celery import Task, shared_task
from flask import current_app

from shared import webhooks
from shared.grading import batches
from shared.spending import caps
from shared.db import transaction
from shared.grading import pipeline
from shared.grading.answer_key import AnswerKey
from shared.grading.marks import InvalidMarks
from shared.provider import (
    ProviderError,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    RequestRejected,
)
from shared.limiter import TooLargeForLimit
from shared.models import Exam, Paper, PaperStatus, WebhookDelivery
from shared.resources import Resources
from shared.storage import StorageError

log = logging.getLogger(__name__)
MAX_COUNTDOWN = 600.0  # far below the broker's visibility timeout (3600 s)


def resources() -> Resources:
    return current_app.extensions["markq"]


@shared_task(name="markq.normalise_paper", ignore_result=True)
def normalise_paper(paper_id: str) -> str:
    """CPU work on its own queue: normalise the pages of a queued paper, then queue the call.
    Idempotent: pages already normalised are skipped. Papers of local and cascade exams are read
    offline first (markq.read_paper); a cascade paper is normalised later, only if it needs the
    vision model."""
    res = resources()
    pid = uuid.UUID(paper_id)
    try:
        with transaction(res.sessions) as session:
            paper = session.get(Paper, pid)
            if paper is None or paper.status != PaperStatus.queued:
                return "skipped"
            exam = session.get_one(Exam, paper.exam_id)
            offline = exam.provider != "vision" and paper.local_reading is None
            if not offline:
                pipeline.normalise_pages(session, res.storage, paper)
            economy = exam.priority == "economy"
        if offline:
            read_paper.delay(paper_id)
            return "reading offline"
    except Exception:
        # grade_paper normalises whatever is missing itself, and owns retrying and failing
        log.warning("normalising paper %s failed; grading will retry it", paper_id, exc_info=True)
        economy = False
    if economy:
        return "waiting for the next batch"  # markq.send_batches collects it
    grade_paper.delay(paper_id)
    return "normalised"


def start_grading(paper_ids: list[uuid.UUID]) -> None:
    """Queue papers whose rows are committed as queued; the sweep covers a failed send."""
    for paper_id in paper_ids:
        try:
            normalise_paper.delay(str(paper_id))
        except Exception:
            log.warning("could not enqueue paper %s; the sweep will pick it up", paper_id, exc_info=True)


@shared_task(name="markq.read_paper", bind=True, max_retries=None)
def read_paper(self: Task, paper_id: str) -> str:
    """Read a paper offline (OCR, on its own queue) and mark it against the answer key. A local
    exam's paper is done here; a cascade paper whose unsure questions need the vision model goes
    back to the queue for markq.grade_paper, which asks about those questions only."""
    res = resources()
    pid = uuid.UUID(paper_id)
    with transaction(res.sessions) as session:
        paper = session.get(Paper, pid)
        if paper is None:
            return "skipped"
        exam = session.get_one(Exam, paper.exam_id)
        if exam.provider == "vision" or (exam.provider == "cascade" and paper.local_reading is not None):
            return _queue_call(paper_id) if paper.status == PaperStatus.queued else "already read"
        if not pipeline.claim_paper(session, pid):
            return "not claimed"
        answer_key = AnswerKey.model_validate(exam.answer_key)
        page_keys = [page.original_key for page in paper.pages]
        reading = paper.local_reading
    threshold = res.settings.local_confidence_threshold
    try:
        if reading is None:
            offline = pipeline.read_offline(
                [res.storage.get(key) for key in page_keys], answer_key, subject=exam.subject,
                language=exam.language, threshold=threshold, crops=exam.provider == "cascade")
            pipeline.store_crops(res.storage, offline, exam.school_id, exam.id, pid)
            reading, marks = offline.local_reading, offline.marks
        else:  # read before, marked nothing yet (its worker died): the stored reading serves
            marks = pipeline.offline_marks(reading, answer_key, exam.subject, exam.language)
    except StorageError as exc:
        return _retry_or_fail(self, res, pid, f"storage unavailable: {exc}")
    except Exception as exc:
        log.exception("paper %s could not be read offline", paper_id)
        with transaction(res.sessions) as session:
            pipeline.fail_paper(session, pid, f"the pages could not be read offline: {exc}")
        notify(pid)
        return "failed"
    try:
        with transaction(res.sessions) as session:
            paper = session.get_one(Paper, pid)
            paper.local_reading = reading
            unsure = pipeline.unsure_questions(marks, threshold)
            if exam.provider == "local" or not unsure:
                context = replace(pipeline.marking_context(session, pid), local_marks=marks)
                outcome = pipeline.record_marks(session, context, {}, None, local_threshold=threshold).value
            else:
                pipeline.release_paper(session, pid, refund_attempt=True, reason=(
                    f"read offline; {len(unsure)} question(s) the reader is unsure of go to the vision model"))
                outcome = "to the vision model"
    except Exception as exc:
        log.exception("paper %s could not be marked offline", paper_id)
        with transaction(res.sessions) as session:
            pipeline.fail_paper(session, pid, f"offline marking failed: {exc}")
        notify(pid)
        return "failed"
    if outcome == "to the vision model":
        return _queue_call(paper_id)
    notify(pid)
    return outcome


def _queue_call(paper_id: str) -> str:
    """On to the vision model, through normalisation (CPU work stays off the calls queue)."""
    normalise_paper.delay(paper_id)
    return "queued for the vision model"


@shared_task(name="markq.grade_paper", bind=True, max_retries=None)
def grade_paper(self: Task, paper_id: str) -> str:
    """Grade one paper. A duplicate delivery finds the paper already claimed and does nothing."""
    res = resources()
    pid = uuid.UUID(paper_id)
    with transaction(res.sessions) as session:
        paper = session.get(Paper, pid)
        exam = session.get_one(Exam, paper.exam_id) if paper is not None else None
        if exam is not None and exam.priority == "economy":
            return "economy lane"  # sent by markq.send_batches, never as a live call
        if paper is not None and exam is not None and exam.provider != "vision" and paper.local_reading is None:
            read_paper.delay(paper_id)  # read offline first; never a vision call for a local exam
            return "to the offline reader"
        if paper is not None and exam is not None and exam.provider == "local":
            return "local exam"
        if not pipeline.claim_paper(session, pid):
            return "not claimed"
    try:
        with transaction(res.sessions) as session:
            prepared = pipeline.prepare_paper(
                session, res.storage, pid,
                presign_seconds=res.settings.presign_seconds,
                max_completion_tokens=res.settings.max_completion_tokens,
                local_threshold=res.settings.local_confidence_threshold,
            )
    except StorageError as exc:
        return _retry_or_fail(self, res, pid, f"storage unavailable: {exc}")
    except Exception as exc:
        log.exception("paper %s could not be prepared", paper_id)
        with transaction(res.sessions) as session:
            pipeline.fail_paper(session, pid, f"could not prepare the pages: {exc}")
        notify(pid)
        return "failed"

    with transaction(res.sessions) as session:
        reused = pipeline.reuse_earlier_result(session, prepared) is not None
    if reused:
        notify(pid)
        return "reused"
    with transaction(res.sessions) as session:
        if (reason := caps.quota_pause(session, prepared.exam_id)) is not None:
            caps.pause_papers(session, cause=caps.QUOTA, reason=reason, paper_id=pid, exam_id=prepared.exam_id)
            return "paused"

    need = prepared.estimate.prompt_tokens + prepared.request["max_completion_tokens"]
    limiter = res.limiter if res.settings.limiter_enabled else None
    try:
        wait = limiter.acquire(prepared.model, need) if limiter else 0.0
        while limiter and 0 < wait <= res.settings.short_wait_seconds:
            time.sleep(wait)
            wait = limiter.acquire(prepared.model, need)
    except TooLargeForLimit as exc:
        with transaction(res.sessions) as session:
            pipeline.fail_paper(session, pid, f"request too large: {exc}")
        notify(pid)
        return "failed"
    if wait > 0:  # a long wait frees this worker slot; the capacity is not taken
        with transaction(res.sessions) as session:
            pipeline.release_paper(session, pid, reason="waiting for the provider's rate limit", refund_attempt=True)
        raise self.retry(countdown=min(MAX_COUNTDOWN, wait * random.uniform(1.0, 1.1)))

    try:
        with transaction(res.sessions) as session:
            usage_id = caps.reserve(
                session, exam_id=prepared.exam_id, school_id=prepared.school_id, paper_id=pid,
                model=prepared.model, estimate=prepared.estimate,
            ).id
    except caps.BudgetExceeded as exc:
        if limiter:
            limiter.refund(prepared.model, need)
        with transaction(res.sessions) as session:
            scope = {"exam_id": prepared.exam_id} if exc.cause == caps.EXAM_BUDGET else {"school_id": prepared.school_id}
            caps.pause_papers(session, cause=exc.cause, reason=exc.reason, paper_id=pid, **scope)
        return "paused"

    try:
        reply = res.provider.complete(prepared.request)
    except RateLimited as exc:
        if limiter:
            limiter.hold(prepared.model, exc.retry_after)  # every worker holds back, not just this one
            limiter.observe(prepared.model, exc.headers)
        with transaction(res.sessions) as session:
            pipeline.settle_usage(session, usage_id, None, "rate_limited", exc.request_id)
            pipeline.release_paper(session, pid, reason=exc.reason, refund_attempt=True)
        raise self.retry(countdown=min(MAX_COUNTDOWN, exc.retry_after + random.uniform(0, 1)))
    except QuotaExhausted as exc:
        with transaction(res.sessions) as session:
            pipeline.settle_usage(session, usage_id, None, "insufficient_quota", exc.request_id)
            caps.pause_papers(session, cause=caps.QUOTA, reason=exc.reason, paper_id=pid,
                                exam_id=prepared.exam_id)
        return "paused"
    except RequestRejected as exc:
        with transaction(res.sessions) as session:
            pipeline.settle_usage(session, usage_id, None, "rejected", exc.request_id)
            pipeline.fail_paper(session, pid, exc.reason)
        notify(pid)
        return "failed"
    except ProviderUnavailable as exc:
        with transaction(res.sessions) as session:
            pipeline.settle_usage(session, usage_id, None, "unavailable", exc.request_id)
        return _retry_or_fail(self, res, pid, exc.reason)

    if limiter:
        limiter.observe(prepared.model, reply.headers)
        limiter.refund(prepared.model, prepared.request["max_completion_tokens"] - reply.completion_tokens)
    key = pipeline.archive_reply(res.storage, prepared, reply)
    with transaction(res.sessions) as session:
        try:
            marks = pipeline.parse_reply(prepared, reply)
        except InvalidMarks as exc:
            pipeline.settle_usage(session, usage_id, reply, "invalid_reply")
            pipeline.fail_paper(session, pid, f"the model's reply was unusable: {exc}")
            outcome = "failed"
        else:
            pipeline.settle_usage(session, usage_id, reply, "ok")
            outcome = pipeline.record_marks(session, prepared, marks, key,
                                            local_threshold=res.settings.local_confidence_threshold).value
    notify(pid)
    return outcome


def _retry_or_fail(task: Task, res: Resources, pid: uuid.UUID, reason: str) -> str:
    """A transient failure: back off exponentially with jitter, up to max_attempts, then fail."""
    with transaction(res.sessions) as session:
        attempts = session.get_one(Paper, pid).attempts
        give_up = attempts >= res.settings.max_attempts
        if give_up:
            pipeline.fail_paper(session, pid, f"gave up after {attempts} attempts: {reason}")
        else:
            pipeline.release_paper(session, pid, reason=reason, refund_attempt=False)
    if give_up:
        notify(pid)
        return "failed"
    raise task.retry(countdown=min(MAX_COUNTDOWN, 2.0**attempts) * random.uniform(0.5, 1.0))


@shared_task(name="markq.sweep_stuck_papers")
def sweep_stuck_papers() -> int:
    """Re-enqueue papers whose message was lost (a flushed Redis, a dead worker), and papers
    paused by a budget that has room again (raised, or a new day for a school's daily cap)."""
    res = resources()
    with transaction(res.sessions) as session:
        ids = list(pipeline.stuck_papers(
            session,
            queued_before=pipeline.deadline(res.settings.stuck_queued_seconds),
            processing_before=pipeline.deadline(res.settings.stuck_processing_seconds),
        ))
    with transaction(res.sessions) as session:
        ids += caps.resumable_by_budget(session)
    start_grading(ids)
    if ids:
        log.info("re-enqueued %d stuck papers", len(ids))
    return len(ids)


@shared_task(name="markq.send_batches")
def send_batches() -> int:
    """Send each economy exam's queued papers as one Batch API job."""
    res = resources()
    with res.sessions() as session:
        exam_ids = batches.exams_with_waiting_papers(session)
    sent = 0
    for exam_id in exam_ids:
        try:
            batch = batches.send_exam_batch(
                res.sessions, res.storage, res.provider, exam_id,
                presign_seconds=res.settings.batch_presign_seconds,
                max_completion_tokens=res.settings.max_completion_tokens,
            )
        except ProviderError as exc:
            log.warning("batch for exam %s not sent (%s); the next run tries again", exam_id, exc.reason)
            continue
        sent += batch is not None
    return sent


@shared_task(name="markq.poll_batches")
def poll_batches() -> int:
    """Follow open batches; record the answers of those that ended and requeue the rest."""
    res = resources()
    with res.sessions() as session:
        ids = batches.open_batches(session)
    ended = 0
    for batch_id in ids:
        try:
            status, finished = batches.poll_batch(res.sessions, res.storage, res.provider, batch_id)
            ended += status in batches.TERMINAL
            for paper_id in finished:
                notify(paper_id)
        except ProviderError as exc:
            log.warning("batch %s not polled (%s); the next run tries again", batch_id, exc.reason)
    return ended


def notify(paper_id: uuid.UUID) -> None:
    """Queue the webhook deliveries for a paper that has finished (and its exam, if done)."""
    res = resources()
    with transaction(res.sessions) as session:
        ids = webhooks.queue_events(session, paper_id)
    for delivery_id in ids:
        deliver_webhook.delay(delivery_id)


@shared_task(name="markq.deliver_webhook", bind=True, max_retries=None)
def deliver_webhook(self: Task, delivery_id: int) -> str:
    """POST one signed event; retried with exponential backoff, then given up with the reason."""
    res = resources()
    with transaction(res.sessions) as session:
        if webhooks.deliver(session, delivery_id, res.settings):
            return "done"
        attempts = session.get_one(WebhookDelivery, delivery_id).attempts
        if attempts >= res.settings.webhook_max_attempts:
            webhooks.give_up(session, delivery_id)
            return "gave up"
    raise self.retry(countdown=min(MAX_COUNTDOWN, 2.0**attempts) * random.uniform(0.5, 1.0))
