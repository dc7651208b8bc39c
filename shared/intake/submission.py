"""Submitting a paper: check every page, stream originals to storage, insert the row.

Nothing is stored unless every page is acceptable, and stored objects are removed again if the
database insert fails, so a bad request leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.grading import lanes
from shared.images import PageHeader, PageRejected, inspect_page
from shared.intake.pdf import is_pdf, render_pdf
from shared.models import Exam, Page, Paper, PaperStatus, PauseCause, StaleObject
from shared.refusals import RefusalKind
from shared.settings import Settings
from shared.storage import Storage, original_page_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadedPage:
    stream: BinaryIO
    filename: str  # only ever shown back in error messages, never used in a storage key


class PageError(ValueError):
    """A page was refused; `filename` and `reason` say which and why."""

    def __init__(self, filename: str, number: int, reason: str, kind: RefusalKind) -> None:
        super().__init__(f"page {number} ({filename}): {reason}")
        self.filename = filename
        self.number = number
        self.reason = reason
        self.kind = kind


class _HashingReader:
    """Counts and hashes bytes as storage reads them, so the upload is read once."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.sha256.update(chunk)
        self.size += len(chunk)
        return chunk


def pages_hash(stream_digests: list[str]) -> str:
    """A paper's content hash, from its pages' SHA-256 hex digests in order: identical pages, one hash."""
    return hashlib.sha256("".join(stream_digests).encode()).hexdigest()


def stream_digest(stream: BinaryIO) -> str:
    """The SHA-256 hex digest of an upload, read in chunks; the stream is left at its start.
    (hashlib.file_digest may read through fileno(), which moves a spooled upload to disk.)"""
    digest = hashlib.sha256()
    while chunk := stream.read(1024 * 1024):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def check_pages(
    uploads: list[UploadedPage],
    *,
    max_bytes: int,
    max_pixels: int,
    max_pages: int,
    pdf_dpi: int = 150,
) -> tuple[list[UploadedPage], list[PageHeader]]:
    """Every upload checked and expanded into pages: an image is one page, a PDF one page per PDF
    page (rendered at `pdf_dpi`). Raises PageError naming the file at the first problem."""
    pages: list[UploadedPage] = []
    headers: list[PageHeader] = []
    for number, upload in enumerate(uploads, start=1):
        upload.stream.seek(0, 2)
        size = upload.stream.tell()
        upload.stream.seek(0)
        if size == 0:
            raise PageError(upload.filename, number, "file is empty", RefusalKind.invalid)
        if size > max_bytes:
            raise PageError(
                upload.filename, number, f"file is {size} bytes, over the {max_bytes} limit", RefusalKind.too_large
            )
        try:
            if is_pdf(upload.stream):
                rendered = render_pdf(upload.stream, dpi=pdf_dpi, max_pages=max_pages, max_pixels=max_pixels)
                for index, data in enumerate(rendered, start=1):
                    page = UploadedPage(io.BytesIO(data), f"{upload.filename} page {index}")
                    pages.append(page)
                    headers.append(inspect_page(page.stream, max_pixels, decode=False))
            else:
                headers.append(inspect_page(upload.stream, max_pixels))
                pages.append(upload)
        except PageRejected as exc:
            raise PageError(upload.filename, number, exc.reason, exc.kind) from exc
        if len(pages) > max_pages:
            raise PageError(
                upload.filename, number, f"more than the {max_pages} pages a paper may have", RefusalKind.too_large
            )
    return pages, headers


def check_within(uploads: list[UploadedPage], settings: Settings) -> tuple[list[UploadedPage], list[PageHeader]]:
    """`check_pages` within this installation's limits (intake in the request, or a worker)."""
    return check_pages(
        uploads,
        max_bytes=settings.max_page_bytes,
        max_pixels=settings.max_image_pixels,
        max_pages=settings.max_pages_per_paper,
        pdf_dpi=settings.pdf_dpi,
    )


