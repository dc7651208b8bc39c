"""Uploads by URL: create a paper's upload, PUT each file straight to storage, then complete it.

The API never carries the bytes with S3/MinIO (presigned PUTs); with the local-folder backend its
own `PUT /v1/uploads/{paper}/{number}/{token}` streams them to the folder, so clients speak one protocol.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

from flask import current_app, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from api.context import current_school, db, require_school, resources
from api.errors import ApiError, domain_error, not_found, refusal_status
from api.exams import school_exam
from api.papers import paper_view
from api.schemas import (
    PaperSchema,
    UploadBatchCompletedSchema,
    UploadBatchCompleteSchema,
    UploadBatchCreateSchema,
    UploadBatchSchema,
    UploadCreateSchema,
    UploadFileSchema,
    UploadSchema,
)
from api.spec import answers
from shared.grading import lanes
from shared.intake import uploads
from shared.intake.submission import delete_objects, drop_failed
from shared.models import Exam, Paper, PaperStatus
from shared.refusals import has_control_characters
from shared.storage import StorageError
from worker.base import fair_priority, send_step

log = logging.getLogger(__name__)
blp = Blueprint("uploads", __name__, description="Uploads by URL: the bytes go straight to storage")


def complete_endpoint() -> str:
    """Where a client completes: the API's endpoint, or the web app's for a signed-in teacher."""
    return "web.complete_upload" if request.blueprint == "web" else "uploads.UploadComplete"


def file_view(target: uploads.UploadTarget, url: str | None, uploaded: bool) -> dict[str, Any]:
    """One file to upload: PUT to `url` with its headers, or in parts, each to its own URL."""
    view: dict[str, Any] = {
        "number": target.number,
        "name": target.name,
        "size": target.size,
        "method": "PUT",
        "url": url,
        # the type its URL is signed for; a part's URL is signed for none
        "headers": {} if target.parts else {"Content-Type": target.content_type},
        "uploaded": uploaded,
    }
    if target.parts:
        view["parts"] = [
            {"number": p.number, "offset": p.offset, "size": p.size, "url": p.url, "uploaded": p.uploaded}
            for p in target.parts
        ]
    return view


def _upload_view(paper: Paper, targets: list[uploads.UploadTarget], *, new: bool) -> dict[str, Any]:
    """The upload's files and URLs; for an upload resumed, which files are stored already (one
    listing of the paper's upload prefix; a new upload has none)."""
    settings = resources().settings
    stored = {} if new else resources().storage.sizes(uploads.upload_prefix(paper))
    files = []
    for target in targets:
        url = target.url or settings.public_base_url.rstrip("/") + url_for(
            "uploads.UploadEndpoint", paper_id=paper.id, number=target.number, token=target.token
        )
        files.append(file_view(target, url, stored.get(target.key) == target.size))
    return {
        "paper_id": paper.id,
        "student_ref": paper.student_ref,
        "status": paper.status.value,
        "expires_at": paper.upload_expires_at,
        "files": files,
        "complete_url": url_for(complete_endpoint(), paper_id=paper.id),
    }


@blp.route("/v1/exams/<uuid:exam_id>/uploads")
class Uploads(MethodView):
    decorators = [require_school]

    @blp.arguments(UploadCreateSchema)
    @blp.response(201, UploadSchema)
    def post(self, fields: dict[str, Any], exam_id: uuid.UUID) -> dict[str, Any]:
        """Start one student's paper by URL: declare each file (name, size in bytes, type) and get an
        upload URL for each. PUT each file's bytes to its URL with the Content-Type given, then
        POST complete_url. The paper is `uploading` until then; never completed, it expires."""
        return start_upload(school_exam(exam_id), fields), 201


def start_upload(exam: Exam, fields: dict[str, Any]) -> dict[str, Any]:
    """Register one student's paper as uploading (the request's declared files), committed; its
    view with an upload URL per file. For the API and the web app alike."""
    view = _open_one(exam, fields)
    db().commit()
    return view


