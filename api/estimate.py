"""Pre-flight estimates: what marking will cost, before anything is submitted."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api.context import require_school, resources
from api.errors import ApiError, domain_error, refusal_status
from api.schemas import EstimateResultSchema
from api.spec import answers
from shared.images import PageRejected, inspect_page
from shared.spending.costs import UnknownModel, UnsupportedDetail
from shared.spending.estimate import PageSize, estimate

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
        """Tokens and dollars per page, per paper and per class, for several models side by side."""
        if request.mimetype == "multipart/form-data":
            form = {k: v for k, v in request.form.items() if v}
            if "models" in form:
                form["models"] = [m.strip() for m in form["models"].split(",") if m.strip()]
            form["sizes"] = [self._size(f) for f in request.files.getlist("pages")] or None
            body: Any = form
        else:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise ApiError(415, "unsupported_media_type", "send a JSON object or multipart page files")
        try:
            args = EstimateSchema().load(body)
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", "the estimate request is not valid", exc.messages) from exc
        pages = [PageSize(f"page-{n}", s["width"], s["height"]) for n, s in enumerate(args["sizes"], start=1)]
        try:
            return estimate(pages, args["models"], args["detail"], args["class_size"], args["questions"])
        except (UnknownModel, UnsupportedDetail) as exc:
            raise domain_error(exc, f"cannot estimate: {exc}") from exc

    @staticmethod
    def _size(file: Any) -> dict[str, int]:
        try:
            header = inspect_page(file.stream, resources().settings.max_image_pixels)
        except PageRejected as exc:
            raise ApiError(
                refusal_status(exc.kind), "unsupported_page", f"{file.filename}: {exc.reason}", {"file": file.filename}
            ) from exc
        return {"width": header.width, "height": header.height}