def submit_paper(
    session: Session,
    storage: Storage,
    exam: Exam,
    *,
    student_ref: str,
    class_label: str,
    pages: list[UploadedPage],
    headers: list[PageHeader],
    paper_id: uuid.UUID | None = None,
) -> Paper:
    """Store the pages and commit the paper (with whatever else `session` holds): queued (the
    caller enqueues after the commit), or held when the exam is in a trial run that already has
    its first papers. `paper_id`: its id, when the caller records it before the commit."""
    paper = Paper(
        id=paper_id or uuid.uuid4(),
        school_id=exam.school_id,
        exam_id=exam.id,
        student_ref=student_ref,
        class_label=class_label,
        status=PaperStatus.queued,
    )
    hold_for_trial(session, exam, paper)
    stored: list[str] = []
    try:
        for number, (page, header) in enumerate(zip(pages, headers, strict=True), start=1):
            key = original_page_key(exam.school_id, exam.id, paper.id, number)
            reader = _HashingReader(page.stream)
            storage.put(key, reader, header.content_type)  # type: ignore[arg-type]
            stored.append(key)
            paper.pages.append(
                Page(
                    number=number,
                    original_key=key,
                    original_format=header.format,
                    original_bytes=reader.size,
                    width=header.width,
                    height=header.height,
                    sha256=reader.sha256.hexdigest(),
                )
            )
        paper.pages_hash = pages_hash([p.sha256 for p in paper.pages])
        session.add(paper)
        session.commit()
    except BaseException:
        session.rollback()
        delete_objects(storage, stored, session)  # best effort; the original error matters more
        raise
    return paper


def hold_for_trial(session: Session, exam: Exam, paper: Paper) -> None:
    """Pause a paper coming in while the exam's trial run already has its first papers (the
    uploads still under way are not counted: they have not come in)."""
    if not exam.trial_papers or exam.trial_released:
        return
    earlier = session.scalar(
        select(func.count())
        .select_from(Paper)
        .where(Paper.exam_id == exam.id, Paper.id != paper.id, Paper.status != PaperStatus.uploading)
    )
    if (earlier or 0) >= exam.trial_papers:
        paper.paused_for = PauseCause.trial
        if lanes.reads_offline(exam):
            # stays queued: the offline reader (free) reads it now and it waits after that, so the
            # exam's estimate counts the questions each held paper will ask the model
            paper.status_reason = (
                f"trial run: the first {exam.trial_papers} papers are graded first; this one is read offline "
                "now and waits for the exam's release to ask the vision model"
            )
            return
        paper.status = PaperStatus.paused
        paper.status_reason = (
            f"trial run: the first {exam.trial_papers} papers are graded first; release the exam to grade the rest"
        )


def replace_failed(session: Session, storage: Storage, paper: Paper) -> list[uuid.UUID]:
    """The same student's failed papers of the exam, removed now that `paper` takes their place
    (rows and their stored pages): a resubmission replaces a failed paper, never adds a second."""
    replaced, keys = drop_failed(session, paper)
    session.commit()
    delete_objects(storage, keys)
    return replaced


def drop_failed(session: Session, paper: Paper) -> tuple[list[uuid.UUID], list[str]]:
    """`replace_failed` in the caller's transaction: the failed papers' rows deleted in `session`;
    their ids, and the object keys to delete once the caller has committed."""
    failed = list(
        session.scalars(
            select(Paper).where(
                Paper.exam_id == paper.exam_id,
                Paper.student_ref == paper.student_ref,
                Paper.status == PaperStatus.failed,
                Paper.id != paper.id,
            )
        )
    )
    keys = [key for old in failed for page in old.pages for key in (page.original_key, page.normalised_key) if key]
    for old in failed:
        session.delete(old)
    return [old.id for old in failed], keys


def delete_objects(storage: Storage, keys: list[str], session: Session | None = None) -> list[str]:
    """Delete stored objects whose rows are gone (or never were), as far as storage lets us; with
    a `session` (nothing pending in it), the keys storage would not delete are noted for the sweep
    to delete later (`delete_stale_objects`). A leftover object costs storage only, never a paper.
    Returns the keys left."""
    left = []
    for key in keys:
        try:
            storage.delete(key)
        except Exception:  # noqa: BLE001 - best effort, logged
            log.warning("could not delete %s", key, exc_info=True)
            left.append(key)
    if left and session is not None:
        try:
            session.execute(insert(StaleObject).values([{"key": k} for k in left]).on_conflict_do_nothing())
            session.commit()
        except Exception:  # noqa: BLE001 - the database away too: the objects stay, logged above
            session.rollback()
            log.warning("could not note %d objects for the sweep to delete", len(left), exc_info=True)
    return left


def delete_stale_objects(session: Session, storage: Storage, limit: int = 500) -> int:
    """The sweep's part: delete the noted objects storage now lets go of (caller commits); how many."""
    gone = []
    for key in session.scalars(select(StaleObject.key).order_by(StaleObject.noted_at).limit(limit)).all():
        try:
            storage.delete(key)
        except Exception:  # noqa: BLE001 - storage still away: the rest wait for the next sweep
            log.info("storage still refuses deletes (%s): the next sweep tries again", key, exc_info=True)
            break
        gone.append(key)
    if gone:
        session.execute(delete(StaleObject).where(StaleObject.key.in_(gone)))
    return len(gone)
