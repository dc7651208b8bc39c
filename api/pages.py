"""Pages for people: the teacher's exam report and each student's printable feedback sheet.

Browsers cannot send the API key, so pages open through share links: `POST /v1/exams/{id}/share`
returns a URL whose token is signed for that exam and school and expires after a week.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from flask import Blueprint, Response, render_template, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint as ApiBlueprint
from sqlalchemy import select

from api.context import current_school, db, require_school, resources
from api.errors import ApiError, not_found
from api.exams import school_exam
from api.schemas import ShareLinkSchema, ShareRequestSchema
from shared import sharing
from shared.grading.practice import weak_point_practice
from shared.grading.reports import exam_report, student_report
from shared.models import Exam, Paper, ShareLink

pages = Blueprint("pages", __name__, template_folder="templates")
# Every script and style a page loads is served from here (the API docs' ReDoc too): no CDN.
assets = Blueprint("assets", __name__, static_folder="static", static_url_path="/assets")
share_blp = ApiBlueprint("share", __name__, description="Share links to the HTML pages")

# Pages carry no script and are never framed; a share link's token stays out of other sites' logs.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


# The API docs: ReDoc (vendored) runs its own script, inline styles and a worker for search.
DOCS_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; worker-src blob:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


@pages.after_request
def _security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def docs_headers(response: Response) -> Response:
    """For app.after_request: the API docs page is flask-smorest's, not a blueprint of ours."""
    if request.path == "/docs":
        response.headers.update(DOCS_HEADERS)
    return response


LABELS = {
    "zh": {
        "sheet": "学生反馈单",
        "score": "得分",
        "question": "题号",
        "your_answer": "你的答案",
        "right_answer": "正确答案",
        "result": "结果",
        "right": "✓",
        "wrong": "✗",
        "pending": "待老师批阅",
        "pending_points": "另有 %s 分待老师批阅",
        "weak": "需要练习的知识点",
        "mistakes": "错题本",
        "correction": "订正",
        "why": "原因",
        "none": "全部正确，继续保持！",
        "practice": "针对性练习",
        "practice_for": "练习：%s",
        "no_practice": "这个知识点暂时没有自动生成的练习题，请老师布置。",
        "answers": "参考答案",
        "date": "日期",
        "signature": "家长签字",
    },
    "en": {
        "sheet": "Feedback sheet",
        "score": "Score",
        "question": "Question",
        "your_answer": "Your answer",
        "right_answer": "Correct answer",
        "result": "Result",
        "right": "✓",
        "wrong": "✗",
        "pending": "waiting for your teacher",
        "pending_points": "and %s points waiting for your teacher",
        "weak": "Knowledge points to practise",
        "mistakes": "Mistake notebook",
        "correction": "Correction",
        "why": "Why",
        "none": "All correct. Keep it up!",
        "practice": "Practice",
        "practice_for": "Practise: %s",
        "no_practice": "No generated practice for this point yet: your teacher will set some.",
        "answers": "Answers",
        "date": "Date",
        "signature": "Parent's signature",
    },
}


def _exam_from_token(exam_id: uuid.UUID, student_ref: str | None = None) -> Exam:
    """The exam whose page this request's share link opens (403 with the reason otherwise)."""
    try:
        link = sharing.opened(db(), request.args.get("token", ""), exam_id, student_ref)
    except sharing.LinkRefused as exc:
        raise ApiError(403, exc.code, exc.message) from exc
    exam = db().scalar(select(Exam).where(Exam.id == exam_id, Exam.school_id == link.school_id))
    if exam is None:
        raise not_found("exam")
    return exam


def page_url(endpoint: str, **values: Any) -> str:
    """An absolute link on the configured public address (never the request's Host header)."""
    return resources().settings.public_base_url.rstrip("/") + url_for(endpoint, **values)


