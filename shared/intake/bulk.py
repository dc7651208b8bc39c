"""One ZIP per class: a folder per student, `student__page.ext` names, or a roster CSV.

Safe by construction: entries are read into bounded temporary files, never extracted by name;
absolute or `..` paths, nested archives, over-compressed entries (zip bombs) and oversize files
are refused one by one, and too many entries or too many bytes in all refuse the archive.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from shared.images import PageHeader
from shared.intake.submission import PageError, UploadedPage, pages_hash, stream_digest, submit_paper
from shared.models import BulkStatus, BulkUpload, Exam, Paper, utcnow
from shared.refusals import RefusalKind, has_control_characters
from shared.storage import Storage

ARCHIVE_SUFFIXES = {".zip", ".rar", ".7z", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst"}
ARCHIVE_MAGIC = (b"PK\x03\x04", b"Rar!", b"7z\xbc\xaf", b"\x1f\x8b", b"BZh", b"\xfd7zXZ")
SYSTEM_FILES = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$|\._)")


class ArchiveRefused(ValueError):
    def __init__(self, reason: str, kind: RefusalKind) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass
class Refusal:
    file: str
    reason: str
    kind: RefusalKind
    student_ref: str | None = None


@dataclass
class StudentFiles:
    student_ref: str
    class_label: str
    files: list[tuple[str, BinaryIO]] = field(default_factory=list)


@dataclass(frozen=True)
class BulkLimits:
    max_entries: int
    max_total_bytes: int
    max_file_bytes: int
    max_ratio: int


def natural_key(name: str) -> list[object]:
    """'p2' before 'p10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_roster(data: bytes) -> dict[str, tuple[str, str]]:
    """file path -> (student ref, class label), from a CSV with columns file, student_ref[, class_label]."""
    text = data.decode("utf-8-sig")
    rows = csv.DictReader(io.StringIO(text))
    if not rows.fieldnames or not {"file", "student_ref"} <= set(rows.fieldnames):
        raise ArchiveRefused(
            "the roster needs the columns file and student_ref (class_label is optional)", RefusalKind.invalid
        )
    return {
        row["file"].strip(): (row["student_ref"].strip(), (row.get("class_label") or "").strip())
        for row in rows
        if row.get("file") and row.get("student_ref")
    }


def owner(path: PurePosixPath, roster: dict[str, tuple[str, str]] | None, default_class: str) -> tuple[str, str] | None:
    if roster is not None:
        return roster.get(str(path)) or roster.get(path.name)
    if len(path.parts) >= 2:  # .../S01/page1.jpg: the folder is the student
        return path.parent.name, default_class
    if "__" in path.stem:  # S01__1.jpg
        return path.stem.split("__", 1)[0], default_class
    return None


def _owner_or_why_not(
    path: PurePosixPath, roster: dict[str, tuple[str, str]] | None, default_class: str
) -> tuple[tuple[str, str] | None, str]:
    whose = owner(path, roster, default_class)
    if whose is None:
        return None, (
            "not in the roster"
            if roster is not None
            else "cannot tell whose paper this is: use a folder per student, student__page names, or a roster"
        )
    if any(has_control_characters(text) for text in whose):
        return None, "the student ref or class holds a control character"
    return whose, ""


