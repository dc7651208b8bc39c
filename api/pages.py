"""Pages for people: the teacher's exam report and each student's printable feedback sheet.

Browsers cannot send the API key, so pages open through share links: `POST /v1/exams/{id}/share`
returns a URL whose token is signed for that exam and school and expires after a week.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, render_template, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint as ApiBlueprint
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from api.context import current_school, db, require_school, resources
from api.errors import ApiError, not_found
from api.exams import school_exam
from api.schemas import ShareLinkSchema
from shared.grading.reports import exam_report, student_report
from shared.models import Exam
from shared.settings import secret_key

LINK_SECONDS = 7 * 24 * 3600
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


@pages.after_request
def _security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
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
    },
}


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(resources().settings), salt="markq-pages")


def share_token(exam: Exam) -> str:
    return _serializer().dumps({"exam": str(exam.id), "school": exam.school_id})


def _exam_from_token(exam_id: uuid.UUID) -> Exam:
    token = request.args.get("token", "")
    try:
        claims = _serializer().loads(token, max_age=LINK_SECONDS)
    except SignatureExpired as exc:
        raise ApiError(403, "link_expired", "this link has expired; ask for a new one") from exc
    except BadSignature as exc:
        raise ApiError(403, "bad_link", "this link is not valid") from exc
    if claims.get("exam") != str(exam_id):
        raise ApiError(403, "bad_link", "this link is for another exam")
    exam = db().scalar(select(Exam).where(Exam.id == exam_id, Exam.school_id == claims.get("school")))
    if exam is None:
        raise not_found("exam")
    return exam


@pages.get("/pages/exams/<uuid:exam_id>")
def exam_page(exam_id: uuid.UUID) -> str:
    exam = _exam_from_token(exam_id)
    report = exam_report(db(), exam)
    top = report["missed_knowledge_points"][:10]
    widest = max((row["missed"] for row in top), default=0) or 1
    return render_template(
        "exam_report.html", exam=exam, report=report, top=top, widest=widest, token=request.args["token"]
    )


@pages.get("/pages/exams/<uuid:exam_id>/students/<path:student_ref>")
def student_page(exam_id: uuid.UUID, student_ref: str) -> str:
    exam = _exam_from_token(exam_id)
    report = student_report(db(), exam.school_id, student_ref, exam_id=exam.id)
    if not report["exams"]:
        raise not_found("student")
    from shared.models import Paper

    paper = db().get(Paper, report["exams"][0]["paper_id"])
    return render_template(
        "student_sheet.html",
        exam=exam,
        report=report,
        paper=paper,
        text=LABELS.get(exam.language, LABELS["en"]),
        lang=exam.language,
    )


@share_blp.route("/v1/exams/<uuid:exam_id>/share")
class ShareExam(MethodView):
    decorators = [require_school]

    @share_blp.response(200, ShareLinkSchema)
    def post(self, exam_id: uuid.UUID) -> dict[str, Any]:
        """A link to the exam's HTML report (and from it, each student's feedback sheet), valid 7 days."""
        exam = school_exam(exam_id)
        token = share_token(exam)
        return {
            "report_url": url_for("pages.exam_page", exam_id=exam.id, token=token, _external=True),
            "expires_in_seconds": LINK_SECONDS,
            "school": current_school().name,
        }