@pages.get("/pages/exams/<uuid:exam_id>")
def exam_page(exam_id: uuid.UUID) -> str:
    exam = _exam_from_token(exam_id)
    report = exam_report(db(), exam)
    top = report["missed_knowledge_points"][:10]
    widest = max((row["missed"] for row in top), default=0) or 1
    token = request.args["token"]

    def sheet_url(student_ref: str) -> str:
        return url_for("pages.student_page", exam_id=exam.id, student_ref=student_ref, token=token)

    return render_template("exam_report.html", exam=exam, report=report, top=top, widest=widest, sheet_url=sheet_url)


@pages.get("/pages/exams/<uuid:exam_id>/students/<path:student_ref>")
def student_page(exam_id: uuid.UUID, student_ref: str) -> str:
    exam = _exam_from_token(exam_id, student_ref)
    report = student_report(db(), exam.school_id, student_ref, exam_id=exam.id)
    if not report["exams"]:
        raise not_found("student")
    paper = db().get(Paper, report["exams"][0]["paper_id"])
    return render_template(
        "student_sheet.html",
        exam=exam,
        report=report,
        paper=paper,
        practice=sheet_practice(report, exam),
        text=LABELS.get(exam.language, LABELS["en"]),
        lang=exam.language,
        today=date.today(),
    )


def sheet_practice(report: dict[str, Any], language: str) -> list[dict[str, Any]]:
    """The practice a student's sheet prints: her weakest points on it, the same all day."""
    return weak_point_practice(
        report["weak_points"], f"{report['student_ref']}|{date.today().isoformat()}", language, 4
    )


def _link_view(link: ShareLink, token: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": link.id,
        "student_ref": link.student_ref,
        "created_at": link.created_at,
        "expires_at": link.expires_at,
        "revoked_at": link.revoked_at,
    }
    if token is not None:  # the URL is shown once, when the link is made
        if link.student_ref is None:
            view["url"] = page_url("pages.exam_page", exam_id=link.exam_id, token=token)
        else:
            view["url"] = page_url(
                "pages.student_page", exam_id=link.exam_id, student_ref=link.student_ref, token=token
            )
    return view


@share_blp.route("/v1/exams/<uuid:exam_id>/share")
class ShareExam(MethodView):
    decorators = [require_school]

    @share_blp.arguments(ShareRequestSchema, required=False)
    @share_blp.response(201, ShareLinkSchema)
    def post(self, fields: dict[str, Any], exam_id: uuid.UUID) -> dict[str, Any]:
        """A link to the exam's HTML report and every student's sheet, or with `student_ref` to
        that student's sheet only; valid `days` days (7 unless given, at most 90). Its URL is
        shown only now; revoke it with DELETE .../share/{id}."""
        exam = school_exam(exam_id)
        student_ref = (fields or {}).get("student_ref")
        if student_ref is not None and not db().scalar(
            select(Paper.id).where(Paper.exam_id == exam.id, Paper.student_ref == student_ref).limit(1)
        ):
            raise not_found("student")
        new = sharing.create_link(db(), exam, student_ref, (fields or {}).get("days", sharing.DEFAULT_DAYS))
        db().commit()
        return {**_link_view(new.link, new.token), "school": current_school().name}

    @share_blp.response(200, ShareLinkSchema(many=True))
    def get(self, exam_id: uuid.UUID) -> list[dict[str, Any]]:
        """The exam's share links (without their URLs, which were shown once), revoked ones too."""
        exam = school_exam(exam_id)
        return [_link_view(link) for link in sharing.links_of(db(), exam.id)]


@share_blp.route("/v1/exams/<uuid:exam_id>/share/<int:link_id>")
class ShareLinkById(MethodView):
    decorators = [require_school]

    @share_blp.response(200, ShareLinkSchema)
    def delete(self, exam_id: uuid.UUID, link_id: int) -> dict[str, Any]:
        """Revoke a share link: it stops opening any page at once."""
        exam = school_exam(exam_id)
        link = sharing.revoke(db(), exam.id, link_id)
        if link is None:
            raise not_found("share link")
        db().commit()
        return _link_view(link)
