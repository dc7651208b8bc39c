"""Uploads by URL: a paper's files go from the client straight to storage, not through the API.

1. `open_upload`: the client declares each file (name, size, type); the paper is registered as
   `uploading`, each file gets an object key under `uploads/` (built from ids, never the file's
   name) and an upload URL: a presigned PUT with S3/MinIO, or the API's own upload endpoint with a
   random token when the storage is a local folder.
2. The client PUTs each file to its URL (again, for any file that failed: a PUT replaces).
3. `complete_upload`: every object is there with its declared size; the paper is queued.
4. `verify_pages` (images worker): each file is checked and decoded with the same rules as a
   multipart upload (format allow-list, decompression-bomb limits, every pixel decoded, PDFs
   rendered page by page); the checked pages are stored as the paper's pages and the upload objects
   removed. A file that fails fails its paper with the file's reason; no provider call is made.
5. `expired_uploads` (the sweep): papers never completed are removed, rows and objects.

A class ZIP goes the same way (`open_bulk_upload`, `complete_bulk_upload`): one object under
`uploads/`, unpacked and checked by an images worker (`shared.intake.bulk.make_papers`).
"""

from __future__ import annotations

import hashlib
import io
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from shared.intake.submission import PageError, UploadedPage, check_pages, hold_for_trial, pages_hash
from shared.models import BulkStatus, BulkUpload, Exam, Page, Paper, PaperStatus, utcnow
from shared.refusals import RefusalKind
from shared.storage import Storage, original_page_key, paper_prefix

UPLOAD_TYPES = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/tiff": "TIFF",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
    "application/pdf": "PDF",
}


@dataclass(frozen=True)
class DeclaredFile:
    name: str  # shown back in errors only
    size: int
    content_type: str


@dataclass(frozen=True)
class PartTarget:
    number: int
    offset: int  # the part's first byte in the file
    size: int
    url: str
    uploaded: bool = False


@dataclass(frozen=True)
class UploadTarget:
    number: int
    name: str
    size: int  # as declared
    key: str
    url: str | None  # None: the storage has no URL (the API's own endpoint with `token`), or parts
    token: str | None
    content_type: str  # the Content-Type the URL is signed for: the client must send this one
    parts: tuple[PartTarget, ...] = ()  # a large file: each part PUT to its own URL


# A class ZIP over this goes to S3 in parts of this size (S3 takes parts of 5 MiB and more, the
# last one less; a dropped link then loses one part, not the ZIP).
PART_BYTES = 8 * 1024 * 1024


class UploadRefused(ValueError):
    """A declared file the upload cannot take: which, why, and what kind of refusal."""

    def __init__(self, number: int, name: str, reason: str, kind: RefusalKind) -> None:
        super().__init__(f"file {number} ({name}): {reason}")
        self.number, self.name, self.reason, self.kind = number, name, reason, kind


class UploadIncomplete(ValueError):
    """`complete` before every file is in storage at its declared size."""

    def __init__(self, problems: list[dict[str, object]]) -> None:
        super().__init__("; ".join(str(p["reason"]) for p in problems))
        self.problems = problems


def upload_key(school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID, number: int) -> str:
    """Where an uploaded file waits to be verified: under `uploads/`, so a bucket lifecycle rule can
    expire what a client abandoned even if the sweep never runs."""
    return f"uploads/{paper_prefix(school_id, exam_id, paper_id)}/file-{number}"  # under upload_prefix


def upload_prefix(paper: Paper) -> str:
    return f"uploads/{paper_prefix(paper.school_id, paper.exam_id, paper.id)}/"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_opens(stored_hash: str | None, token: str) -> bool:
    """The local backend's upload URL token matches the hash kept for it (constant time)."""
    return stored_hash is not None and secrets.compare_digest(stored_hash, token_digest(token))


def check_declared(files: list[DeclaredFile], *, max_bytes: int, max_files: int) -> None:
    if not files:
        raise UploadRefused(0, "", "declare at least one file", RefusalKind.invalid)
    if len(files) > max_files:
        raise UploadRefused(
            len(files), files[-1].name, f"more than the {max_files} files a paper may have", RefusalKind.too_large
        )
    for number, file in enumerate(files, start=1):
        if file.size <= 0:
            raise UploadRefused(number, file.name, "file is empty", RefusalKind.invalid)
        if file.size > max_bytes:
            raise UploadRefused(
                number, file.name, f"file is {file.size} bytes, over the {max_bytes} byte limit", RefusalKind.too_large
            )
        if file.content_type not in UPLOAD_TYPES:
            raise UploadRefused(
                number,
                file.name,
                f"type {file.content_type!r} is not accepted; send one of {', '.join(sorted(UPLOAD_TYPES))}",
                RefusalKind.unsupported,
            )


