"""Bulk intake: one ZIP per class, every good paper created, every refused file named."""

from __future__ import annotations

import contextlib
import uuid
from http import HTTPStatus
from typing import Any

from flask import request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from api.context import current_school, db, require_school, resources
from api.direct import file_view
from api.errors import ApiError, domain_error, not_found, refusal_status
from api.exams import school_exam
from api.schemas import BulkResultSchema, BulkUploadCreateSchema, BulkUploadSchema, UploadFileSchema
from api.spec import answers
from api.uploads import check_uploads, form_text
from shared.intake import uploads
from shared.intake.bulk import ArchiveRefused, BulkLimits, make_papers, read_archive, read_roster
from shared.models import BulkStatus, BulkUpload, Exam, Paper, PaperStatus
from shared.refusals import RefusalKind, has_control_characters
from shared.storage import StorageError
from worker.tasks import send_unpack, start_grading

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

    def started(paper: Paper) -> None:
        if paper.status == PaperStatus.queued:
            start_grading([paper.id])

    try:
        result = make_papers(db(), resources().storage, exam, students, refusals, check=check_uploads, started=started)
    except StorageError as exc:
        raise domain_error(exc, "storage failed part way; send the archive again to continue") from exc
    return result_view(result)


def result_view(result: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A class's result with each refused file's HTTP status (the domain names only its kind)."""
    return {
        **result,
        "refused": [
            {**{k: v for k, v in entry.items() if k != "kind"}, "status": refusal_status(RefusalKind(entry["kind"]))}
            for entry in result["refused"]
        ],
    }


@blp.route("/v1/exams/<uuid:exam_id>/bulk/uploads")
class BulkUploads(MethodView):
    decorators = [require_school]

    @blp.arguments(BulkUploadCreateSchema)
    @blp.response(201, BulkUploadSchema)
    def post(self, fields: dict[str, Any], exam_id: uuid.UUID) -> Any:
        """Start a class ZIP by URL: declare its name and size (and a roster CSV, if any); PUT the
        ZIP to `upload.url` with its headers, then POST `complete_url`. An images worker unpacks it
        with the rules of `POST /v1/exams/{id}/bulk`; poll `status_url` for every paper made and
        every file refused. Never completed, it expires."""
        return start_bulk_upload(school_exam(exam_id), fields), 201


def start_bulk_upload(exam: Exam, fields: dict[str, Any]) -> dict[str, Any]:
    settings = resources().settings
    if has_control_characters(fields["class_label"]):
        raise ApiError(422, "invalid_request", "class_label holds a control character (NUL, a line break)")
    roster = None
    if fields.get("roster"):
        try:
            roster = read_roster(fields["roster"].encode())
        except ArchiveRefused as exc:
            raise ApiError(422, "invalid_roster", f"roster: {exc}") from exc
    try:
        bulk, target = uploads.open_bulk_upload(
            db(),
            resources().storage,
            exam,
            name=fields["name"],
            size=fields["size"],
            class_label=fields["class_label"].strip(),
            roster=roster,
            max_bytes=settings.bulk_max_total_bytes,
            expires_seconds=settings.upload_expiry_seconds,
        )
    except uploads.UploadRefused as exc:
        raise ApiError(refusal_status(exc.kind), "archive_refused", str(exc), {"file": exc.name}) from exc
    try:
        view = bulk_view(bulk, target)
        db().commit()
    except Exception:
        if bulk.parts_id is not None:  # started in storage for a row that is not kept
            with contextlib.suppress(StorageError):
                resources().storage.abort_parts(bulk.archive_key, bulk.parts_id)
        raise
    return view


def bulk_view(
    bulk: BulkUpload, target: uploads.UploadTarget | None = None, *, uploaded: bool = False
) -> dict[str, Any]:
    """The class ZIP's state; with `target`, where to upload it (`uploaded`: stored whole)."""
    web = request.blueprint == "web"
    upload = None
    if target is not None:
        url = None
        if not target.parts:
            url = target.url or resources().settings.public_base_url.rstrip("/") + url_for(
                "bulk.BulkFile", bulk_id=bulk.id, token=target.token
            )
        upload = file_view(target, url, uploaded)
    return {
        "bulk_id": bulk.id,
        "exam_id": bulk.exam_id,
        "name": bulk.archive_name,
        "size": bulk.archive_bytes,
        "status": bulk.status.value,
        "status_reason": bulk.status_reason,
        "expires_at": bulk.upload_expires_at,
        "upload": upload,
        # a signed-in teacher completes and polls through the web app's own endpoints
        "complete_url": url_for("web.complete_zip" if web else "bulk.BulkComplete", bulk_id=bulk.id),
        "status_url": url_for("web.zip_status" if web else "bulk.BulkById", bulk_id=bulk.id),
        "result": result_view(bulk.result) if bulk.result is not None and bulk.status == BulkStatus.done else None,
    }


def _school_bulk(bulk_id: uuid.UUID) -> BulkUpload:
    bulk = db().scalar(select(BulkUpload).where(BulkUpload.id == bulk_id, BulkUpload.school_id == current_school().id))
    if bulk is None:
        raise not_found("bulk upload")
    return bulk


@blp.route("/v1/bulk/<uuid:bulk_id>")
class BulkById(MethodView):
    decorators = [require_school]

    @blp.response(200, BulkUploadSchema)
    def get(self, bulk_id: uuid.UUID) -> dict[str, Any]:
        """A class ZIP's state; once `done`, every paper made (`created`), already there
        (`existing`) and every file refused with its reason (`refused`)."""
        return bulk_view(_school_bulk(bulk_id))


@blp.route("/v1/bulk/<uuid:bulk_id>/upload")
class BulkUploadAgain(MethodView):
    decorators = [require_school]

    @blp.doc(**answers(HTTPStatus.CONFLICT))
    @blp.response(200, BulkUploadSchema)
    def get(self, bulk_id: uuid.UUID) -> dict[str, Any]:
        """A fresh upload URL for a class ZIP still uploading (after a dropped link), and whether
        it is stored already at its declared size."""
        return upload_bulk_again(_school_bulk(bulk_id))


def upload_bulk_again(bulk: BulkUpload) -> dict[str, Any]:
    """A class ZIP's fresh upload URL (or its parts' URLs, each saying if it is stored)."""
    if bulk.status != BulkStatus.uploading:
        raise ApiError(409, "not_uploading", f"the archive is {bulk.status.value}, no longer uploading")
    storage = resources().storage
    try:
        joined = storage.size(bulk.archive_key) == bulk.archive_bytes
        stored = uploads.stored_parts(storage, bulk, joined)
        target = uploads.bulk_target(storage, bulk, resources().settings.upload_expiry_seconds, stored)
    except StorageError as exc:
        raise domain_error(exc, "storage does not answer now; ask again in a moment") from exc
    view = bulk_view(bulk, target, uploaded=joined)
    db().commit()
    return view


@blp.route("/v1/bulk/<uuid:bulk_id>/complete")
class BulkComplete(MethodView):
    decorators = [require_school]

    @blp.doc(**answers(HTTPStatus.CONFLICT))
    @blp.response(200, BulkUploadSchema)
    def post(self, bulk_id: uuid.UUID) -> dict[str, Any]:
        """The ZIP is uploaded: markq checks it is stored at its declared size and queues its
        unpacking (409 if not). Completing twice unpacks once."""
        return complete_bulk(_school_bulk(bulk_id))


def complete_bulk(bulk: BulkUpload) -> dict[str, Any]:
    """Queue a class ZIP's unpacking once it is stored (409 if not); its view. For the API and
    the web app alike."""
    try:
        queued = uploads.complete_bulk_upload(resources().storage, bulk)
    except uploads.UploadIncomplete as exc:
        raise ApiError(409, "upload_incomplete", str(exc), exc.problems) from exc
    except StorageError as exc:
        raise domain_error(exc, "storage does not answer now; complete again in a moment") from exc
    view = bulk_view(bulk)
    db().commit()
    if queued:
        send_unpack(bulk.id)
    return view


@blp.route("/v1/bulk/<uuid:bulk_id>/file/<token>")
class BulkFile(MethodView):
    @blp.doc(
        security=[],
        requestBody={
            "required": True,
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
    )
    @blp.response(200, UploadFileSchema)
    @blp.doc(**answers(HTTPStatus.REQUEST_ENTITY_TOO_LARGE))
    def put(self, bulk_id: uuid.UUID, token: str) -> dict[str, Any]:
        """The upload URL of a class ZIP when storage is a local folder (the token is the
        authority; no API key). More bytes than declared: 413, nothing kept."""
        bulk = uploads.bulk_for_token(db(), bulk_id, token)
        if bulk is None:
            raise ApiError(404, "not_found", "no upload at this URL: it expired, was completed, or was never issued")
        request.max_content_length = bulk.archive_bytes  # a class ZIP, not the few pages of a paper
        try:
            size = uploads.receive(
                resources().storage, bulk.archive_key, bulk.archive_bytes, request.stream, "application/zip"
            )
        except uploads.UploadRefused as exc:
            resources().storage.delete(bulk.archive_key)
            raise ApiError(413, "archive_refused", f"{bulk.archive_name}: {exc.reason}") from exc
        except StorageError as exc:
            raise domain_error(exc, "could not store the archive; upload it again") from exc
        return {"number": 1, "name": bulk.archive_name, "size": size, "uploaded": size == bulk.archive_bytes}
