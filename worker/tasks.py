"""Celery tasks: each carries a paper id, names its lane step and the domain function that runs it.

How a step runs (claim, transactions, follow-up after commit, retries, failing, webhooks) is the
task base's job (worker.base); which step comes next is the lanes' (shared.grading.lanes).
"""

from __future__ import annotations

import functools
import logging
import random
import tempfile
import uuid
from typing import BinaryIO

from celery import Task, shared_task
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shared import teachers, webhooks
from shared.db import transaction
from shared.grading import exam_template, lane_batch, lanes, papers, vision_crops
from shared.grading.lane_live import call_live
from shared.grading.lane_offline import read_and_mark
from shared.grading.requests import resize_pages
from shared.grading.steps import CannotMark
from shared.intake import uploads
from shared.intake.bulk import ArchiveRefused, BulkLimits, claim_bulk, keep_bulk, make_papers, read_archive
from shared.intake.submission import PageError, check_within, delete_objects, delete_stale_objects
from shared.models import BulkStatus, BulkUpload, Exam, Paper, PaperStatus, WebhookDelivery
from shared.provider import ProviderError
from shared.resources import Resources
from shared.spending import caps, ledger
from shared.storage import ObjectNotFound, StorageError
from worker.base import MAX_COUNTDOWN, PaperTask, notify, resources, send_step

log = logging.getLogger(__name__)


@shared_task(name="markq.verify_paper", base=PaperTask, bind=True, steps=(lanes.Step.verify,))
def verify_paper(self: PaperTask, paper_id: str) -> str:
    """Images queue: check and decode the files a client uploaded by URL, as intake checks a
    multipart page; a bad one fails the paper with its reason, before any provider call."""
    return self.run_step(paper_id, _verify)


def _verify(res: Resources, pid: uuid.UUID) -> str:
    settings = res.settings
    with transaction(res.sessions) as session:
        try:
            uploaded = uploads.verify_pages(
                session,
                res.storage,
                session.get_one(Paper, pid),
                max_bytes=settings.max_page_bytes,
                max_pixels=settings.max_image_pixels,
                max_pages=settings.max_pages_per_paper,
                pdf_dpi=settings.pdf_dpi,
            )
        except PageError as exc:
            raise CannotMark(uploads.page_failure(exc)) from exc
        papers.release(session, pid, reason="pages checked", refund_attempt=True)
    with res.sessions() as session:
        delete_objects(res.storage, uploaded, session)  # after the commit: the rows no longer name them
    return "verified"


@shared_task(name="markq.normalise_paper", base=PaperTask, bind=True, steps=(lanes.Step.normalise,))
def normalise_paper(self: PaperTask, paper_id: str) -> str:
    """Images queue: size the pages for the vision model, once."""
    return self.run_step(paper_id, _resize)


def _resize(res: Resources, pid: uuid.UUID) -> str:
    with transaction(res.sessions) as session:
        paper = session.get_one(Paper, pid)
        sized = resize_pages(session, res.storage, paper)
        line_px = {number: page.line_px for number, page in sized.items()}
        vision_crops.cut(res.storage, session.get_one(Exam, paper.exam_id), paper, line_px)
        papers.release(session, pid, reason="pages ready for the vision model", refund_attempt=True)
    return "normalised"


@shared_task(name="markq.read_paper", base=PaperTask, bind=True, steps=(lanes.Step.read_offline,))
def read_paper(self: PaperTask, paper_id: str) -> str:
    """OCR queue: read and mark offline; a cascade's unsure questions go on to the vision model."""
    return self.run_step(paper_id, read_and_mark)


@shared_task(name="markq.grade_paper", base=PaperTask, bind=True, steps=(lanes.Step.call_live, lanes.Step.record))
def grade_paper(self: PaperTask, paper_id: str) -> str:
    """Calls queue: one provider call, its reply stored first; or the recording of a stored reply."""
    return self.run_step(paper_id, call_live)


def start_grading(paper_ids: list[uuid.UUID]) -> None:
    """Queue papers whose rows are committed as queued; the sweep covers a failed send."""
    from flask import current_app

    res = resources()
    for paper_id in paper_ids:
        try:
            with res.sessions() as session:
                step = lanes.step_for(session, paper_id)
            send_step(current_app.extensions["celery"], paper_id, step)
        except Exception:
            log.warning("could not enqueue paper %s; the sweep will pick it up", paper_id, exc_info=True)