def open_upload(
    session: Session,
    storage: Storage,
    exam: Exam,
    *,
    student_ref: str,
    class_label: str,
    files: list[DeclaredFile],
    max_bytes: int,
    max_files: int,
    expires_seconds: int,
) -> tuple[Paper, list[UploadTarget]]:
    """Register the paper as uploading with a target per file (caller commits). The pages go in
    as one executemany without RETURNING (nothing needs their ids; the ORM's batched insert with
    RETURNING was the largest CPU cost of this request): `paper.pages` loads them when asked."""
    check_declared(files, max_bytes=max_bytes, max_files=max_files)
    paper = Paper(
        id=uuid.uuid4(),
        school_id=exam.school_id,
        exam_id=exam.id,
        student_ref=student_ref,
        class_label=class_label,
        status=PaperStatus.uploading,
        upload_expires_at=utcnow() + timedelta(seconds=expires_seconds),
    )
    session.add(paper)
    session.flush()  # the paper's row first: its pages point at it
    targets, rows = [], []
    for number, file in enumerate(files, start=1):
        key = upload_key(exam.school_id, exam.id, paper.id, number)
        url = storage.presign_put(key, file.content_type, expires_seconds)
        token = None if url else secrets.token_urlsafe(32)
        name = file.name[:255]
        rows.append(
            {
                "paper_id": paper.id,
                "number": number,
                "original_key": key,
                "original_format": UPLOAD_TYPES[file.content_type],
                "original_bytes": file.size,
                "width": 0,
                "height": 0,
                "sha256": "",
                "verified": False,
                "upload_name": name,
                "upload_token_hash": token_digest(token) if token else None,
            }
        )
        targets.append(UploadTarget(number, name, file.size, key, url, token, file.content_type))
    session.execute(insert(Page.__table__), rows)
    session.expire(paper, ["pages"])
    return paper, targets


def renew_targets(storage: Storage, paper: Paper, expires_seconds: int) -> list[UploadTarget]:
    """Fresh URLs for an uploading paper's files (the old tokens stop working); caller commits."""
    targets = []
    for page in sorted(paper.pages, key=lambda p: p.number):
        content_type = next(t for t, f in UPLOAD_TYPES.items() if f == page.original_format)  # heif: heic
        url = storage.presign_put(page.original_key, content_type, expires_seconds)
        token = None if url else secrets.token_urlsafe(32)
        page.upload_token_hash = token_digest(token) if token else None
        targets.append(
            UploadTarget(
                page.number, page.upload_name or "", page.original_bytes, page.original_key, url, token, content_type
            )
        )
    return targets


def page_for_token(session: Session, paper_id: uuid.UUID, number: int, token: str) -> Page | None:
    """The uploading page this token opens (the API's own upload endpoint), or None."""
    page = session.scalar(
        select(Page)
        .join(Page.paper)
        .where(Page.paper_id == paper_id, Page.number == number, Paper.status == PaperStatus.uploading)
    )
    return page if page is not None and token_opens(page.upload_token_hash, token) else None


