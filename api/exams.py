"""Exams: create one, read its progress and cost, list its papers, read its report."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from api.context import current_school, db, require_school, resources
from api.errors import ApiError, domain_error, not_found
from api.paging import PAGE_HEADERS, STRICT, paged_select
from api.schemas import (
    ExamCreateSchema,
    ExamListArgs,
    ExamSchema,
    ExamUpdateSchema,
    SchoolSchema,
    TemplateRegionsSchema,
    TemplateSchema,
)
from api.uploads import request_pages
from shared import webhooks
from shared.grading import exam_template, papers
from shared.grading.exams import InvalidExam, create_exam, exam_view, get_exam
from shared.models import Exam, PauseCause, Usage
from shared.spending import caps
from shared.spending.ledger import usage_totals
from shared.storage import StorageError
from worker.tasks import start_grading

blp = Blueprint("exams", __name__, url_prefix="/v1/exams", description="Exams and their progress")
TEMPLATE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["pages"],
                "properties": {
                    "pages": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "The blank paper's pages in order: images or PDFs.",
                    }
                },
            }
        }
    },
}


def school_exam(exam_id: uuid.UUID) -> Exam:
    exam = get_exam(db(), current_school(), exam_id)
    if exam is None:
        raise not_found("exam")
    return exam


@blp.route("")
class Exams(MethodView):
    decorators = [require_school]

    @blp.arguments(ExamListArgs, location="query", **STRICT)
    @blp.response(200, ExamSchema(many=True), headers=PAGE_HEADERS)
    def get(self, args: dict[str, Any]) -> Any:
        """The school's exams, newest first, optionally of one subject or grade (paged)."""
        session = db()
        query = select(Exam).where(Exam.school_id == current_school().id)
        if "subject" in args:
            query = query.where(Exam.subject == args["subject"])
        if "grade" in args:
            query = query.where(Exam.grade == args["grade"])
        exams, status, headers = paged_select(session, query.order_by(Exam.created_at.desc(), Exam.id), args)
        return [exam_view(session, exam, cost=False) for exam in exams], status, headers

    @blp.arguments(ExamCreateSchema)
    @blp.response(201, ExamSchema)
    def post(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Create an exam with its answer key."""
        session = db()
        if fields.get("callback_url"):
            try:
                webhooks.check_destination(fields["callback_url"], resources().settings)
            except webhooks.DestinationRefused as exc:
                raise domain_error(exc) from exc
        try:
            exam = create_exam(
                session, current_school(), fields, vision_available=bool(resources().settings.openai_api_key)
            )
        except InvalidExam as exc:
            session.rollback()
            raise domain_error(exc, details=exc.details) from exc
        session.commit()
        secret = webhooks.signing_secret(exam.callback_secret) if exam.callback_secret else None
        return {**exam_view(session, exam), "callback_secret": secret}


# What a teacher's "resume" clears: the account and the budgets (a trial run ends by release).
RESUMABLE = (PauseCause.quota, PauseCause.provider_key, PauseCause.exam_budget, PauseCause.school_budget)


def resume(exam: Exam, causes: tuple[str, ...]) -> dict[str, Any]:
    """Commit the exam's changes with its papers paused for `causes` back in the queue, then queue
    them (after the commit, so a worker never sees them before they are queued)."""
    session = db()
    resumed = papers.resume(session, causes=causes, exam_id=exam.id) if causes else []
    session.commit()
    start_grading(resumed)
    return exam_view(session, exam)


@blp.route("/<uuid:exam_id>")
class ExamById(MethodView):
    decorators = [require_school]

    @blp.response(200, ExamSchema)
    def get(self, exam_id: uuid.UUID) -> dict[str, Any]:
        """An exam with paper counts by status and the cost so far."""
        return exam_view(db(), school_exam(exam_id))

    @blp.arguments(ExamUpdateSchema)
    @blp.response(200, ExamSchema)
    def patch(self, fields: dict[str, Any], exam_id: uuid.UUID) -> dict[str, Any]:
        """Change the exam's budget. Papers paused by the budget resume if it now has room."""
        exam = school_exam(exam_id)
        exam.budget_usd = fields["budget_usd"]
        room = exam.budget_usd is None or caps.exam_spent(db(), exam.id) < exam.budget_usd
        return resume(exam, (PauseCause.exam_budget,) if room else ())


@blp.route("/<uuid:exam_id>/template")
class ExamTemplate(MethodView):
    decorators = [require_school]

    @blp.doc(requestBody=TEMPLATE_BODY)
    @blp.response(202, TemplateSchema)
    def post(self, exam_id: uuid.UUID) -> Any:
        """Give the exam's blank paper (images or a PDF, in page order). markq finds each
        question's answer region on it in the background, and reads every paper with it."""
        exam = school_exam(exam_id)
        give_blank_paper(exam, "send the blank paper's pages in the 'pages' field")
        return exam_template.template_view(exam), 202

    @blp.response(200, TemplateSchema)
    def get(self, exam_id: uuid.UUID) -> dict[str, Any]:
        """The blank paper's reading: its status, and each question's answer region (page, box in
        the pixels of the page as read: upright, at most 2000 px on its long side)."""
        exam = school_exam(exam_id)
        if not exam.template:
            raise not_found("template")
        return exam_template.template_view(exam)

    @blp.arguments(TemplateRegionsSchema)
    @blp.response(200, TemplateSchema)
    def patch(self, fields: dict[str, Any], exam_id: uuid.UUID) -> dict[str, Any]:
        """Correct answer regions: {"regions": {"3": {"page": 1, "box": [x0, y0, x1, y1]}}}."""
        exam = school_exam(exam_id)
        correct_regions(exam, fields["regions"])
        return exam_template.template_view(exam)


@blp.route("/<uuid:exam_id>/template/derive")
class ExamTemplateDerived(MethodView):
    decorators = [require_school]

    @blp.response(202, TemplateSchema)
    def post(self, exam_id: uuid.UUID) -> Any:
        """No blank paper to give? markq derives one from the exam's first papers (at least 5, up
        to 8, every page stored): the print they share, each pupil's writing left out. It replaces
        any blank paper given before; check it, as a given one, before more papers are read.
        Papers already marked keep their marks."""
        exam = school_exam(exam_id)
        derive_blank_paper(exam)
        return exam_template.template_view(exam), 202


@blp.route("/<uuid:exam_id>/template/pages/<int:number>/preview")
class ExamTemplatePreview(MethodView):
    decorators = [require_school]

    @blp.doc(responses={"200": {"description": "The page with its regions drawn (PNG).", "content": {"image/png": {}}}})
    def get(self, exam_id: uuid.UUID, number: int) -> Response:
        """A page of the blank paper with each question's answer region drawn on it and labelled:
        check it before the papers are read, and correct a region with PATCH .../template."""
        return template_page(school_exam(exam_id), number)


def give_blank_paper(
    exam: Exam, missing: str, not_stored: str = "could not store the blank paper; nothing was kept"
) -> None:
    """The request's blank-paper pages stored and committed, and read in the background (API and
    web app; `missing` and `not_stored` say what went wrong, in the caller's words)."""
    pages, headers = request_pages(missing)
    try:
        exam_template.store_pages(resources().storage, exam, pages, headers)
    except StorageError as exc:
        raise domain_error(exc, not_stored) from exc
    db().commit()
    current_app.extensions["celery"].send_task("markq.read_template", args=(str(exam.id),))


def derive_blank_paper(exam: Exam, too_few: str | None = None) -> None:
    """The exam's blank paper derived from its first papers, in the background (API and web app;
    409 too_few_papers when it has fewer than it takes, `too_few` saying so in the caller's words)."""
    try:
        exam_template.start_deriving(db(), exam)
    except exam_template.TooFewPapers as exc:
        raise ApiError(409, "too_few_papers", too_few or str(exc)) from exc
    db().commit()
    current_app.extensions["celery"].send_task("markq.derive_template", args=(str(exam.id),))


def correct_regions(exam: Exam, regions: Any) -> None:
    """A teacher's corrected answer regions, checked and committed (422 naming what is wrong)."""
    try:
        exam_template.correct_regions(exam, regions)
    except exam_template.InvalidRegions as exc:
        raise ApiError(422, "invalid_regions", str(exc)) from exc
    db().commit()


def template_page(exam: Exam, number: int, *, drawn: bool = True) -> Response:
    """A blank page as read (PNG), its regions drawn on it unless `drawn` is False."""
    try:
        image = exam_template.preview(resources().storage, exam, number, drawn=drawn)
    except exam_template.NoPreview as exc:
        raise not_found("template page") from exc
    except StorageError as exc:
        raise domain_error(exc, "the blank paper cannot be read from storage now") from exc
    return Response(image, mimetype="image/png", headers={"Cache-Control": "private, no-cache"})


@blp.route("/<uuid:exam_id>/resume")
class ExamResume(MethodView):
    decorators = [require_school]

    @blp.response(200, ExamSchema)
    def post(self, exam_id: uuid.UUID) -> dict[str, Any]:
        """Resume every paused paper of the exam (e.g. after topping up the provider account).
        A paper still over a budget pauses again at once, before any call."""
        return resume(school_exam(exam_id), RESUMABLE)


@blp.route("/<uuid:exam_id>/release")
class ExamRelease(MethodView):
    decorators = [require_school]

    @blp.response(200, ExamSchema)
    def post(self, exam_id: uuid.UUID) -> dict[str, Any]:
        """End the trial run: grade the papers it held, and every paper submitted from now on."""
        exam = school_exam(exam_id)
        exam.trial_released = True
        return resume(exam, (PauseCause.trial,))


school_blp = Blueprint("school", __name__, url_prefix="/v1/school", description="The caller's school")


@school_blp.route("")
class SchoolView(MethodView):
    decorators = [require_school]

    @school_blp.response(200, SchoolSchema)
    def get(self) -> dict[str, Any]:
        """The school's daily budget, today's spend and its whole ledger."""
        school = current_school()
        session = db()
        return {
            "id": school.id,
            "name": school.name,
            "daily_budget_usd": school.daily_budget_usd,
            "spent_today_usd": caps.school_spent_today(session, school.id),
            "usage": usage_totals(session, Usage.school_id == school.id),
        }
