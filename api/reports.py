"""Reports, review and the knowledge-point vocabulary."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date
from http import HTTPStatus
from typing import Any

from flask import Response, request, send_file, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from api.context import current_school, db, require_school, resources
from api.errors import ApiError, domain_error, not_found
from api.exams import school_exam
from api.paging import PAGE_HEADERS, STRICT, paged_list, paged_select
from api.papers import paper_view
from api.schemas import (
    ClassReportSchema,
    ExamReportSchema,
    GradeWeakPointsSchema,
    KnowledgePointArgs,
    KnowledgePointSchema,
    OverrideSchema,
    PaperSchema,
    PointCsvArgs,
    PointImportSchema,
    PracticeArgs,
    PracticeSetSchema,
    ReviewArgs,
    ReviewItemSchema,
    SchoolWeakPointsArgs,
    StudentArgs,
    StudentListArgs,
    StudentReportSchema,
    StudentSummarySchema,
    WindowArgs,
)
from api.spec import answers
from shared.grading.practice import WEAKEST, weak_point_practice
from shared.grading.practice_model import model_practice
from shared.grading.reports import class_report, exam_report, known_student, school_weak_points, student_report
from shared.grading.review import InvalidOverride, answer_crops, override_question, review_queue
from shared.grading.statistics import gradebook
from shared.grading.vocabulary import UnknownPoints, add_school_points, visible_to
from shared.models import KnowledgePoint, Paper
from shared.provider import ProviderError
from shared.spending.caps import BudgetExceeded
from shared.storage import StorageError

blp = Blueprint("reports", __name__, description="Reports, review and knowledge points")
CSV_TABLES = ("papers", "questions", "knowledge_points", "classes", "gradebook")


# A cell a spreadsheet would run as a formula (OWASP, "CSV Injection"): what it starts with.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would evaluate, prefixed with a quote so it stays text
    (a student answer "=1+2" or "-3" is shown as written, never run); numbers are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_response(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
    # a byte-order mark so spreadsheet programs read the Chinese names as UTF-8
    body = io.BytesIO(("\ufeff" + out.getvalue()).encode("utf-8"))
    # Werkzeug quotes the name (and adds filename* for any non-ASCII), so a student ref with a
    # quote or a line break cannot change the header.
    return send_file(body, mimetype="text/csv", as_attachment=True, download_name=filename, max_age=0)


@blp.route("/v1/exams/<uuid:exam_id>/report")
class ExamReport(MethodView):
    decorators = [require_school]

    @blp.response(200, ExamReportSchema)
    def get(self, exam_id: uuid.UUID) -> dict[str, Any]:
        """Score distribution, per-question accuracy, knowledge points by times missed (with
        attempts), and the same per class; all from SQL over final verdicts."""
        return exam_report(db(), school_exam(exam_id))


@blp.route("/v1/exams/<uuid:exam_id>/report.csv")
class ExamReportCsv(MethodView):
    decorators = [require_school]

    @blp.doc(
        parameters=[{"in": "query", "name": "table", "schema": {"type": "string", "enum": list(CSV_TABLES)}}],
        responses={"200": {"description": "CSV", "content": {"text/csv": {}}}},
    )
    def get(self, exam_id: uuid.UUID) -> Response:
        """The report as CSV: ?table=papers (default), questions, knowledge_points, classes, or
        gradebook (a row per student, a column per question with its score; empty while it
        waits for review)."""
        table = request.args.get("table", "papers")
        if table not in CSV_TABLES:
            raise ApiError(422, "invalid_request", f"table must be one of {', '.join(CSV_TABLES)}")
        if table == "gradebook":
            questions, rows = gradebook(db(), school_exam(exam_id).id)
            columns = ["class_label", "student_ref", "total", "pending_points", *questions]
            return csv_response(rows, columns, f"exam-{exam_id}-gradebook.csv")
        report = exam_report(db(), school_exam(exam_id))
        if table == "papers":
            rows = report["papers"]
            columns = ["student_ref", "class_label", "status", "score", "max_score"]
        elif table == "questions":
            rows, columns = (
                report["questions"],
                ["question_id", "attempted", "correct", "accuracy", "mean_score", "points"],
            )
        elif table == "knowledge_points":
            rows, columns = report["missed_knowledge_points"], ["id", "name_zh", "name_en", "missed", "attempted"]
        else:
            rows = [
                {"class_label": c["class_label"], **kp}
                for c in report["classes"]
                for kp in c["missed_knowledge_points"]
            ]
            columns = ["class_label", "id", "name_zh", "name_en", "missed", "attempted"]
        return csv_response(rows, columns, f"exam-{exam_id}-{table}.csv")


@blp.route("/v1/exams/<uuid:exam_id>/review")
class ExamReview(MethodView):
    decorators = [require_school]

    @blp.arguments(ReviewArgs, location="query", **STRICT)
    @blp.response(200, ReviewItemSchema(many=True), headers=PAGE_HEADERS)
    def get(self, args: dict[str, Any], exam_id: uuid.UUID) -> Any:
        """Answers waiting for a teacher, with the model's verdict, why each needs review, and
        (where the offline reader found it) the URL of the answer's image as it sits on the page."""
        items = review_queue(db(), school_exam(exam_id).id)
        for item in items:
            has_crop = item.pop("has_crop")
            item["crop_url"] = (
                url_for("reports.QuestionCrop", paper_id=item["paper_id"], question_id=item["question_id"])
                if has_crop
                else None
            )
        return paged_list(items, args)


