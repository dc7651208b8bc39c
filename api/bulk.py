"""Bulk intake: one ZIP per class, every good paper created, every refused file named."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from api.context import db, require_school, resources
from api.errors import ApiError, domain_error, refusal_status
from api.exams import school_exam
from api.schemas import BulkResultSchema
from api.uploads import check_uploads, form_text
from shared.intake.bulk import ArchiveRefused, BulkLimits, read_archive, read_roster
from shared.intake.submission import (
    PageError,
    UploadedPage,
    pages_hash,
    stream_digest,
    submit_paper,
)
from shared.models import Paper, PaperStatus
from shared.storage import StorageError
from worker.tasks import start_grading

blp = Blueprint("bulk", __name__, description="Bulk intake of a class's papers")

BULK_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["archive"],
                "properties": {
                    "archive": {
                        "type": "string",
                        "format": "binary",
                        "description": "ZIP: a folder per student (S01/p1.jpg), student__page names (S01__1.jpg), or any layout with a roster.",
                    },
                    "roster": {
                        "type": "string",
                        "format": "binary",
                        "description": "Optional CSV: file, student_ref[, class_label].",
                    },
                    "class_label": {
                        "type": "string",
                        "description": "Class of every paper not given one by the roster.",
                    },
                },
            }
        }
    },
}


@blp.route("/v1/exams/<uuid:exam_id>/bulk")
class BulkSubmit(MethodView):
    decorators = [require_school]

    @blp.doc(requestBody=BULK_BODY)
    @blp.response(200, BulkResultSchema)
    def post(self, exam_id: uuid.UUID) -> dict[str, Any]:
        """Submit a class at once. Papers already in the exam (same student, same pages) are not
        created again, so an interrupted upload can simply be sent again."""
        return submit_class(school_exam(exam_id))


def submit_class(exam: Any) -> dict[str, Any]:
    """The request's class ZIP (and roster) as papers: created, already there, refused with the
    reason. For the API and the web app's upload screen."""
    settings = resources().settings
    archive = request.files.get("archive")
    if archive is None:
        raise ApiError(422, "invalid_request", "send the ZIP in the 'archive' field")
    roster = None
    if "roster" in request.files:
        try:
            roster = read_roster(request.files["roster"].read())
        except (ArchiveRefused, UnicodeDecodeError) as exc:
            raise ApiError(422, "invalid_roster", f"roster: {exc}") from exc
    limits = BulkLimits(
        settings.bulk_max_entries, settings.bulk_max_total_bytes, settings.max_page_bytes, settings.bulk_max_ratio
    )
    try:
        students, refusals = read_archive(
            archive.stream, limits=limits, roster=roster, default_class=form_text("class_label", required=False)
        )
    except ArchiveRefused as exc:
        raise ApiError(
            refusal_status(exc.kind),
            "archive_refused",
            f"{archive.filename}: {exc.reason}",
            {"file": archive.filename},
        ) from exc
    refused = [
        {"file": r.file, "reason": r.reason, "status": refusal_status(r.kind), "student_ref": r.student_ref}
        for r in refusals
    ]
    created, existing = [], []
    session = db()
    for student in students:
        uploads = [UploadedPage(stream, name) for name, stream in student.files]
        try:
            pages, headers = check_uploads(uploads)
        except PageError as exc:
            refused.append(
                {
                    "file": exc.filename,
                    "reason": exc.reason,
                    "status": refusal_status(exc.kind),
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
            existing.append({"paper_id": earlier, "student_ref": student.student_ref})
            continue
        try:
            paper = submit_paper(
                session,
                resources().storage,
                exam,
                student_ref=student.student_ref,
                class_label=student.class_label,
                pages=pages,
                headers=headers,
            )
        except StorageError as exc:
            raise domain_error(
                exc, f"storage failed after {len(created)} papers; send the archive again to continue"
            ) from exc
        if paper.status == PaperStatus.queued:
            start_grading([paper.id])
        created.append(
            {
                "paper_id": paper.id,
                "student_ref": student.student_ref,
                "class_label": student.class_label,
                "pages": len(pages),
                "status": paper.status.value,
            }
        )
    return {
        "created": created,
        "existing": existing,
        "refused": refused,
    }