@shared_task(name="markq.read_template", bind=True, max_retries=5)
def read_template(self: Task, exam_id: str) -> str:
    """OCR queue: read an exam's blank paper once and keep each question's answer region."""
    res = resources()
    try:
        with transaction(res.sessions) as session:
            exam = session.get(Exam, uuid.UUID(exam_id))
            if exam is None or not exam.template:
                return "no template"
            return exam_template.read_stored(session, res.storage, exam).value
    except StorageError as exc:
        raise self.retry(countdown=30) from exc


@shared_task(name="markq.derive_template", bind=True, max_retries=5)
def derive_template(self: Task, exam_id: str) -> str:
    """OCR queue: derive an exam's blank paper from its first papers, then read it as a given one."""
    res = resources()
    try:
        with transaction(res.sessions) as session:
            exam = session.get(Exam, uuid.UUID(exam_id))
            if exam is None or not (exam.template or {}).get("derived_from"):
                return "nothing to derive"
            return exam_template.derive_stored(session, res.storage, exam).value
    except StorageError as exc:
        raise self.retry(countdown=30) from exc


@shared_task(name="markq.unpack_bulk", bind=True, max_retries=10)
def unpack_bulk(self: Task, bulk_id: str) -> str:
    """Images queue: unpack a class ZIP uploaded by URL and make its papers, with the rules of a
    ZIP in the request (zip slip, nested archives, ratio and size limits, roster). One run at a
    time holds it (a claim kept alive after each student); run again after a crash, it lists the
    papers it made once and makes none twice."""
    res = resources()
    settings = res.settings
    bid = uuid.UUID(bulk_id)
    with transaction(res.sessions) as session:
        if not claim_bulk(session, bid, settings.stuck_queued_seconds):
            return "nothing to unpack"  # done, or another run has it
        key = session.get_one(BulkUpload, bid).archive_key
    try:
        with tempfile.TemporaryFile() as archive:
            try:
                res.storage.download(key, archive)
            except ObjectNotFound:
                _bulk_failed(res, bid, "archive_missing: the archive is no longer stored; upload it again")
                return "missing"
            archive.seek(0)
            with res.sessions() as session:
                outcome = _unpack(res, session, bid, archive)
            if outcome != "done":
                return outcome
            with res.sessions() as session:
                delete_objects(res.storage, [key], session)
    except StorageError as exc:
        _bulk_release(res, bid)  # the retry claims it again
        raise self.retry(countdown=min(MAX_COUNTDOWN, 15 * 2**self.request.retries)) from exc
    return "done"


def _bulk_release(res: Resources, bid: uuid.UUID) -> None:
    """unpacking -> queued, for the retry to claim; the database away too, the claim lapses and
    the sweep sends it again."""
    try:
        with transaction(res.sessions) as session:
            session.execute(
                update(BulkUpload)
                .where(BulkUpload.id == bid, BulkUpload.status == BulkStatus.unpacking)
                .values(status=BulkStatus.queued)
            )
    except SQLAlchemyError:
        log.warning("could not release class ZIP %s for its retry; the sweep will", bid, exc_info=True)


def _unpack(res: Resources, session: Session, bid: uuid.UUID, archive: BinaryIO) -> str:
    """The claimed class ZIP (downloaded to `archive`) made into papers; its result committed."""
    settings = res.settings
    bulk = session.get_one(BulkUpload, bid)
    keep_bulk(session, bid)
    session.commit()  # alive after the download
    roster = {path: (whose[0], whose[1]) for path, whose in bulk.roster.items()} if bulk.roster else None
    limits = BulkLimits(
        settings.bulk_max_entries, settings.bulk_max_total_bytes, settings.max_page_bytes, settings.bulk_max_ratio
    )
    try:
        students, refusals = read_archive(archive, limits=limits, roster=roster, default_class=bulk.class_label)
    except ArchiveRefused as exc:
        bulk.status = BulkStatus.failed
        bulk.status_reason = f"archive_refused: {bulk.archive_name}: {exc.reason}"
        session.commit()
        delete_objects(res.storage, [bulk.archive_key], session)
        return "refused"

    def record(result: dict[str, list[dict[str, object]]]) -> None:
        bulk.result = {name: [dict(entry) for entry in entries] for name, entries in result.items()}

    def alive() -> None:
        keep_bulk(session, bid)
        session.commit()

    def started(paper: Paper) -> None:
        if paper.status == PaperStatus.queued:
            start_grading([paper.id])

    check = functools.partial(check_within, settings=settings)
    try:
        result = make_papers(
            session,
            res.storage,
            session.get_one(Exam, bulk.exam_id),
            students,
            refusals,
            check=check,
            started=started,
            created=(bulk.result or {}).get("created"),
            record=record,
            alive=alive,
        )
    except (StorageError, SQLAlchemyError):
        raise  # storage or the database away: tried again (a retry, or the sweep once the claim lapses)
    except Exception as exc:  # noqa: BLE001 - an archive no rule foresaw must not be retried for ever
        log.exception("class ZIP %s could not be unpacked", bid)
        session.rollback()
        _bulk_failed(res, bid, f"unpack_failed: {type(exc).__name__}: {exc}")
        return "failed"
    record(result)
    bulk.status = BulkStatus.done
    session.commit()
    return "done"