@blp.route("/v1/papers/<uuid:paper_id>/questions/<question_id>/crop")
class QuestionCrop(MethodView):
    decorators = [require_school]

    @blp.doc(responses={"200": {"description": "The answer's image (JPEG).", "content": {"image/jpeg": {}}}})
    def get(self, paper_id: uuid.UUID, question_id: str) -> Response:
        """The image of one answer, cut from its page (by the offline reader, or for the vision
        lane from the pages aligned to the exam's blank paper)."""
        paper = db().scalar(select(Paper).where(Paper.id == paper_id, Paper.school_id == current_school().id))
        return answer_image(paper, question_id)


def answer_image(paper: Paper | None, question_id: str) -> Response:
    """The answer's crop (JPEG) as the offline reader or the vision lane cut it, or 404; for the API
    and the web app."""
    key = answer_crops(paper.local_reading, paper.crops).get(question_id) if paper else None
    if key is None:
        raise not_found("answer image")
    try:
        image = resources().storage.get(key)
    except StorageError as exc:
        raise domain_error(exc, "the answer's image cannot be read from storage now") from exc
    return Response(image, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@blp.route("/v1/papers/<uuid:paper_id>/questions/<question_id>")
class QuestionOverride(MethodView):
    decorators = [require_school]

    @blp.doc(**answers(HTTPStatus.CONFLICT))
    @blp.arguments(OverrideSchema)
    @blp.response(200, PaperSchema)
    def patch(self, changes: dict[str, Any], paper_id: uuid.UUID, question_id: str) -> dict[str, Any]:
        """A teacher's verdict on one answer: is_correct, score, error_type, knowledge_points, and
        student_answer to correct a misread answer. The question leaves review and every count follows."""
        session = db()
        paper = session.scalar(select(Paper).where(Paper.id == paper_id, Paper.school_id == current_school().id))
        if paper is None:
            raise not_found("paper")
        if not paper.questions:
            raise ApiError(409, "not_graded", "the paper has no results to review yet")
        if not changes:
            raise ApiError(
                422,
                "invalid_request",
                "give at least one of is_correct, score, error_type, knowledge_points, student_answer",
            )
        try:
            override_question(session, paper, question_id, changes)
        except LookupError as exc:
            raise not_found("question") from exc
        except InvalidOverride as exc:
            session.rollback()
            raise domain_error(exc) from exc
        session.commit()
        return paper_view(paper)


@blp.route("/v1/students")
class Students(MethodView):
    decorators = [require_school]

    @blp.arguments(StudentListArgs, location="query", **STRICT)
    @blp.response(200, StudentSummarySchema(many=True), headers=PAGE_HEADERS)
    def get(self, args: dict[str, Any]) -> Any:
        """The school's students (by ref), each with the class of her latest paper, her papers and
        exams, in ref order; optionally only those with a paper in one class."""
        scope = [Paper.school_id == current_school().id]
        if "class_label" in args:
            refs = select(Paper.student_ref).where(*scope, Paper.class_label == args["class_label"])
            scope.append(Paper.student_ref.in_(refs))
        latest_class = func.array_agg(aggregate_order_by(Paper.class_label, Paper.created_at.desc()))[1]
        query = (
            select(
                Paper.student_ref,
                latest_class.label("class_label"),
                func.count().label("papers"),
                func.count(func.distinct(Paper.exam_id)).label("exams"),
                func.max(Paper.created_at).label("last_paper_at"),
            )
            .where(*scope)
            .group_by(Paper.student_ref)
            .order_by(Paper.student_ref)
        )
        return paged_select(db(), query, args, rows=True)


@blp.route("/v1/students/<path:student_ref>")
class StudentReport(MethodView):
    decorators = [require_school]

    @blp.arguments(StudentArgs, location="query", **STRICT)
    @blp.response(200, StudentReportSchema)
    def get(self, args: dict[str, Any], student_ref: str) -> dict[str, Any]:
        """A student's exams, weak knowledge points over a time window, and mistake notebook (错题本).
        A student the school has no paper of: 404."""
        return school_student(args, student_ref)


def school_student(args: dict[str, Any], student_ref: str) -> dict[str, Any]:
    """The caller's school's report of the student over the request's window (or one exam); 404
    for a student the school has no paper of."""
    school = current_school()
    if not known_student(db(), school.id, student_ref):
        raise not_found("student")
    return student_report(db(), school.id, student_ref, args.get("since"), args.get("until"), args.get("exam"))


@blp.route("/v1/students/<path:student_ref>/practice")
class StudentPractice(MethodView):
    decorators = [require_school]

    @blp.doc(**answers(HTTPStatus.CONFLICT))
    @blp.arguments(PracticeArgs, location="query", **STRICT)
    @blp.response(200, PracticeSetSchema(many=True))
    def get(self, args: dict[str, Any], student_ref: str) -> list[dict[str, Any]]:
        """Practice for the student's three weakest knowledge points (over the window, or one exam),
        five new questions each with their answers, in the given language.

        source=templates: made from templates with generated numbers, every answer confirmed by the
        equivalence check (no call; a point without a template is listed with no questions).
        source=model: written by the model, one text-only call per point, grade and language, in the
        ledger and under the caps of the student's exam, then cached for every student.
        Default: the model where the installation has a key, else templates."""
        report = school_student(args, student_ref)
        language, source = args["language"], args["source"]
        has_key = bool(resources().settings.openai_api_key)
        if source == "model" and not has_key:
            raise ApiError(422, "no_provider_key", "practice by the model needs a provider key; use source=templates")
        if source == "templates" or not has_key or not report["exams"]:
            return weak_point_practice(report["weak_points"], f"{student_ref}|{date.today().isoformat()}", language)
        exam = school_exam(report["exams"][-1]["exam_id"])
        sets = []
        for point in report["weak_points"][:WEAKEST]:
            try:
                questions = model_practice(resources(), exam, point["id"], language)
            except BudgetExceeded as exc:
                raise ApiError(409, "budget_reached", exc.reason) from exc
            except ProviderError as exc:
                raise ApiError(
                    503, "provider_unavailable", f"the model did not write the practice: {exc.reason}"
                ) from exc
            sets.append(
                {
                    **{k: point[k] for k in ("name_zh", "name_en")},
                    "knowledge_point": point["id"],
                    "questions": questions,
                }
            )
        return sets


@blp.route("/v1/classes/<path:class_label>")
class ClassReport(MethodView):
    decorators = [require_school]

    @blp.arguments(WindowArgs, location="query", **STRICT)
    @blp.response(200, ClassReportSchema)
    def get(self, args: dict[str, Any], class_label: str) -> dict[str, Any]:
        """A class's weak knowledge points across all its exams in a time window: each point's
        missed answers out of attempted. A class the school has no paper of: 404."""
        report = class_report(db(), current_school().id, class_label, args.get("since"), args.get("until"))
        if report is None:
            raise not_found("class")
        return report


@blp.route("/v1/students/<path:student_ref>/mistakes.csv")
class StudentMistakesCsv(MethodView):
    decorators = [require_school]

    @blp.arguments(StudentArgs, location="query", **STRICT)
    @blp.doc(responses={"200": {"description": "CSV", "content": {"text/csv": {}}}})
    def get(self, args: dict[str, Any], student_ref: str) -> Response:
        """The mistake notebook as CSV, one row per wrong answer, grouped by knowledge point."""
        report = school_student(args, student_ref)
        rows = [
            {"knowledge_point": g["knowledge_point"], "name_zh": g["name_zh"], "name_en": g["name_en"], **m}
            for g in report["mistake_notebook"]
            for m in g["mistakes"]
        ]
        columns = [
            "knowledge_point",
            "name_zh",
            "name_en",
            "exam",
            "date",
            "question_id",
            "question_text",
            "student_answer",
            "correct_answer",
            "error_type",
            "explanation",
            "correction",
        ]
        return csv_response(rows, columns, f"mistakes-{student_ref}.csv")


@blp.route("/v1/knowledge-points")
class KnowledgePoints(MethodView):
    decorators = [require_school]

    @blp.arguments(KnowledgePointArgs, location="query", **STRICT)
    @blp.response(200, KnowledgePointSchema(many=True), headers=PAGE_HEADERS)
    def get(self, args: dict[str, Any]) -> Any:
        """The knowledge-point vocabulary (知识点): the national points and the school's own,
        optionally for one subject and grade."""
        query = select(KnowledgePoint).where(visible_to(current_school().id), KnowledgePoint.exam_id.is_(None))
        if "subject" in args:
            query = query.where(KnowledgePoint.subject == args["subject"])
        if "grade" in args:
            query = query.where(KnowledgePoint.grade == args["grade"])
        return paged_select(db(), query.order_by(KnowledgePoint.subject, KnowledgePoint.grade, KnowledgePoint.id), args)

    @blp.arguments(PointImportSchema)
    @blp.response(200, KnowledgePointSchema(many=True))
    def post(self, fields: dict[str, Any]) -> list[KnowledgePoint]:
        """Add the school's own knowledge points once, for all its exams (id school-<school>.<id>);
        a point already there is brought up to date, so an import can be run again. Each may refine
        a national point (by id, name or alias). Answer keys then name them by id, name or alias."""
        return import_points(fields)


@blp.route("/v1/knowledge-points.csv")
class KnowledgePointsCsv(MethodView):
    decorators = [require_school]

    @blp.arguments(PointCsvArgs, location="query", **STRICT)
    @blp.doc(
        requestBody={
            "required": True,
            "description": "A UTF-8 CSV with a header: id, name_zh, and optionally name_en, grade, strand, "
            "aliases (separated by |), refines.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    )
    @blp.response(200, KnowledgePointSchema(many=True))
    def post(self, args: dict[str, Any]) -> list[KnowledgePoint]:
        """The school's own knowledge points from a spreadsheet saved as CSV; a row in error is
        named by its line, and then nothing is added."""
        rows = points_from_csv(request.get_data())
        try:
            fields = PointImportSchema().load({**args, "knowledge_points": rows})
        except ValidationError as exc:
            lines = exc.messages.get("knowledge_points", {}) if isinstance(exc.messages, dict) else {}
            details = {f"line {int(i) + 2}": m for i, m in lines.items()} if isinstance(lines, dict) else lines
            first = next(iter(details.items()), None) if isinstance(details, dict) else None
            raise ApiError(
                422,
                "invalid_request",
                f"the CSV is not valid: {first[0]}: {first[1]}" if first else "the CSV has no points",
                details,
            ) from exc
        return import_points(fields)


def points_from_csv(body: bytes) -> list[dict[str, Any]]:
    """A CSV's rows as points: empty cells left out, aliases split on |."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "invalid_request", "the CSV is not UTF-8; save it as 'CSV UTF-8'") from exc
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"id", "name_zh"} <= {name.strip() for name in reader.fieldnames}:
        raise ApiError(422, "invalid_request", "the CSV needs a header line with at least the columns id and name_zh")
    rows = []
    for row in reader:
        point: dict[str, Any] = {k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()}
        if "aliases" in point:
            point["aliases"] = [a.strip() for a in point["aliases"].split("|") if a.strip()]
        rows.append(point)
    return rows


def import_points(fields: dict[str, Any]) -> list[KnowledgePoint]:
    session = db()
    try:
        points = add_school_points(
            session, current_school().id, fields["knowledge_points"], fields["subject"], fields["grade"]
        )
    except UnknownPoints as exc:
        raise ApiError(
            422, "invalid_request", f"refines {exc}; list the national points with GET /v1/knowledge-points"
        ) from exc
    session.commit()
    return points


@blp.route("/v1/school/weak-points")
class SchoolWeakPoints(MethodView):
    decorators = [require_school]

    @blp.arguments(SchoolWeakPointsArgs, location="query", **STRICT)
    @blp.response(200, GradeWeakPointsSchema(many=True))
    def get(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The school's most-missed knowledge points by grade over a time window: for each grade,
        the points missed most (missed out of attempted), from final verdicts only."""
        return school_weak_points(db(), current_school().id, args.get("since"), args.get("until"), args["top"])
