"""The OpenAPI document: markq's one error envelope on every operation, with the statuses each can
answer, an operationId for each, and numbers where the schema says numbers.

flask-smorest documents errors with its own schema under `default`; markq answers
`{"error": {"code", "message", "details"}}` (api/errors.py), so a generated client would misparse
every error. `MarkqApi` swaps the schema, and `ErrorResponses` (an apispec plugin, the documented
way to touch every operation) adds the statuses.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any

from apispec import BasePlugin
from flask_smorest import Api
from marshmallow import Schema, fields


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"description": "Stable, for programs: e.g. not_found."})
    message = fields.String(required=True, metadata={"description": "For people: what went wrong, what to do."})
    details = fields.Raw(
        allow_none=True, metadata={"description": "Where the request was wrong, when it can be located."}
    )


class ErrorSchema(Schema):
    """Every error markq answers, whatever the status."""

    error = fields.Nested(ErrorBodySchema, required=True)


class MarkqApi(Api):
    ERROR_SCHEMA = ErrorSchema


# The statuses every operation of a kind can answer (HTTPStatus names: flask-smorest registers a
# response component for each, with the error schema above).
_UPLOAD = re.compile(r"multipart/form-data")


def _error_statuses(path: str, operation: dict[str, Any]) -> list[str]:
    statuses = [] if path == "/healthz" else ["SERVICE_UNAVAILABLE"]
    if operation.get("security") != []:
        statuses.append("UNAUTHORIZED")
    if "{" in path:
        statuses.append("NOT_FOUND")
    body = operation.get("requestBody") or {}
    if body or operation.get("parameters"):
        statuses.append("UNPROCESSABLE_ENTITY")
    if any(_UPLOAD.match(kind) for kind in body.get("content", {})):
        statuses += ["REQUEST_ENTITY_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE"]
    return statuses


def answers(*statuses: HTTPStatus) -> dict[str, Any]:
    """`@blp.doc(**answers(HTTPStatus.CONFLICT))`: statuses an operation answers beyond its kind's."""
    return {"responses": {str(status.value): status.name for status in statuses}}


def operation_id(method: str, path: str) -> str:
    """A stable id from the method and path: GET /v1/exams/{exam_id}/template -> get_exams_exam_id_template."""
    words = [part.strip("{}") for part in path.split("/") if part and part != "v1"]
    return "_".join([method.lower(), *(re.sub(r"[^a-zA-Z0-9]+", "_", w) for w in words)])


# A real reply of each schema (captured from a marked paper, names and hosts made up), and the
# body each request schema takes: shown with every operation that answers or takes it.
EXAMPLES: dict[str, Any] = json.loads((Path(__file__).parent / "openapi-examples.json").read_text("utf-8"))


def _example_of(schema: Any) -> Any:
    """The example for a response or body schema: a $ref to a component, or an array of them."""
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "array":
        item = _example_of(schema.get("items"))
        return None if item is None else [item]
    name = str(schema.get("$ref", "")).rsplit("/", 1)[-1]
    return EXAMPLES.get(name)


def _add_examples(operation: dict[str, Any]) -> None:
    contents = [r.get("content", {}) for s, r in operation.get("responses", {}).items() if isinstance(r, dict)]
    contents.append((operation.get("requestBody") or {}).get("content", {}))
    for content in contents:
        for kind, media in content.items():
            example = EXAMPLES.get(kind) if kind == "text/csv" else _example_of(media.get("schema"))
            if example is not None:
                media.setdefault("example", example)


class ErrorResponses(BasePlugin):
    """Adds the error statuses each operation can answer, its operationId and its examples."""

    def operation_helper(self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any) -> None:
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict):
                continue
            operation.setdefault("operationId", operation_id(method, path or ""))
            _add_examples(operation)
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(path or "", operation):
                responses.setdefault(str(HTTPStatus[status].value), status)
            if any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", []) if isinstance(p, dict)):
                responses.setdefault(
                    str(HTTPStatus.CONFLICT.value), HTTPStatus.CONFLICT.name
                )  # the key used before for another request


def register_answer_key(spec: Any) -> None:
    """The answer key's schema, from the pydantic model that checks it (one layer, one truth)."""
    from shared.grading.answer_key import AnswerKey

    schema = AnswerKey.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        spec.components.schema(name, definition)
    spec.components.schema("AnswerKey", schema)


def numeric_ranges(_converter: Any, field: fields.Field, ret: dict[str, Any], **_: Any) -> dict[str, Any]:
    """A Decimal field's bounds as numbers (apispec writes them as the field serialises: strings)."""
    if not isinstance(field, fields.Decimal):
        return {}
    return {k: float(ret[k]) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in ret}
