"""Liveness and readiness."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from flask import Response, current_app, jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import bearer_token, db, resources
from shared.grading.answer_key import AnswerKey
from shared.migrate import database_revision, head_revision
from shared.schools import school_for_key

blp = Blueprint("health", __name__, description="Liveness, readiness and the answer-key schema")


def _documented(description: str, example: dict[str, Any]) -> dict[str, Any]:
    return {
        "200": {
            "description": description,
            "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
        }
    }


@blp.route("/healthz")
class Health(MethodView):
    @blp.doc(security=[], responses=_documented("The process is up.", {"status": "ok"}))
    def get(self) -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok"}


@blp.route("/v1/answer-key.schema.json")
class AnswerKeySchema(MethodView):
    @blp.doc(
        security=[],
        responses=_documented(
            "A JSON Schema (draft 2020-12).",
            {"title": "AnswerKey", "type": "object", "required": ["questions"], "$defs": {"KeyQuestion": {}}},
        ),
    )
    def get(self) -> Response:
        """The JSON Schema of an exam's answer key (docs/answer-keys.md explains each field)."""
        return jsonify(AnswerKey.model_json_schema())


@blp.route("/v1/exam.schema.json")
class ExamFileSchema(MethodView):
    @blp.doc(
        security=[],
        responses=_documented(
            "A JSON Schema (draft 2020-12).",
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/ExamCreate", "$defs": {}},
        ),
    )
    def get(self) -> Response:
        """The JSON Schema of an exam file (what `markq exams create` sends and POST /v1/exams
        takes: title, subject, grade, answer key, ...), for editors and validators."""
        return jsonify(exam_file_schema(current_app.extensions["markq-openapi"].spec.to_dict()))


def exam_file_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """ExamCreate and what it refers to, out of the OpenAPI document's components, as one JSON
    Schema: the same definitions the API validates against, so the two never differ."""
    text = json.dumps(spec["components"]["schemas"]).replace('"#/components/schemas/', '"#/$defs/')
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "markq-exam.schema.json",
        "title": "A markq exam file",
        "$ref": "#/$defs/ExamCreate",
        "$defs": json.loads(text),
    }


@blp.route("/readyz")
class Ready(MethodView):
    @blp.doc(
        security=[],
        responses=_documented(
            "Every dependency answers.",
            {"status": "ready", "checks": {"database": "ok", "redis": "ok", "storage": "ok", "workers": "ok"}},
        ),
    )
    def get(self) -> tuple[dict[str, Any], int]:
        """Database (at this code's schema), Redis and storage all answer, and a worker consumes
        every queue (calls, images, OCR). Each check says only ok or down; a request with a valid
        API key also gets the reason."""
        res = resources()
        checks: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for name, check in (
            ("database", _database),
            ("redis", _redis),
            ("storage", res.storage.check),
            ("workers", _workers),
        ):
            if name == "workers" and checks["redis"] != "ok":  # workers are asked through Redis
                checks[name], reasons[name] = "down", "Redis is down"
                continue
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:  # any failure is "down"; what it was is for the operator
                checks[name] = "down"
                reasons[name] = f"{exc.__class__.__name__}: {exc}"[:300]
        ready = all(v == "ok" for v in checks.values())
        details: dict[str, Any] = dict(checks)
        if reasons and _authenticated():
            details["reasons"] = reasons
        if not ready:
            return {"error": {"code": "not_ready", "message": "a dependency is down", "details": details}}, 503
        return {"status": "ready", "checks": checks}, 200


class SchemaBehind(RuntimeError):
    """The database is not at the schema this code was written for: run markq-admin migrate."""


def _database() -> None:
    connection = db().connection()
    at, wanted = database_revision(connection), head_revision()
    if at != wanted:
        raise SchemaBehind(
            f"the database schema is at {at or 'nothing'}, this code needs {wanted}: run markq-admin migrate"
        )


# When every queue last had a consumer, by broker and queues asked: asking the workers takes a
# second (a broadcast answered within a timeout), so while all are consumed each API process asks
# at most every 15 s; while one is not, every time (so it is seen ready as soon as it is).
_CONSUMED: dict[tuple[str, frozenset[str]], tuple[float, frozenset[str]]] = {}
CONSUMERS_FOR = 15.0


def _workers() -> None:
    settings = resources().settings
    wanted = frozenset(settings.queue_names)
    key = (settings.redis_url, wanted)
    asked_at, consumed = _CONSUMED.get(key, (-CONSUMERS_FOR, frozenset()))
    if time.monotonic() - asked_at >= CONSUMERS_FOR:
        replies = current_app.extensions["celery"].control.inspect(timeout=1.0).active_queues() or {}
        consumed = frozenset(queue["name"] for queues in replies.values() for queue in queues)
        if consumed >= wanted:
            _CONSUMED[key] = (time.monotonic(), consumed)
    if missing := wanted - consumed:
        raise RuntimeError(f"no worker consumes the queue {', '.join(sorted(missing))}: start its worker")


def _redis() -> None:
    client = redis.Redis.from_url(resources().settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _authenticated() -> bool:
    key = bearer_token()
    if key is None:
        return False
    try:
        return school_for_key(db(), key) is not None
    except Exception:  # the database is down: no one is recognised
        return False