def _open_one(exam: Exam, fields: dict[str, Any], where: dict[str, Any] | None = None) -> dict[str, Any]:
    """One paper registered as uploading in the request's transaction (not committed); its view.
    A refusal rolls the transaction back and names the file (and `where` it was: a batch's paper)."""
    for name in ("student_ref", "class_label"):
        if has_control_characters(fields.get(name, "")):
            db().rollback()
            raise ApiError(422, "invalid_request", f"{name} holds a control character (NUL, a line break)", where)
    settings = resources().settings
    declared = [uploads.DeclaredFile(f["name"], f["size"], f["content_type"]) for f in fields["files"]]
    try:
        paper, targets = uploads.open_upload(
            db(),
            resources().storage,
            exam,
            student_ref=fields["student_ref"].strip(),
            class_label=fields.get("class_label", "").strip(),
            files=declared,
            max_bytes=settings.max_page_bytes,
            max_files=settings.max_pages_per_paper,
            expires_seconds=settings.upload_expiry_seconds,
        )
    except uploads.UploadRefused as exc:
        db().rollback()
        code = uploads.REFUSAL_CODES.get(exc.kind, "invalid_page")
        details = {**(where or {}), "file": exc.name, "number": exc.number}
        raise ApiError(refusal_status(exc.kind), code, str(exc), details) from exc
    return _upload_view(paper, targets, new=True)  # before the commit: no reload of each page after it


@blp.route("/v1/exams/<uuid:exam_id>/uploads/batch")
class UploadBatch(MethodView):
    decorators = [require_school]

    @blp.arguments(UploadBatchCreateSchema)
    @blp.response(201, UploadBatchSchema)
    def post(self, fields: dict[str, Any], exam_id: uuid.UUID) -> dict[str, Any]:
        """Start many students' papers by URL in one call, each declared as for one upload: one
        request and one transaction instead of one a paper. All or nothing: a file refused refuses
        the batch, its error naming the paper (`paper`: its place in the list, from 0) and the file."""
        exam = school_exam(exam_id)
        views = [
            _open_one(exam, paper, {"paper": n, "student_ref": paper["student_ref"]})
            for n, paper in enumerate(fields["papers"])
        ]
        db().commit()
        return {"papers": views}, 201


def _school_paper(paper_id: uuid.UUID) -> Paper:
    paper = db().scalar(select(Paper).where(Paper.id == paper_id, Paper.school_id == current_school().id))
    if paper is None:
        raise not_found("paper")
    return paper


@blp.route("/v1/papers/<uuid:paper_id>/upload")
class UploadAgain(MethodView):
    decorators = [require_school]

    @blp.doc(**answers(HTTPStatus.CONFLICT))
    @blp.response(200, UploadSchema)
    def get(self, paper_id: uuid.UUID) -> dict[str, Any]:
        """An uploading paper's files again, with fresh URLs and whether each is already stored at
        its declared size: after a dropped link, upload only what is missing, then complete."""
        return upload_again(_school_paper(paper_id))


def upload_again(paper: Paper) -> dict[str, Any]:
    """An uploading paper's view with fresh URLs and what is stored already (committed)."""
    if paper.status != PaperStatus.uploading:
        raise ApiError(409, "not_uploading", f"the paper is {paper.status.value}, no longer uploading")
    targets = uploads.renew_targets(resources().storage, paper, resources().settings.upload_expiry_seconds)
    view = _upload_view(paper, targets, new=False)
    db().commit()
    return view


@blp.route("/v1/papers/<uuid:paper_id>/complete")
class UploadComplete(MethodView):
    decorators = [require_school]

    @blp.doc(**answers(HTTPStatus.CONFLICT))
    @blp.response(200, PaperSchema)
    def post(self, paper_id: uuid.UUID) -> dict[str, Any]:
        """Every file is uploaded: markq checks each is stored at its declared size and queues the
        paper (the images worker then checks and decodes each page). 409 names each file missing.
        Completing a paper twice queues it once."""
        # the paper with its pages and its exam in one query: completing reads all three
        row = (
            db()
            .execute(
                select(Paper, Exam)
                .join(Exam, Exam.id == Paper.exam_id)
                .options(joinedload(Paper.pages))
                .where(Paper.id == paper_id, Paper.school_id == current_school().id)
            )
            .first()
        )
        if row is None:
            raise not_found("paper")
        return complete(row[0])


STORAGE_AWAY = "storage does not answer now; complete again in a moment"


def complete(paper: Paper) -> dict[str, Any]:
    """Queue an uploaded paper once every file is stored (409 naming what is not); its view. One
    transaction: the paper queued, the same student's failed papers it replaces removed, and its
    place in the exam's line taken for the queue's priority; then the verify step is sent."""
    session = db()
    try:
        view, priority, keys = _complete_in(session, paper)
    except uploads.UploadIncomplete as exc:
        raise ApiError(409, "upload_incomplete", str(exc), exc.problems) from exc
    except StorageError as exc:
        raise domain_error(exc, STORAGE_AWAY) from exc
    session.commit()
    _after_commit([(paper, priority)], keys)
    return view


