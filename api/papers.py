"""Papers: submit one (multipart, ordered pages), list an exam's papers, read one with its result."""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

from flask import jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from api.context import current_school, db, require_school, resources
from api.errors import ApiError, domain_error, not_found
from api.exams import school_exam
from api.paging import PAGE_HEADERS, STRICT, paged_select
from api.schemas import PaperListArgs, PaperSchema, PaperSummarySchema
from api.spec import answers
from api.uploads import form_text, request_pages
from shared.grading import papers
from shared.intake import idempotency
from shared.intake.submission import replace_failed, submit_paper
from shared.models import Paper, PaperStatus, Usage
from shared.spending.ledger import no_usage, usage_totals
from shared.storage import StorageError
from worker.tasks import start_grading

log = logging.getLogger(__name__)
blp = Blueprint("papers", __name__, description="Students' papers and their results")

SUBMIT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["student_ref", "pages"],
                "properties": {
                    "student_ref": {
                        "type": "string",
                        "maxLength": 100,
                        "description": "A pseudonymous student reference (no names needed).",
                    },
                    "class_label": {"type": "string", "maxLength": 100},
                    "pages": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "Page images in order (JPEG, PNG, WebP, TIFF, HEIC), or PDFs "
                        "(one page each per PDF page).",
                    },
                },
            },
            "encoding": {
                "pages": {"contentType": "image/jpeg, image/png, image/webp, image/tiff, image/heic, application/pdf"}
            },
        }
    },
}


def paper_view(paper: Paper, *, new: bool = False) -> dict[str, Any]:
    """The paper with its pages, results and usage; `new`: queued by this very request, so it has
    no results and no usage yet (nothing is asked of the database for them)."""
    return {
        **{c.key: getattr(paper, c.key) for c in Paper.__table__.columns},
        "status": paper.status.value,
        "provisional": paper.pending_points > 0,
        "pages": paper.pages,
        "questions": []
        if new
        else [
            {
                **{c.key: getattr(q, c.key) for c in q.__table__.columns},
                "knowledge_points": [kp.knowledge_point_id for kp in q.knowledge_points],
            }
            for q in paper.questions
        ],
        "usage": no_usage() if new else usage_totals(db(), Usage.paper_id == paper.id),
        "status_url": url_for("papers.PaperById", paper_id=paper.id, _external=False),
    }


def submit(exam: Any) -> dict[str, Any]:
    """Check, store and queue one paper from the request's form; returns its view."""
    settings = resources().settings
    student_ref = form_text("student_ref", required=True)
    class_label = form_text("class_label", required=False)
    pages, headers = request_pages("send at least one page file in the 'pages' field", settings.max_pages_per_paper)
    try:
        paper = submit_paper(
            db(),
            resources().storage,
            exam,
            student_ref=student_ref,
            class_label=class_label,
            pages=pages,
            headers=headers,
        )
    except StorageError as exc:
        raise domain_error(exc, "could not store the pages; nothing was kept") from exc
    if paper.status == PaperStatus.queued:
        start_grading([paper.id])
    replaced = replace_failed(db(), resources().storage, paper)
    return {**paper_view(paper, new=True), "replaced": replaced}


@blp.route("/v1/exams/<uuid:exam_id>/papers")
class ExamPapers(MethodView):
    decorators = [require_school]

    @blp.doc(
        requestBody=SUBMIT_BODY,
        parameters=[
            {
                "in": "header",
                "name": "Idempotency-Key",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
                "description": "The same key and request return the first response; another request under the key: 409.",
            }
        ],
    )
    @blp.response(202, PaperSchema)
    def post(self, exam_id: uuid.UUID) -> Any:
        """Submit one student's paper: its pages in order. Grading happens in the background."""
        exam = school_exam(exam_id)
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            view = submit(exam)
            return view, 202, {"Location": view["status_url"]}
        if len(key) > 200:
            raise ApiError(422, "invalid_request", "Idempotency-Key is longer than 200 characters")
        school_id = current_school().id
        files = [("pages", f.filename, f.stream) for f in request.files.getlist("pages")]
        request_hash = idempotency.fingerprint(request.path, dict(request.form.items()), files)
        try:
            replay = idempotency.begin(db(), school_id, key, request_hash)
        except idempotency.KeyConflict as exc:
            raise domain_error(exc) from exc
        if replay is not None:
            response = jsonify(replay.response)
            response.status_code = replay.status_code
            response.headers["Idempotent-Replayed"] = "true"
            return response
        try:
            view = submit(exam)
        except BaseException:
            idempotency.release(db(), school_id, key)
            raise
        body = PaperSchema().dump(view)
        idempotency.finish(db(), school_id, key, 202, body)
        return view, 202, {"Location": view["status_url"]}

    @blp.arguments(PaperListArgs, location="query", **STRICT)
    @blp.response(200, PaperSummarySchema(many=True), headers=PAGE_HEADERS)
    def get(self, args: dict[str, Any], exam_id: uuid.UUID) -> Any:
        """The exam's papers by class and student, optionally only those with one status (paged)."""
        exam = school_exam(exam_id)
        query = select(Paper).where(Paper.exam_id == exam.id)
        if "status" in args:
            query = query.where(Paper.status == args["status"])
        return paged_select(db(), query.order_by(Paper.class_label, Paper.student_ref, Paper.id), args)


@blp.route("/v1/papers/<uuid:paper_id>")
class PaperById(MethodView):
    decorators = [require_school]

    @blp.response(200, PaperSchema)
    def get(self, paper_id: uuid.UUID) -> dict[str, Any]:
        """A paper: status, per-question results with knowledge points, and its usage and cost."""
        paper = db().scalar(select(Paper).where(Paper.id == paper_id, Paper.school_id == current_school().id))
        if paper is None:
            raise not_found("paper")
        return paper_view(paper)


@blp.route("/v1/papers/<uuid:paper_id>/retry")
class PaperRetry(MethodView):
    decorators = [require_school]

    @blp.doc(**answers(HTTPStatus.CONFLICT))
    @blp.response(200, PaperSchema)
    def post(self, paper_id: uuid.UUID) -> dict[str, Any]:
        """Mark a failed paper again (after the cause is fixed: a page replaced, a key set). Only a
        failed paper can be retried: 409 otherwise. Its attempts start again from 0."""
        session = db()
        paper = session.scalar(select(Paper).where(Paper.id == paper_id, Paper.school_id == current_school().id))
        if paper is None:
            raise not_found("paper")
        if not papers.retry(session, paper.id, "marked again at the teacher's request"):
            raise ApiError(409, "not_failed", f"only a failed paper can be marked again; this one is {paper.status}")
        session.commit()
        start_grading([paper.id])
        session.refresh(paper)
        return paper_view(paper)
