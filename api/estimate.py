"""Pre-flight estimates: what marking will cost, before anything is submitted."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api.context import db, require_school, resources
from api.errors import ApiError, domain_error, refusal_status
from api.schemas import EstimateResultSchema
from api.spec import answers
from shared.grading.answer_key import AnswerKey
from shared.grading.exam_cost import calibration, prompt_shape, template_crop, vision_sheet
from shared.images import PageRejected
from shared.spending.costs import UnknownModel, UnsupportedDetail
from shared.spending.estimate import DEFAULT_MODELS, PageSize, estimate, recommend, seen_page

MAX_PAGE_FILES = 8  # one paper's pages, each normalised once per model: enough to price a paper

blp = Blueprint("estimate", __name__, url_prefix="/v1/estimate", description="Cost before marking")


class SizeSchema(Schema):
    width = fields.Integer(required=True, validate=validate.Range(1, 20_000))
    height = fields.Integer(required=True, validate=validate.Range(1, 20_000))


class EstimateSchema(Schema):
    sizes = fields.List(
        fields.Nested(SizeSchema),
        required=True,
        validate=validate.Length(1, 50),
        metadata={"description": "One paper's page sizes, in order."},
    )
    models = fields.List(fields.String(), load_default=None)
    detail = fields.String(load_default="high", validate=validate.OneOf(["low", "high", "auto", "original"]))
    class_size = fields.Integer(load_default=40, validate=validate.Range(1, 2000))
    questions = fields.Integer(load_default=10, validate=validate.Range(1, 200))
    exam_id = fields.UUID(
        load_default=None,
        metadata={
            "description": "Price this exam's own request (its key, vocabulary and blank paper's crops), with the "
            "reply length and unsure share measured so far; questions then comes from its key."
        },
    )


ESTIMATE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": EstimateSchema},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["pages"],
                "properties": {
                    "pages": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "models": {"type": "string", "description": "Comma-separated model names."},
                    "detail": {"type": "string", "enum": ["low", "high", "auto", "original"]},
                    "class_size": {"type": "integer"},
                    "questions": {"type": "integer"},
                    "exam_id": {"type": "string", "format": "uuid"},
                },
            }
        },
    },
}


@blp.route("")
class Estimate(MethodView):
    decorators = [require_school]

    @blp.doc(requestBody=ESTIMATE_BODY)
    @blp.response(200, EstimateResultSchema)
    @blp.doc(**answers(HTTPStatus.UNSUPPORTED_MEDIA_TYPE))
    def post(self) -> dict[str, Any]:
        """Tokens and dollars per page, per paper and per class, for several models side by side and
        for every lane (vision, economy, flex, cascade). Page files are priced as markq sends them
        (normalised), with their legibility per model and the cheapest legible choice recommended."""
        files = []
        if request.mimetype == "multipart/form-data":
            form = {k: v for k, v in request.form.items() if v}
            if "models" in form:
                form["models"] = [m.strip() for m in form["models"].split(",") if m.strip()]
            files = request.files.getlist("pages")[:MAX_PAGE_FILES]
            form["sizes"] = [{"width": 1, "height": 1} for _file in files] or None  # measured below
            body: Any = form
        else:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise ApiError(415, "unsupported_media_type", "send a JSON object or multipart page files")
        try:
            args = EstimateSchema().load(body)
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", "the estimate request is not valid", exc.messages) from exc
        shape = calibrated = crop = exam = None
        questions = args["questions"]
        if args["exam_id"] is not None:
            from api.exams import school_exam

            exam = school_exam(args["exam_id"])
            shape, calibrated, crop = prompt_shape(db(), exam), calibration(db(), exam), template_crop(exam)
            questions = len(AnswerKey.model_validate(exam.answer_key).questions)
            args["models"] = args["models"] or [exam.model]
        try:
            models = list(args["models"] or DEFAULT_MODELS)
            pages = (
                [self._seen(n, f, models, args["detail"]) for n, f in enumerate(files, start=1)]
                if files
                else [PageSize(f"page-{n}", s["width"], s["height"]) for n, s in enumerate(args["sizes"], start=1)]
            )
            result = estimate(
                pages,
                models,
                args["detail"],
                args["class_size"],
                questions,
                shape=shape,
                calibration=calibrated,
                crop=crop,
                sheets={m: sheet for m in models if exam and (sheet := vision_sheet(exam, pages, m))},
            )
        except (UnknownModel, UnsupportedDetail) as exc:
            raise domain_error(exc, f"cannot estimate: {exc}") from exc
        result["recommended"] = recommend(result, pages)
        return result

    @staticmethod
    def _seen(number: int, file: Any, models: list[str], detail: str) -> PageSize:
        try:
            return seen_page(
                file.filename or f"page-{number}", file.read(), models, detail, resources().settings.max_image_pixels
            )
        except PageRejected as exc:
            raise ApiError(
                refusal_status(exc.kind), "unsupported_page", f"{file.filename}: {exc.reason}", {"file": file.filename}
            ) from exc