class _Bounded:
    """Reads at most `limit` bytes from a request body; one more and the upload is refused."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self.raw, self.limit, self.size = raw, limit, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size if size > 0 else 1024 * 1024)
        self.size += len(chunk)
        if self.size > self.limit:
            raise UploadRefused(0, "", f"more bytes than the {self.limit} declared", RefusalKind.too_large)
        return chunk


def receive(storage: Storage, key: str, declared: int, body: BinaryIO, content_type: str) -> int:
    """Stream one uploaded file (a page, or a class ZIP) into storage at `key`, refusing a byte
    over its `declared` size (the local backend's upload endpoint); its bytes."""
    reader = _Bounded(body, declared)
    storage.put(key, reader, content_type)  # type: ignore[arg-type]
    return reader.size


def complete_upload(session: Session, storage: Storage, paper: Paper) -> None:
    """Queue the paper once every file is in storage at its declared size (caller commits and
    enqueues); raises UploadIncomplete naming each file that is not. Completing again is a no-op."""
    if paper.status != PaperStatus.uploading:
        return
    problems: list[dict[str, object]] = []
    stored = storage.sizes(upload_prefix(paper))
    for page in paper.pages:
        size = stored.get(page.original_key)
        if size is None:
            problems.append(
                {
                    "file": page.upload_name,
                    "number": page.number,
                    "reason": f"file {page.number} ({page.upload_name}) is not uploaded yet",
                }
            )
        elif size != page.original_bytes:
            problems.append(
                {
                    "file": page.upload_name,
                    "number": page.number,
                    "reason": f"file {page.number} ({page.upload_name}) is {size} bytes, not the {page.original_bytes} declared: upload it again",
                }
            )
    if problems:
        raise UploadIncomplete(problems)
    paper.status = PaperStatus.queued
    paper.upload_expires_at = None
    hold_for_trial(session, session.get_one(Exam, paper.exam_id), paper)


def verify_pages(
    session: Session, storage: Storage, paper: Paper, *, max_bytes: int, max_pixels: int, max_pages: int, pdf_dpi: int
) -> list[str]:
    """Check every uploaded file as intake checks a multipart page, and make the checked pages the
    paper's pages (caller commits, then deletes the upload objects whose keys this returns).
    Raises PageError, naming the file, at the first bad one; nothing is changed then."""
    uploads = sorted(paper.pages, key=lambda page: page.number)
    files = [
        UploadedPage(io.BytesIO(storage.get(page.original_key)), page.upload_name or f"file {page.number}")
        for page in uploads
    ]
    checked, headers = check_pages(
        files, max_bytes=max_bytes, max_pixels=max_pixels, max_pages=max_pages, pdf_dpi=pdf_dpi
    )
    stored: list[str] = []
    fresh: list[Page] = []
    for number, (page, header) in enumerate(zip(checked, headers, strict=True), start=1):
        data = page.stream.read()
        key = original_page_key(paper.school_id, paper.exam_id, paper.id, number)
        storage.put(key, io.BytesIO(data), header.content_type)
        stored.append(key)
        fresh.append(
            Page(
                number=number,
                original_key=key,
                original_format=header.format,
                original_bytes=len(data),
                width=header.width,
                height=header.height,
                sha256=hashlib.sha256(data).hexdigest(),
                upload_name=page.filename[:255],
            )
        )
    old_keys = [page.original_key for page in uploads]
    paper.pages.clear()
    session.flush()
    paper.pages.extend(fresh)
    paper.pages_hash = pages_hash([page.sha256 for page in fresh])
    session.flush()
    return old_keys


# The codes intake answers a refused page with; a page refused in the worker fails its paper with
# the same code at the head of the reason.
REFUSAL_CODES = {RefusalKind.too_large: "page_too_large", RefusalKind.unsupported: "unsupported_page"}


def page_failure(exc: PageError) -> str:
    return f"{REFUSAL_CODES.get(exc.kind, 'invalid_page')}: {exc}"


def expired_uploads(session: Session, now: datetime | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Remove papers and class ZIPs whose upload was never completed in time; returns their object
    keys, and the (key, id) of each upload in parts, for the caller to delete and abort after the
    commit (a key deleted for a row that stays would lose a page)."""
    now = now or utcnow()
    parts: list[tuple[str, str]] = []
    rows = list(
        session.scalars(select(Paper).where(Paper.status == PaperStatus.uploading, Paper.upload_expires_at < now))
    )
    keys = [page.original_key for paper in rows for page in paper.pages]
    for paper in rows:
        session.delete(paper)
    for bulk in session.scalars(
        select(BulkUpload).where(BulkUpload.status == BulkStatus.uploading, BulkUpload.upload_expires_at < now)
    ):
        keys.append(bulk.archive_key)
        if bulk.parts_id is not None:
            parts.append((bulk.archive_key, bulk.parts_id))
        session.delete(bulk)
    return keys, parts


def bulk_key(school_id: int, exam_id: uuid.UUID, bulk_id: uuid.UUID) -> str:
    """Where a class ZIP waits to be unpacked: under `uploads/`, as a paper's files."""
    return f"uploads/{school_id}/{exam_id}/bulk-{bulk_id}.zip"


def open_bulk_upload(
    session: Session,
    storage: Storage,
    exam: Exam,
    *,
    name: str,
    size: int,
    class_label: str,
    roster: dict[str, tuple[str, str]] | None,
    max_bytes: int,
    expires_seconds: int,
) -> tuple[BulkUpload, UploadTarget]:
    """Register a class ZIP as uploading, with its upload target (caller commits)."""
    if size > max_bytes:
        raise UploadRefused(
            1, name, f"the archive is {size} bytes, over the {max_bytes} byte limit", RefusalKind.too_large
        )
    bulk = BulkUpload(
        id=uuid.uuid4(),
        school_id=exam.school_id,
        exam_id=exam.id,
        status=BulkStatus.uploading,
        archive_name=name[:255],
        archive_bytes=size,
        class_label=class_label,
        roster={path: list(whose) for path, whose in roster.items()} if roster is not None else None,
        upload_expires_at=utcnow() + timedelta(seconds=expires_seconds),
    )
    bulk.archive_key = bulk_key(exam.school_id, exam.id, bulk.id)
    if size > PART_BYTES and (parts_id := storage.start_parts(bulk.archive_key, "application/zip")) is not None:
        bulk.parts_id, bulk.part_bytes = parts_id, PART_BYTES
    session.add(bulk)
    return bulk, bulk_target(storage, bulk, expires_seconds, stored={})  # nothing stored yet


def part_ranges(bulk: BulkUpload) -> list[tuple[int, int, int]]:
    """A class ZIP's parts: (number, first byte, size) each; none when it goes in one PUT."""
    if bulk.parts_id is None or not bulk.part_bytes:
        return []
    return [
        (number, offset, min(bulk.part_bytes, bulk.archive_bytes - offset))
        for number, offset in enumerate(range(0, bulk.archive_bytes, bulk.part_bytes), start=1)
    ]


def stored_parts(storage: Storage, bulk: BulkUpload, joined: bool) -> dict[int, int]:
    """The class ZIP's parts stored so far, by number, with their sizes; all of them when the
    object is `joined` already (by a complete whose commit was lost: the parts are gone)."""
    if joined:
        return {number: size for number, _, size in part_ranges(bulk)}
    return storage.stored_parts(bulk.archive_key, bulk.parts_id) if bulk.parts_id else {}


def bulk_target(storage: Storage, bulk: BulkUpload, expires_seconds: int, stored: dict[int, int]) -> UploadTarget:
    """The class ZIP's upload URL (or URLs, one per part, each saying whether it is in `stored`),
    fresh; a new token for the local backend's endpoint (caller commits)."""
    if ranges := part_ranges(bulk):
        assert bulk.parts_id is not None
        parts = tuple(
            PartTarget(
                number,
                offset,
                size,
                storage.presign_part(bulk.archive_key, bulk.parts_id, number, expires_seconds),
                stored.get(number) == size,
            )
            for number, offset, size in ranges
        )
        bulk.upload_token_hash = None
        return UploadTarget(
            1, bulk.archive_name, bulk.archive_bytes, bulk.archive_key, None, None, "application/zip", parts
        )
    url = storage.presign_put(bulk.archive_key, "application/zip", expires_seconds)
    token = None if url else secrets.token_urlsafe(32)
    bulk.upload_token_hash = token_digest(token) if token else None
    return UploadTarget(1, bulk.archive_name, bulk.archive_bytes, bulk.archive_key, url, token, "application/zip")


def bulk_for_token(session: Session, bulk_id: uuid.UUID, token: str) -> BulkUpload | None:
    """The uploading class ZIP this token opens (the API's own upload endpoint), or None."""
    bulk = session.get(BulkUpload, bulk_id)
    if bulk is None or bulk.status != BulkStatus.uploading:
        return None
    return bulk if token_opens(bulk.upload_token_hash, token) else None


def complete_bulk_upload(storage: Storage, bulk: BulkUpload) -> bool:
    """Queue the class ZIP once it is stored at its declared size (caller commits, then sends the
    unpacking); False when this call queued nothing (completed before). Raises UploadIncomplete."""
    if bulk.status != BulkStatus.uploading:
        return False
    size = storage.size(bulk.archive_key)
    if bulk.parts_id is not None and size != bulk.archive_bytes:  # joined already, if a commit was lost
        stored = stored_parts(storage, bulk, joined=False)
        missing = [
            (number, first, length) for number, first, length in part_ranges(bulk) if stored.get(number) != length
        ]
        if missing:
            raise UploadIncomplete(
                [
                    {
                        "file": bulk.archive_name,
                        "number": 1,
                        "part": number,
                        "reason": f"{bulk.archive_name}: part {number} (bytes {first}-{first + length - 1}) "
                        "is not uploaded yet",
                    }
                    for number, first, length in missing
                ]
            )
        storage.finish_parts(bulk.archive_key, bulk.parts_id)
        size = storage.size(bulk.archive_key)
    if size != bulk.archive_bytes:
        reason = (
            f"{bulk.archive_name} is not uploaded yet"
            if size is None
            else f"{bulk.archive_name} is {size} bytes, not the {bulk.archive_bytes} declared: upload it again"
        )
        raise UploadIncomplete([{"file": bulk.archive_name, "number": 1, "reason": reason}])
    bulk.status = BulkStatus.queued
    bulk.upload_expires_at = None
    bulk.parts_id = None
    return True
