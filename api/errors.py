"""One JSON error shape for every failure: {"error": {"code": ..., "message": ..., "details"?}}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from shared.grading.exams import InvalidExam
from shared.grading.review import InvalidOverride
from shared.intake.idempotency import KeyConflict
from shared.refusals import RefusalKind, has_control_characters
from shared.spending.costs import UnknownModel, UnsupportedDetail
from shared.storage import StorageError
from shared.webhooks import DestinationRefused

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


# The one table from the domain's exceptions to HTTP: the domain never names a status.
REFUSAL_STATUS: dict[RefusalKind, int] = {
    RefusalKind.too_large: 413,
    RefusalKind.unsupported: 415,
    RefusalKind.invalid: 422,
}
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    InvalidExam: (422, "invalid_exam"),
    InvalidOverride: (422, "invalid_override"),
    KeyConflict: (409, "idempotency_conflict"),
    DestinationRefused: (422, "callback_refused"),
    UnknownModel: (422, "invalid_request"),
    UnsupportedDetail: (422, "invalid_request"),
    StorageError: (503, "storage_unavailable"),
}


def refusal_status(kind: RefusalKind) -> int:
    return REFUSAL_STATUS[kind]


def domain_error(exc: Exception, message: str | None = None, details: Any = None) -> ApiError:
    """The ApiError for a domain exception, from the table; `message` and `details` add context."""
    status, code = next(mapped for kind, mapped in DOMAIN_ERRORS.items() if isinstance(exc, kind))
    return ApiError(status, code, message or str(exc), details)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def field_errors(messages: dict[str, Any]) -> list[dict[str, Any]]:
    """marshmallow's nested messages ({"json": {"grade": ["..."]}}) as markq's one detail shape,
    the same list the answer key's checks give: [{"loc": [path], "msg": "..."}], the path from the
    body's root (a query parameter's starts with "query", a form field's with "form")."""
    found: list[dict[str, Any]] = []

    def walk(node: Any, loc: list[Any]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, [*loc, int(key) if isinstance(key, str) and key.isdigit() else key])
        elif isinstance(node, list) and node and all(isinstance(m, str) for m in node):
            found.extend({"loc": loc, "msg": m} for m in node)
        elif isinstance(node, list):
            for value in node:
                walk(value, loc)
        else:
            found.append({"loc": loc, "msg": str(node)})

    for where, node in messages.items():
        walk(node, [] if where == "json" else [where])
    return found


def error_response(status: int, code: str, message: str, details: Any = None) -> ResponseReturnValue:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return jsonify({"error": body}), status


def _control_characters(node: Any, loc: list[Any], found: list[dict[str, Any]], everywhere: bool) -> None:
    """Where a JSON body holds a NUL (never storable) or, in a short one-line value such as an id,
    ref or label, any control character."""
    if isinstance(node, dict):
        for key, value in node.items():
            _control_characters(value, [*loc, key], found, everywhere)
    elif isinstance(node, list):
        for n, value in enumerate(node):
            _control_characters(value, [*loc, n], found, everywhere)
    elif isinstance(node, str) and ("\x00" in node or (everywhere and has_control_characters(node))):
        found.append({"loc": loc, "msg": "holds a control character (NUL, a line break, ...)"})


ONE_LINE = {"student_ref", "class_label", "title", "id", "name", "name_zh", "name_en", "subject", "model"}


def refuse_control_characters() -> None:
    """For app.before_request: ids, refs and labels in a path, a query or a JSON body never hold a
    control character, and no value holds a NUL; each answers 422 naming where, instead of a 500
    from the database or a broken link or header later."""
    if not request.path.startswith("/v1/"):
        return
    found: list[dict[str, Any]] = []
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and has_control_characters(value):
            found.append({"loc": ["path", name], "msg": "holds a control character"})
    for name, value in request.args.items(multi=True):
        if has_control_characters(name + value):
            found.append({"loc": ["query", name], "msg": "holds a control character"})
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            for key, value in body.items():
                _control_characters(value, [key], found, everywhere=key in ONE_LINE)
    if found:
        where = ".".join(str(part) for part in found[0]["loc"])
        raise ApiError(422, "invalid_request", f"the request is not valid: {where}: {found[0]['msg']}", found)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ResponseReturnValue:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    for kind in DOMAIN_ERRORS:
        app.register_error_handler(kind, lambda exc: _api_error(domain_error(exc)))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "error").lower().replace(" ", "_")
        details = None
        data = getattr(exc, "data", None)  # webargs/flask-smorest validation messages
        message = exc.description or exc.name
        if isinstance(data, dict) and "messages" in data:
            details = field_errors(data["messages"])
            code = "invalid_request"
            first = details[0] if details else None
            message = "the request is not valid" + (
                f": {'.'.join(str(part) for part in first['loc']) or 'body'}: {first['msg']}" if first else ""
            )
        if exc.code == 413:
            limit = request.max_content_length
            by_url = (  # a class ZIP by URL may be as large as the bulk limits allow
                "send the class ZIP by URL (POST /v1/exams/{exam_id}/bulk/uploads)"
                if request.path.endswith("/bulk")
                else "send fewer pages at a time, or upload them by URL (POST /v1/exams/{exam_id}/uploads)"
            )
            message = "request body too large" + (
                f": at most {limit} bytes ({limit / 1024**2:.0f} MiB) here; {by_url}" if limit else ""
            )
        return error_response(exc.code or 500, code, message, details)

    @app.errorhandler(DataError)
    def _unstorable(exc: DataError) -> ResponseReturnValue:
        log.warning("a request's value could not be stored: %s", exc.orig)
        return error_response(
            422, "invalid_request", "a value in the request cannot be stored (out of range, or a NUL)"
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; it has been logged")