def _spool(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: BulkLimits) -> BinaryIO | Refusal:
    """One entry read into a bounded temporary file, at its start; or why it is refused."""
    spool = tempfile.SpooledTemporaryFile(max_size=2 * 1024 * 1024)
    read = 0
    try:
        with archive.open(info) as source:
            while chunk := source.read(1024 * 1024):
                read += len(chunk)
                if read > info.file_size or read > limits.max_file_bytes:  # a header that lies
                    break
                spool.write(chunk)
    except (RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        # encrypted (a password), a compression zipfile cannot read, or damaged data
        return Refusal(info.filename, f"cannot read this file in the archive: {exc}", RefusalKind.invalid)
    if read > info.file_size or read > limits.max_file_bytes:
        return Refusal(info.filename, "the file is larger than the archive says", RefusalKind.too_large)
    spool.seek(0)
    if spool.read(8).startswith(ARCHIVE_MAGIC):  # an archive under another name
        return Refusal(info.filename, "archives inside the archive are not opened", RefusalKind.invalid)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def read_archive(
    stream: BinaryIO,
    *,
    limits: BulkLimits,
    roster: dict[str, tuple[str, str]] | None,
    default_class: str,
) -> tuple[list[StudentFiles], list[Refusal]]:
    """The students' files, in page order, and every file refused with its reason."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRefused(f"not a readable ZIP archive ({exc})", RefusalKind.invalid) from exc
    entries = [i for i in archive.infolist() if not i.is_dir() and not SYSTEM_FILES.search(i.filename)]
    if len(entries) > limits.max_entries:
        raise ArchiveRefused(
            f"the archive has {len(entries)} files, more than {limits.max_entries}", RefusalKind.too_large
        )
    total = sum(i.file_size for i in entries)
    if total > limits.max_total_bytes:
        raise ArchiveRefused(
            f"the archive unpacks to {total} bytes, more than {limits.max_total_bytes}", RefusalKind.too_large
        )
    students: dict[str, StudentFiles] = {}
    refused: list[Refusal] = []
    for info in entries:
        name = info.filename
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
            refused.append(Refusal(name, "unsafe path in the archive (absolute or '..')", RefusalKind.invalid))
            continue
        if path.suffix.lower() in ARCHIVE_SUFFIXES:
            refused.append(Refusal(name, "archives inside the archive are not opened", RefusalKind.invalid))
            continue
        if info.file_size > limits.max_file_bytes:
            refused.append(
                Refusal(
                    name,
                    f"file is {info.file_size} bytes, over the {limits.max_file_bytes} limit",
                    RefusalKind.too_large,
                )
            )
            continue
        if info.file_size > 1024 * 1024 and info.file_size > limits.max_ratio * max(1, info.compress_size):
            refused.append(Refusal(name, "compressed far more than any page is (zip bomb?)", RefusalKind.too_large))
            continue
        whose, reason = _owner_or_why_not(path, roster, default_class)
        if whose is None:
            refused.append(Refusal(name, reason, RefusalKind.invalid))
            continue
        spool = _spool(archive, info, limits)
        if isinstance(spool, Refusal):
            refused.append(spool)
            continue
        student = students.setdefault(whose[0], StudentFiles(whose[0], whose[1]))
        student.files.append((name, spool))
    for student in students.values():
        student.files.sort(key=lambda item: natural_key(PurePosixPath(item[0]).name))
    return sorted(students.values(), key=lambda s: natural_key(s.student_ref)), refused


Check = Callable[[list[UploadedPage]], tuple[list[UploadedPage], list[PageHeader]]]


def make_papers(
    session: Session,
    storage: Storage,
    exam: Exam,
    students: list[StudentFiles],
    refusals: list[Refusal],
    *,
    check: Check,
    started: Callable[[Paper], None],
    created: list[dict[str, Any]] | None = None,
    record: Callable[[dict[str, list[dict[str, Any]]]], None] | None = None,
    alive: Callable[[], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """A class's papers from its unpacked archive: `{"created", "existing", "refused"}`, each refused
    file with its reason and `kind`. Each student's files are checked (`check` raises PageError at
    a refused one: that student's paper is not made); a student whose same pages the exam has
    already is `existing`. Each paper is committed as it is made, then `started(paper)` (queue it).

    A worker unpacking again after a crash passes `created`, the papers it made before, and
    `record`, which writes the result so far into `session` before each paper's commit: the list
    of created papers is never lost nor doubled, and the rest is found again from the archive;
    `alive()` after each student keeps its claim."""
    result: dict[str, list[dict[str, Any]]] = {
        "created": list(created or []),
        "existing": [],
        "refused": [
            {"file": r.file, "reason": r.reason, "kind": r.kind.value, "student_ref": r.student_ref} for r in refusals
        ],
    }
    made_before = {str(entry["paper_id"]) for entry in result["created"]}
    for student in students:
        if alive is not None:
            alive()
        try:
            pages, headers = check([UploadedPage(stream, name) for name, stream in student.files])
        except PageError as exc:
            result["refused"].append(
                {
                    "file": exc.filename,
                    "reason": exc.reason,
                    "kind": exc.kind.value,
                    "student_ref": student.student_ref,
                    "note": "this student's paper was not created; send it again once fixed",
                }
            )
            continue
        digest = pages_hash([stream_digest(page.stream) for page in pages])
        earlier = session.scalar(
            select(Paper.id).where(
                Paper.exam_id == exam.id, Paper.student_ref == student.student_ref, Paper.pages_hash == digest
            )
        )
        if earlier is not None:
            if str(earlier) not in made_before:
                result["existing"].append({"paper_id": str(earlier), "student_ref": student.student_ref})
            continue
        paper_id = uuid.uuid4()
        entry = {
            "paper_id": str(paper_id),
            "student_ref": student.student_ref,
            "class_label": student.class_label,
            "pages": len(pages),
            "status": "queued",
        }
        result["created"].append(entry)
        if record is not None:
            record(result)  # committed with the paper
        paper = submit_paper(
            session,
            storage,
            exam,
            student_ref=student.student_ref,
            class_label=student.class_label,
            pages=pages,
            headers=headers,
            paper_id=paper_id,
        )
        entry["status"] = paper.status.value
        started(paper)
    return result


def claim_bulk(session: Session, bulk_id: uuid.UUID, lease_seconds: float) -> bool:
    """queued -> unpacking in one conditional UPDATE, or an unpacking whose worker has said nothing
    for `lease_seconds` (it died); False when another run has it or it is done. The run keeps its
    claim with `keep_bulk` after each student."""
    now = utcnow()
    claimed = session.execute(
        update(BulkUpload)
        .where(
            BulkUpload.id == bulk_id,
            or_(
                BulkUpload.status == BulkStatus.queued,
                and_(
                    BulkUpload.status == BulkStatus.unpacking,
                    BulkUpload.updated_at < now - timedelta(seconds=lease_seconds),
                ),
            ),
        )
        .values(status=BulkStatus.unpacking, updated_at=now)
    )
    return claimed.rowcount == 1


def keep_bulk(session: Session, bulk_id: uuid.UUID) -> None:
    """The unpacking run is alive (caller commits)."""
    session.execute(update(BulkUpload).where(BulkUpload.id == bulk_id).values(updated_at=utcnow()))
