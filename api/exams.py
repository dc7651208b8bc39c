"""Exams: create one, read its progress and cost, list its papers, read its report."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from api.context import current_school, db, require_school
from api.errors import ApiError, not_found
from api.schemas import (
    ExamCreateSchema,
    ExamReportSchema,
    ExamSchema,
)
from shared.grading.exams import InvalidExam, create_exam, exam_report, exam_view, get_exam
from shared.models import Exam

blp = Blueprint("exams", __name__, url_prefix="/v1/exams", description="Exams and their progress")


def school_exam(exam_id: uuid.UUID) -> Exam:
    exam = get_exam(db(), current_school(), exam_id)
    if exam is None:
        raise not_found("exam")
    return exam


@blp.route("")
class Exams(MethodView):
    decorators = [require_school]

    @blp.arguments(ExamCreateSchema)
    @blp.response(201, ExamSchema)
    def post(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Create an exam with its answer key."""
        session = db()
        try:
            exam = create_exam(session, current_school(), fields)
        except InvalidExam as exc:
            session.rollback()
            raise ApiError(422, "invalid_exam", str(exc), exc.details) from exc
        session.commit()
        return exam_view(session, exam)


@blp.route("/<uuid:exam_id>")
class ExamById(MethodView):
    decorators = [require_school]

    @blp.response(200, ExamSchema)
    def get(self, exam_id: uuid.UUID) -> dict[str, Any]:
        """An exam with paper counts by status and the cost so far."""
        return exam_view(db(), school_exam(exam_id))


@blp.route("/<uuid:exam_id>/report")
class ExamReport(MethodView):
    decorators = [require_school]

    @blp.response(200, ExamReportSchema)
    def get(self, exam_id: uuid.UUID) -> dict[str, Any]:
        """Scores per paper and the knowledge points most missed, computed in SQL."""
        return exam_report(db(), school_exam(exam_id))