def _bulk_failed(res: Resources, bid: uuid.UUID, reason: str) -> None:
    with transaction(res.sessions) as session:
        bulk = session.get_one(BulkUpload, bid)
        bulk.status = BulkStatus.failed
        bulk.status_reason = reason


def send_unpack(bulk_id: uuid.UUID) -> None:
    """Queue a class ZIP's unpacking; the sweep covers a failed send."""
    from flask import current_app

    try:
        current_app.extensions["celery"].send_task("markq.unpack_bulk", args=(str(bulk_id),))
    except Exception:
        log.warning("could not enqueue bulk upload %s; the sweep will pick it up", bulk_id, exc_info=True)


@shared_task(name="markq.sweep_stuck_papers")
def sweep_stuck_papers() -> int:
    """Re-enqueue papers whose message was lost (a flushed Redis, a dead worker), and papers
    paused by a budget that has room again (raised, or a new day for a school's daily cap); drop
    the web app's ended sessions and the uploads never completed in time (rows and objects)."""
    res = resources()
    settings = res.settings
    with transaction(res.sessions) as session:
        ids = list(
            papers.sweep(
                session,
                queued_before=papers.deadline(settings.stuck_queued_seconds),
                lease_expired_before=papers.deadline(settings.lease_seconds),
            )
        )
        ledger.abandon_stale(session, papers.deadline(settings.lease_seconds))
    with transaction(res.sessions) as session:
        ids += caps.resumable_by_budget(session)
        teachers.drop_expired_sessions(session)
    with transaction(res.sessions) as session:
        abandoned, abandoned_parts = uploads.expired_uploads(session)
        stuck_bulk = list(
            session.scalars(
                select(BulkUpload.id).where(
                    BulkUpload.status.in_((BulkStatus.queued, BulkStatus.unpacking)),
                    BulkUpload.updated_at < papers.deadline(settings.stuck_queued_seconds),
                )
            )
        )
    for bulk_id in stuck_bulk:
        send_unpack(bulk_id)
    with res.sessions() as session:
        delete_objects(res.storage, abandoned, session)  # after the commit: the rows are gone
    for key, parts_id in abandoned_parts:
        try:
            res.storage.abort_parts(key, parts_id)
        except StorageError:  # the storage's own expiry of stale uploads covers it
            log.warning("could not abort the upload in parts of %s", key, exc_info=True)
    with transaction(res.sessions) as session:
        if deleted := delete_stale_objects(session, res.storage):
            log.info("deleted %d objects left behind while storage was away", deleted)
    start_grading(ids)
    if ids:
        log.info("re-enqueued %d stuck papers", len(ids))
    return len(ids)


@shared_task(name="markq.send_batches")
def send_batches() -> int:
    """Send each economy exam's queued papers as one Batch API job."""
    res = resources()
    with res.sessions() as session:
        exam_ids = lane_batch.exams_with_waiting_papers(session)
    sent = 0
    for exam_id in exam_ids:
        try:
            batch = lane_batch.send_exam_batch(res, exam_id)
        except ProviderError as exc:
            log.warning("batch for exam %s not sent (%s); the next run tries again", exam_id, exc.reason)
            continue
        sent += batch is not None
    return sent


@shared_task(name="markq.poll_batches", bind=True)
def poll_batches(self: Task) -> int:
    """Follow open batches; record the answers of those that ended and requeue the rest."""
    res = resources()
    with res.sessions() as session:
        ids = lane_batch.open_batches(session)
    ended = 0
    for batch_id in ids:
        try:
            status, finished = lane_batch.poll_batch(res, batch_id)
            ended += status in lane_batch.TERMINAL
            for paper_id in finished:
                notify(self.app, res, paper_id)
        except ProviderError as exc:
            log.warning("batch %s not polled (%s); the next run tries again", batch_id, exc.reason)
    return ended


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