def _complete_in(session: Session, paper: Paper) -> tuple[dict[str, Any], int | None, list[str]]:
    """Complete one paper in the caller's transaction (raises UploadIncomplete, StorageError):
    its view with the papers it replaced, its queue priority when this call queued it (its verify
    step to send after the commit, else None), and the replaced papers' objects to delete then."""
    was_uploading = paper.status == PaperStatus.uploading
    uploads.complete_upload(session, resources().storage, paper)  # one listing of the paper's own files
    view = paper_view(paper, new=was_uploading)  # before the commit: nothing is loaded again after it
    replaced: list[uuid.UUID] = []
    keys: list[str] = []
    priority = None
    if was_uploading:
        replaced, keys = drop_failed(session, paper)
        if paper.status == PaperStatus.queued:  # its first step is known (checking the files): no lookup
            priority = fair_priority(paper.id, session)
    return {**view, "replaced": replaced}, priority, keys


def _after_commit(queued: list[tuple[Paper, int | None]], keys: list[str]) -> None:
    """Send the verify step of each paper queued, and delete the replaced papers' objects."""
    for paper, priority in queued:
        if priority is not None:
            _send_verify(paper, priority)
    delete_objects(resources().storage, keys)


@blp.route("/v1/exams/<uuid:exam_id>/uploads/complete")
class UploadBatchComplete(MethodView):
    decorators = [require_school]

    @blp.arguments(UploadBatchCompleteSchema)
    @blp.response(200, UploadBatchCompletedSchema)
    def post(self, fields: dict[str, Any], exam_id: uuid.UUID) -> dict[str, Any]:
        """Complete many of the exam's papers in one call: each is queued as a single complete
        would queue it. A paper not ready (a file missing or of the wrong size) or not found is
        left as it was and named in `incomplete` with the error completing it alone would answer;
        the others are queued all the same. Completing twice queues once: safe to repeat."""
        exam = school_exam(exam_id)
        wanted = list(dict.fromkeys(fields["paper_ids"]))
        found = {
            paper.id: paper
            for paper in db()
            .scalars(
                select(Paper)
                .options(joinedload(Paper.pages))
                .where(Paper.id.in_(wanted), Paper.exam_id == exam.id, Paper.school_id == current_school().id)
            )
            .unique()
        }
        session = db()
        views, incomplete, queued, keys = [], [], [], []
        for paper_id in wanted:
            paper = found.get(paper_id)
            if paper is None:
                incomplete.append({"paper_id": paper_id, "error": {"code": "not_found", "message": "paper not found"}})
                continue
            try:
                view, priority, dropped = _complete_in(session, paper)
            except uploads.UploadIncomplete as exc:
                error = {"code": "upload_incomplete", "message": str(exc), "details": exc.problems}
                incomplete.append({"paper_id": paper_id, "error": error})
                continue
            except StorageError as exc:
                session.rollback()  # the papers before it in this call stay uploading too
                raise domain_error(exc, STORAGE_AWAY) from exc
            views.append(view)
            queued.append((paper, priority))
            keys += dropped
        session.commit()
        _after_commit(queued, keys)
        return {"papers": views, "incomplete": incomplete}


def _send_verify(paper: Paper, priority: int) -> None:
    try:
        send_step(current_app.extensions["celery"], paper.id, lanes.Step.verify, priority=priority)
    except Exception:  # the sweep covers a lost send
        log.warning("could not enqueue paper %s; the sweep will pick it up", paper.id, exc_info=True)


@blp.route("/v1/uploads/<uuid:paper_id>/<int:number>/<token>")
class UploadEndpoint(MethodView):
    @blp.doc(
        security=[],
        requestBody={
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
    )
    @blp.response(200, UploadFileSchema)
    @blp.doc(**answers(HTTPStatus.REQUEST_ENTITY_TOO_LARGE))
    def put(self, paper_id: uuid.UUID, number: int, token: str) -> dict[str, Any]:
        """The upload URL when storage is a local folder: PUT the file's bytes (the token in the
        URL is the authority; no API key). More bytes than declared: 413, nothing kept."""
        page = uploads.page_for_token(db(), paper_id, number, token)
        if page is None:
            raise ApiError(404, "not_found", "no upload at this URL: it expired, was completed, or was never issued")
        try:
            size = uploads.receive(
                resources().storage,
                page.original_key,
                page.original_bytes,
                request.stream,
                request.mimetype or "application/octet-stream",
            )
        except uploads.UploadRefused as exc:
            resources().storage.delete(page.original_key)
            raise ApiError(413, "page_too_large", f"file {page.number} ({page.upload_name}): {exc.reason}") from exc
        except StorageError as exc:
            raise domain_error(exc, "could not store the file; upload it again") from exc
        return {"number": page.number, "name": page.upload_name, "size": size, "uploaded": size == page.original_bytes}
