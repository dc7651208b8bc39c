"""The teacher's web app: sign in, exams, upload a class, progress, review, reports.

Server-rendered with Jinja; a little vendored JavaScript (api/static/app.js) for the review
keyboard, uploads and live progress. Pages call the same domain functions as the JSON API, never
the API over HTTP. A teacher sees her own school only: every exam and paper is looked up with the
school of the signed-in teacher, and another school's id answers 404 as if it did not exist.
"""

from __future__ import annotations

import csv
import hmac
import io
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from marshmallow import ValidationError
from sqlalchemy import select

from api import bulk, direct
from api.context import db, resources
from api.errors import ApiError, domain_error, error_response, not_found
from api.exams import RESUMABLE, correct_regions, derive_blank_paper, give_blank_paper, resume, template_page
from api.pages import LABELS, page_url, sheet_practice
from api.reports import answer_image
from api.schemas import (
    BulkResultSchema,
    BulkUploadCreateSchema,
    BulkUploadSchema,
    ExamCreateSchema,
    UploadCreateSchema,
    UploadSchema,
)
from shared import schools, sharing, teachers
from shared.grading import exam_template, lanes, papers
from shared.grading.exams import InvalidExam, create_exam, exam_view, get_exam
from shared.grading.reader.derive import MIN_PAPERS
from shared.grading.reports import class_report, exam_report, student_report
from shared.grading.review import InvalidOverride, override_question, review_count, review_groups, review_queue
from shared.models import BulkUpload, Exam, KnowledgePoint, Paper, PaperStatus, PauseCause
from shared.spending import caps
from shared.spending.estimate import PageSize, estimate
from worker.tasks import start_grading

web = Blueprint("web", __name__, url_prefix="/app", template_folder="templates")

COOKIE = "markq_session"
SIGN_IN_COOKIE = "markq_sign_in"  # the sign-in form's CSRF token (double submit: no session yet)
PUBLIC = {"web.sign_in"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'{storage}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}
KEY_TYPES = ("number", "choice", "text", "blanks", "expression", "word_problem")


class Refused(Exception):
    """A page refused: rendered as a page for people, or the API's error shape for the app's script."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def select_locale() -> str:
    """The signed-in teacher's language; before sign-in, the browser's (Chinese by default)."""
    teacher = g.get("teacher")
    if teacher is not None:
        return teacher.language
    return request.accept_languages.best_match(teachers.LANGUAGES) or "zh"


def _secure_cookie() -> bool:
    return request.is_secure or resources().settings.public_base_url.startswith("https://")


def _wants_json() -> bool:
    return request.is_json or request.path.endswith(".json") or request.accept_mimetypes.best == "application/json"


@web.before_request
def _signed_in() -> ResponseReturnValue | None:
    row = teachers.session_for(db(), request.cookies.get(COOKIE, ""))
    g.teacher = row.teacher if row else None
    if row is None:
        if request.endpoint in PUBLIC:
            return None
        if request.method in SAFE_METHODS and not _wants_json():
            return redirect(url_for("web.sign_in", next=request.full_path.rstrip("?")))
        raise Refused(401, _("Your session has ended: sign in again."))
    g.web_session = row
    g.school = row.teacher.school
    if request.method not in SAFE_METHODS:
        sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
        if not hmac.compare_digest(sent.encode(), row.csrf_token.encode()):
            raise Refused(403, _("This form has expired or did not come from markq: reload the page and try again."))
    return None


@web.after_request
def _headers(response: Response) -> Response:
    response.headers.update(HEADERS)
    response.headers["Content-Security-Policy"] = CSP.format(storage=_storage_origin())
    return response


def _storage_origin() -> str:
    """Where the upload screen's script PUTs pages (the storage's public address), for connect-src."""
    settings = resources().settings
    url = settings.s3_upload_endpoint_url or settings.s3_public_endpoint_url
    if settings.storage_backend != "s3" or not url:
        return ""
    parts = urlsplit(url)
    return f" {parts.scheme}://{parts.netloc}"


@web.errorhandler(Refused)
def _refused(exc: Refused) -> ResponseReturnValue:
    if _wants_json() or request.method not in SAFE_METHODS and request.headers.get("X-CSRF-Token") is not None:
        return error_response(exc.status, "refused", exc.message)
    return render_template("app/error.html", message=exc.message, status=exc.status), exc.status


@web.errorhandler(ApiError)
def _api_error(exc: ApiError) -> ResponseReturnValue:
    if _wants_json() or request.headers.get("X-CSRF-Token") is not None:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    message = _("Not found.") if exc.status == 404 else exc.message
    return render_template("app/error.html", message=message, status=exc.status), exc.status


@web.app_template_global()
def status_name(status: str) -> str:
    return {
        "uploading": _("uploading"),
        "queued": _("queued"),
        "processing": _("marking"),
        "graded": _("marked"),
        "needs_review": _("needs review"),
        "failed": _("failed"),
        "paused": _("paused"),
    }.get(status, status)


# Why an answer waits, as the marking code writes it (English), in the teacher's language.
REASONS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(r"^the offline reader is unsure \(confidence ([\d.]+) < ([\d.]+)\)(?:: (.*))?$", re.S),
        lambda m: (
            _("the offline reader is unsure (confidence %(c)s, below %(t)s)", c=m[1], t=m[2])
            + (f": {m[3]}" if m[3] else "")
        ),
    ),
    (
        re.compile(r"^illegible: a teacher must read the answer$"),
        lambda m: _("illegible: a teacher must read the answer"),
    ),
    (re.compile(r"^illegible: (.*)$", re.S), lambda m: _("illegible") + f": {m[1]}"),
    (
        re.compile(r"^the model is unsure \(confidence ([\d.]+)\)$"),
        lambda m: _("the model is unsure (confidence %(c)s)", c=m[1]),
    ),
    (
        re.compile(r"^the model gave ([\d.]+) of ([\d.]+) points$"),
        lambda m: _("the model gave %(s)s of %(p)s points", s=m[1], p=m[2]),
    ),
    (
        re.compile(r"^the check finds .* but the model marked it (correct|wrong)$", re.S),
        lambda m: (
            _("the mathematics check and the model disagree")
            + " ("
            + (_("the model said right") if m[1] == "correct" else _("the model said wrong"))
            + ")"
        ),
    ),
]


def reason_text(reason: str | None) -> str:
    for pattern, words in REASONS:
        if reason and (match := pattern.match(reason)):
            return words(match)
    return reason or ""


@web.app_template_global()
def subject_name(subject: str) -> str:
    return {"math": _("Mathematics"), "chinese": _("Chinese"), "english": _("English"), "science": _("Science")}.get(
        subject, subject
    )


@web.app_template_global()
def reader_name(reader: str) -> str:
    return {
        "local": _("read offline on the school's server"),
        "cascade": _("offline first, unsure answers by the vision model"),
        "vision": _("read by the vision model"),
    }.get(str(reader), str(reader))


@web.app_template_global()
def template_status(status: str | None) -> str:
    return {"reading": _("being read"), "ready": _("ready"), "failed": _("failed")}.get(status or "", status or "")


@web.app_context_processor
def _context() -> dict[str, Any]:
    session = g.get("web_session")
    return {
        "teacher": g.get("teacher"),
        "csrf_token": session.csrf_token if session else "",
        "locale": str(get_locale()),
    }


def _exam(exam_id: uuid.UUID) -> Exam:
    exam = get_exam(db(), g.school, exam_id)
    if exam is None:
        raise not_found("exam")
    return exam


def _paper(paper_id: uuid.UUID) -> Paper:
    paper = db().scalar(select(Paper).where(Paper.id == paper_id, Paper.school_id == g.school.id))
    if paper is None:
        raise not_found("paper")
    return paper


def _local_next(target: str | None) -> str:
    """Where to go after sign-in: only a path of this app, never another site."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/app"):
        return url_for("web.exams")
    return target or url_for("web.exams")


# --- signing in and out ------------------------------------------------------------------------


@web.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    if g.teacher is not None and request.method == "GET":
        return redirect(_local_next(request.args.get("next")))
    error, status, email, wait = None, 200, "", 0
    if request.method == "POST":
        email = request.form.get("email", "")
        form_token = request.form.get("csrf_token", "")
        cookie_token = request.cookies.get(SIGN_IN_COOKIE, "")
        if not cookie_token or not hmac.compare_digest(form_token.encode(), cookie_token.encode()):
            error, status = _("This form has expired: try again."), 403
        else:
            try:
                teacher = teachers.sign_in(db(), email, request.form.get("password", ""))
            except teachers.SignInRefused as refused:
                db().commit()  # the failure counts, also when refused
                wait = refused.wait_seconds
                status = 429 if refused.slowed else 401
                error = (
                    _("Too many wrong passwords: wait %(seconds)s seconds and try again.", seconds=wait)
                    if wait
                    else _("Wrong email or password.")
                )
            else:
                opened = teachers.open_session(db(), teacher)
                db().commit()
                response = redirect(_local_next(request.args.get("next")))
                response.set_cookie(
                    COOKIE,
                    opened.token,
                    max_age=teachers.SESSION_HOURS * 3600,
                    httponly=True,
                    secure=_secure_cookie(),
                    samesite="Lax",
                    path="/",
                )
                response.delete_cookie(SIGN_IN_COOKIE, path="/app")
                return response
    token = secrets.token_urlsafe(24)
    response = current_app.make_response(
        (render_template("app/sign_in.html", error=error, email=email, sign_in_token=token), status)
    )
    if wait:
        response.headers["Retry-After"] = str(wait)
    response.set_cookie(SIGN_IN_COOKIE, token, httponly=True, secure=_secure_cookie(), samesite="Strict", path="/app")
    return response


@web.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    teachers.close_session(db(), request.cookies.get(COOKIE, ""))
    db().commit()
    response = redirect(url_for("web.sign_in"))
    response.delete_cookie(COOKIE, path="/")
    return response


@web.post("/language")
def language() -> ResponseReturnValue:
    chosen = request.form.get("language", "")
    if chosen in teachers.LANGUAGES:
        g.teacher.language = chosen
        db().commit()
    return redirect(_local_next(request.form.get("next")))


# --- the school: teachers and API keys (admins) --------------------------------------------------


def _admin() -> None:
    if not g.teacher.is_admin:
        raise Refused(403, _("Only a school admin manages teachers and API keys."))


@web.get("/school")
def school() -> str:
    _admin()
    return _school_page()


def _school_page(**shown: Any) -> str:
    return render_template(
        "app/school.html",
        teachers=teachers.school_teachers(db(), g.school.id),
        keys=schools.list_keys(db(), g.school),
        **shown,
    )


@web.post("/school/teachers")
def invite() -> ResponseReturnValue:
    """A new teacher of this school with a one-time password the admin passes on (there is no
    mail server); she signs in with it and changes it."""
    _admin()
    password = secrets.token_urlsafe(9)
    try:
        made = teachers.create_teacher(
            db(),
            g.school,
            request.form.get("email", ""),
            request.form.get("name", ""),
            password,
            is_admin=bool(request.form.get("admin")),
            language=request.form.get("language", "zh"),
        )
    except teachers.AccountError as exc:
        db().rollback()
        return _school_page(error=str(exc)), 422
    db().commit()
    return _school_page(invited={"email": made.email, "password": password})


@web.post("/school/keys")
def new_key() -> ResponseReturnValue:
    _admin()
    made = schools.create_key(db(), g.school)
    db().commit()
    return _school_page(new_key=made.key)


@web.post("/school/keys/<prefix>/revoke")
def revoke(prefix: str) -> ResponseReturnValue:
    _admin()
    if prefix not in {key.prefix for key in schools.list_keys(db(), g.school)}:
        raise not_found("API key")
    schools.revoke_key(db(), prefix)
    db().commit()
    return redirect(url_for("web.school"))


@web.route("/password", methods=["GET", "POST"])
def password() -> ResponseReturnValue:
    error, done = None, False
    if request.method == "POST":
        try:
            teachers.sign_in(db(), g.teacher.email, request.form.get("current", ""))
            teachers.set_password(g.teacher, request.form.get("new", ""))
        except teachers.SignInRefused:
            db().commit()
            error = _("The current password is not right.")
        except teachers.AccountError as exc:
            error = str(exc)
        else:
            db().commit()
            done = True
    return render_template("app/password.html", error=error, done=done), (422 if error else 200)


# --- exams -------------------------------------------------------------------------------------


@web.get("/")
def exams() -> str:
    session = db()
    query = select(Exam).where(Exam.school_id == g.school.id)
    search = request.args.get("q", "").strip()
    if search:
        query = query.where(Exam.title.ilike(f"%{search}%") | Exam.subject.ilike(f"%{search}%"))
    rows = [
        exam_view(session, exam, cost=False)
        for exam in session.scalars(query.order_by(Exam.created_at.desc()).limit(200))
    ]
    return render_template("app/exams.html", exams=rows, search=search)


@web.route("/exams/new", methods=["GET", "POST"])
def new_exam() -> ResponseReturnValue:
    form = request.form if request.method == "POST" else {}
    errors: list[str] = []
    if request.method == "POST":
        try:
            fields = ExamCreateSchema().load(_exam_fields(request.form, request.files.get("key_file")))
        except ValidationError as exc:
            errors.extend(_messages(exc.messages))
        except ValueError as exc:
            errors.append(str(exc))
        else:
            try:
                exam = create_exam(db(), g.school, fields, vision_available=bool(resources().settings.openai_api_key))
            except InvalidExam as exc:
                db().rollback()
                errors.append(str(exc))
                errors.extend(
                    f"{d.get('question', '')} {d.get('field') or ''}: {d.get('msg', '')}" for d in _details(exc)
                )
            else:
                db().commit()
                return redirect(url_for("web.exam", exam_id=exam.id))
    rows = _key_rows(form)
    return render_template(
        "app/new_exam.html",
        form=form,
        errors=errors,
        key_types=KEY_TYPES,
        rows=rows,
        points=_vocabulary(),
        cost=_class_cost(len(rows)),
    ), (422 if errors else 200)


def _class_cost(questions: int, class_size: int = 40) -> dict[str, Any]:
    """What the vision model would cost for a class of two-page A4 papers (150 dpi scans), from
    the same estimate as POST /v1/estimate; the offline reader costs nothing."""
    model = resources().settings.default_model
    a4 = [PageSize(f"page-{n}", 1240, 1754) for n in (1, 2)]
    lanes = estimate(a4, [model], "high", class_size, max(1, min(questions, 200)))["models"][model]["lanes"]
    return {
        "model": model,
        "class_size": class_size,
        "usd": lanes["vision"]["class_usd"],
        "batch_usd": lanes["economy"]["class_usd"],
    }


def _messages(messages: Any, where: str = "") -> list[str]:
    """marshmallow's nested messages as lines: `answer_key.questions.0.points: ...`."""
    if isinstance(messages, dict):
        return [line for key, value in messages.items() for line in _messages(value, f"{where}{key}.")]
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{where.rstrip('.')}: {' '.join(messages)}"]
    return [f"{where.rstrip('.')}: {messages}"]


def _details(exc: InvalidExam) -> list[dict[str, Any]]:
    details = exc.details if isinstance(exc.details, list) else []
    return [d for d in details if isinstance(d, dict)]


def _vocabulary() -> list[KnowledgePoint]:
    return list(
        db().scalars(select(KnowledgePoint).where(KnowledgePoint.exam_id.is_(None)).order_by(KnowledgePoint.id))
    )


def _key_rows(form: Any) -> list[dict[str, str]]:
    if not form:
        return [{"id": str(n), "type": "number", "answer": "", "points": "1", "kps": ""} for n in range(1, 4)]
    columns = [form.getlist(name) for name in ("q_id", "q_type", "q_answer", "q_points", "q_kps")]
    return [
        dict(zip(("id", "type", "answer", "points", "kps"), row, strict=True)) for row in zip(*columns, strict=True)
    ]


def _key_from_table(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    questions = []
    for number, row in enumerate(rows, start=1):
        if not any(str(value).strip() for key, value in row.items() if key != "type"):
            continue
        qid = str(row.get("id", "")).strip() or str(number)
        kind = str(row.get("type", "number")).strip() or "number"
        answer = str(row.get("answer", "")).strip()
        try:
            points = float(str(row.get("points", "1")).strip() or 1)
        except ValueError as exc:
            raise ValueError(_("Question %(id)s: points must be a number.", id=qid)) from exc
        question: dict[str, Any] = {"id": qid, "type": kind, "points": points}
        if kind == "blanks":
            parts = [p.strip() for p in answer.replace("；", ";").split(";") if p.strip()]
            share = points / max(1, len(parts))
            question["blanks"] = [{"answer": p, "points": share} for p in parts]
        elif answer:
            question["answer"] = answer
        kps = [k.strip() for k in str(row.get("kps", "")).replace("，", ",").split(",") if k.strip()]
        if kps:
            question["knowledge_points"] = kps
        questions.append(question)
    if not questions:
        raise ValueError(_("The answer key needs at least one question."))
    return questions


def _key_file_rows(upload: Any) -> list[dict[str, str]]:
    """An answer key from a spreadsheet: CSV or XLSX with the columns id, type, answer, points,
    knowledge_points (a header row; Chinese headers 题号, 题型, 答案, 分值, 知识点 work too)."""
    name = (upload.filename or "").lower()
    data = upload.read(2 * 1024 * 1024 + 1)
    if len(data) > 2 * 1024 * 1024:
        raise ValueError(_("The answer key file is larger than 2 MB."))
    if name.endswith(".xlsx"):
        from openpyxl import load_workbook

        try:
            sheet = load_workbook(io.BytesIO(data), read_only=True, data_only=True).active
        except Exception as exc:  # openpyxl raises many kinds for a broken file
            raise ValueError(_("The answer key file is not a readable XLSX workbook.")) from exc
        table = [["" if cell is None else str(cell) for cell in row] for row in sheet.iter_rows(values_only=True)]
    elif name.endswith(".csv") or name.endswith(".txt"):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("gb18030", errors="replace")
        table = list(csv.reader(io.StringIO(text)))
    else:
        raise ValueError(_("Give the answer key as a CSV or XLSX file."))
    if not table:
        raise ValueError(_("The answer key file is empty."))
    aliases = {
        "题号": "id",
        "题型": "type",
        "答案": "answer",
        "分值": "points",
        "知识点": "kps",
        "knowledge_points": "kps",
    }
    header = [aliases.get(h.strip(), h.strip().lower()) for h in table[0]]
    if "answer" not in header:
        raise ValueError(_("The answer key file needs a header row with at least an 'answer' column."))
    return [dict(zip(header, row, strict=False)) for row in table[1:] if any(cell.strip() for cell in row)]


def _exam_fields(form: Any, key_file: Any) -> dict[str, Any]:
    rows = _key_file_rows(key_file) if key_file and key_file.filename else _key_rows(form)
    fields: dict[str, Any] = {
        "title": form.get("title", "").strip(),
        "subject": form.get("subject", "math"),
        "grade": form.get("grade", ""),
        "language": form.get("language", "zh"),
        "provider": form.get("provider", "local"),
        "answer_key": {"questions": _key_from_table(rows)},
    }
    if budget := form.get("budget_usd", "").strip():
        fields["budget_usd"] = budget  # the schema checks it as the API does
    if not fields["title"]:
        raise ValueError(_("Give the exam a title."))
    return fields


@web.get("/exams/<uuid:exam_id>")
def exam(exam_id: uuid.UUID) -> str:
    exam = _exam(exam_id)
    template = exam_template.template_view(exam) if exam.template else None
    return render_template(
        "app/exam.html", exam=exam, view=exam_view(db(), exam), papers=_papers(exam), template=template
    )


def _papers(exam: Exam) -> list[Paper]:
    return list(
        db().scalars(select(Paper).where(Paper.exam_id == exam.id).order_by(Paper.class_label, Paper.student_ref))
    )


@web.get("/exams/<uuid:exam_id>/progress.json")
def exam_progress(exam_id: uuid.UUID) -> Response:
    exam = _exam(exam_id)
    view = exam_view(db(), exam)
    waiting = sum(view["progress"][status.value] for status in lanes.ACTIVE)  # queued or being marked
    return jsonify(
        {
            "progress": view["progress"],
            "review": view["review"]["needing_review"],
            "cost_usd": str(view["usage"]["cost_usd"]),
            "estimated_usd": str(view["cost"]["estimated_usd"]),
            "in_flight": waiting,
            "papers": [
                {"id": str(p.id), "status": p.status.value, "reason": p.status_reason, "score": p.score}
                for p in _papers(exam)
            ],
        }
    )


@web.post("/exams/<uuid:exam_id>/resume")
def exam_resume(exam_id: uuid.UUID) -> ResponseReturnValue:
    exam = _exam(exam_id)
    budget = request.form.get("budget_usd", "").strip()
    causes: tuple[str, ...] = RESUMABLE
    if budget:
        try:
            exam.budget_usd = Decimal(budget)
        except InvalidOperation as exc:
            raise Refused(422, _("The budget must be an amount in dollars, such as 5 or 12.50.")) from exc
        if exam.budget_usd is not None and caps.exam_spent(db(), exam.id) >= exam.budget_usd:
            causes = tuple(c for c in causes if c != PauseCause.exam_budget)
    if request.form.get("release"):
        exam.trial_released = True
        causes = (*causes, PauseCause.trial)
    resume(exam, causes)
    return redirect(url_for("web.exam", exam_id=exam.id))


@web.post("/papers/<uuid:paper_id>/retry")
def paper_retry(paper_id: uuid.UUID) -> ResponseReturnValue:
    paper = _paper(paper_id)
    if papers.retry(db(), paper.id, "marked again at the teacher's request"):
        db().commit()
        start_grading([paper.id])
    return redirect(url_for("web.exam", exam_id=paper.exam_id))


@web.route("/exams/<uuid:exam_id>/upload")
def upload(exam_id: uuid.UUID) -> str:
    exam = _exam(exam_id)
    return render_template("app/upload.html", exam=exam, max_pages=resources().settings.max_pages_per_paper)


@web.post("/exams/<uuid:exam_id>/uploads")
def start_upload(exam_id: uuid.UUID) -> ResponseReturnValue:
    """One student's files declared by the upload screen: upload URLs back (the API's own call)."""
    exam = _exam(exam_id)
    try:
        fields = UploadCreateSchema().load(request.get_json(silent=True) or {})
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", "; ".join(_messages(exc.messages))) from exc
    return jsonify(UploadSchema().dump(direct.start_upload(exam, fields))), 201


@web.post("/exams/<uuid:exam_id>/bulk")
def upload_zip(exam_id: uuid.UUID) -> Response:
    """A class's ZIP dropped on the upload screen (the API's bulk intake: a folder per student)."""
    return jsonify(BulkResultSchema().dump(bulk.submit_class(_exam(exam_id))))


@web.post("/exams/<uuid:exam_id>/bulk/uploads")
def start_zip_upload(exam_id: uuid.UUID) -> ResponseReturnValue:
    """A class's ZIP declared by the upload screen: its upload URL back (the API's own call)."""
    exam = _exam(exam_id)
    try:
        fields = BulkUploadCreateSchema().load(request.get_json(silent=True) or {})
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", "; ".join(_messages(exc.messages))) from exc
    return jsonify(BulkUploadSchema().dump(bulk.start_bulk_upload(exam, fields))), 201


def _bulk(bulk_id: uuid.UUID) -> BulkUpload:
    found = db().scalar(select(BulkUpload).where(BulkUpload.id == bulk_id, BulkUpload.school_id == g.school.id))
    if found is None:
        raise not_found("bulk upload")
    return found


@web.post("/bulk/<uuid:bulk_id>/complete")
def complete_zip(bulk_id: uuid.UUID) -> Response:
    return jsonify(BulkUploadSchema().dump(bulk.complete_bulk(_bulk(bulk_id))))


@web.get("/bulk/<uuid:bulk_id>/upload")
def resume_zip(bulk_id: uuid.UUID) -> Response:
    """A class ZIP the screen started before: fresh URLs, and which parts are stored already."""
    return jsonify(BulkUploadSchema().dump(bulk.upload_bulk_again(_bulk(bulk_id))))


@web.get("/bulk/<uuid:bulk_id>")
def zip_status(bulk_id: uuid.UUID) -> Response:
    return jsonify(BulkUploadSchema().dump(bulk.bulk_view(_bulk(bulk_id))))


@web.get("/papers/<uuid:paper_id>/upload")
def resume_upload(paper_id: uuid.UUID) -> Response:
    return jsonify(UploadSchema().dump(direct.upload_again(_paper(paper_id))))


@web.post("/papers/<uuid:paper_id>/complete")
def complete_upload(paper_id: uuid.UUID) -> Response:
    view = direct.complete(_paper(paper_id))
    return jsonify({"id": str(view["id"]), "status": view["status"], "student_ref": view["student_ref"]})


@web.post("/exams/<uuid:exam_id>/template")
def upload_template(exam_id: uuid.UUID) -> ResponseReturnValue:
    exam = _exam(exam_id)
    give_blank_paper(
        exam,
        _("Choose the blank paper's pages (images or a PDF)."),
        _("Could not store the blank paper; nothing was kept."),
    )
    return redirect(url_for("web.exam", exam_id=exam.id))


@web.post("/exams/<uuid:exam_id>/template/derive")
def derive_template(exam_id: uuid.UUID) -> ResponseReturnValue:
    derive_blank_paper(
        _exam(exam_id),
        _(
            "A blank paper is derived from at least %(n)s uploaded papers of the exam: upload more, or give the blank paper.",
            n=MIN_PAPERS,
        ),
    )
    return redirect(url_for("web.exam", exam_id=exam_id))


@web.get("/exams/<uuid:exam_id>/template/pages/<int:number>.png")
def template_preview(exam_id: uuid.UUID, number: int) -> Response:
    return template_page(_exam(exam_id), number, drawn=request.args.get("plain") is None)


@web.post("/exams/<uuid:exam_id>/template/regions")
def move_regions(exam_id: uuid.UUID) -> ResponseReturnValue:
    """Answer regions the teacher dragged into place: {"regions": {qid: {"page", "box"}}}."""
    exam = _exam(exam_id)
    regions = (request.get_json(silent=True) or {}).get("regions")
    if not isinstance(regions, dict):
        raise ApiError(422, "invalid_request", 'send {"regions": {question id: {"page": n, "box": [x0, y0, x1, y1]}}}')
    correct_regions(exam, regions)
    return jsonify({"regions": exam.template["regions"]})


@web.post("/exams/<uuid:exam_id>/share")
def share(exam_id: uuid.UUID) -> str:
    """A link for people without an account: the whole report, or one student's sheet."""
    exam = _exam(exam_id)
    student_ref = request.form.get("student_ref") or None
    if student_ref is not None and not db().scalar(
        select(Paper.id).where(Paper.exam_id == exam.id, Paper.student_ref == student_ref).limit(1)
    ):
        raise not_found("student")
    days = request.form.get("days", "7")
    made = sharing.create_link(db(), exam, student_ref, days=min(90, max(1, int(days) if days.isdigit() else 7)))
    db().commit()
    link = (
        page_url("pages.student_page", exam_id=exam.id, student_ref=student_ref, token=made.token)
        if student_ref
        else page_url("pages.exam_page", exam_id=exam.id, token=made.token)
    )
    return render_template(
        "app/shared.html", exam=exam, link=link, student_ref=student_ref, expires=made.link.expires_at
    )


@web.get("/classes/<path:class_label>")
def klass(class_label: str) -> str:
    data = class_report(db(), g.school.id, class_label)
    if data is None:
        raise not_found("class")
    return render_template("app/class.html", report=data)


# --- review ------------------------------------------------------------------------------------


@web.get("/exams/<uuid:exam_id>/review")
def review(exam_id: uuid.UUID) -> str:
    exam = _exam(exam_id)
    items = review_queue(db(), exam.id)
    for item in items:
        item["paper_id"] = str(item["paper_id"])
        item["crop_url"] = (
            url_for("web.crop", paper_id=item["paper_id"], question_id=item["question_id"])
            if item.pop("has_crop")
            else None
        )
    groups = review_groups(items)
    for group in groups:
        group["review_reason"] = reason_text(group["review_reason"])
    return render_template("app/review.html", exam=exam, groups=groups, answers=len(items))


@web.post("/exams/<uuid:exam_id>/review")
def decide(exam_id: uuid.UUID) -> ResponseReturnValue:
    """A teacher's decision on one answer group: {question_id, papers: [ids], action, score?,
    reading?}. action: accept (the suggested verdict), right, wrong, score (partial), reading
    (her reading of the answer, marked against the key)."""
    exam = _exam(exam_id)
    body = request.get_json(silent=True) or {}
    question_id = str(body.get("question_id", ""))
    ids = body.get("papers") or []
    if not question_id or not isinstance(ids, list) or not ids or len(ids) > 1000:
        raise ApiError(422, "invalid_request", "give question_id and papers (1 to 1000 paper ids)")
    try:
        paper_ids = [uuid.UUID(str(i)) for i in ids]
    except ValueError as exc:
        raise ApiError(422, "invalid_request", "papers must be paper ids") from exc
    found = list(db().scalars(select(Paper).where(Paper.id.in_(paper_ids), Paper.exam_id == exam.id)))
    if len(found) != len(set(paper_ids)):
        raise not_found("paper")
    try:
        for paper in found:
            override_question(db(), paper, question_id, _changes(paper, question_id, body))
    except LookupError as exc:
        db().rollback()
        raise not_found("question") from exc
    except InvalidOverride as exc:
        db().rollback()
        raise domain_error(exc) from exc
    db().commit()
    return jsonify({"decided": len(found), "remaining": review_count(db(), exam.id)})


def _changes(paper: Paper, question_id: str, body: dict[str, Any]) -> dict[str, Any]:
    action = body.get("action")
    if action == "right":
        return {"is_correct": True}
    if action == "wrong":
        return {"is_correct": False}
    if action == "score":
        return {"score": body.get("score"), "is_correct": _as_float(body.get("score")) > 0}
    if action == "reading":
        return {"student_answer": str(body.get("reading", ""))}
    if action == "accept":
        question = next((q for q in paper.questions if q.question_id == question_id), None)
        if question is None:
            raise LookupError(question_id)
        if question.model_score is None:
            raise InvalidOverride("markq could not read this answer: say right, wrong or a score")
        return {"is_correct": question.model_is_correct, "score": question.model_score}
    raise InvalidOverride("action must be accept, right, wrong, score or reading")


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidOverride("a score must be a number") from exc


@web.get("/papers/<uuid:paper_id>/questions/<question_id>/crop")
def crop(paper_id: uuid.UUID, question_id: str) -> Response:
    return answer_image(_paper(paper_id), question_id)


# --- reports -----------------------------------------------------------------------------------


@web.get("/exams/<uuid:exam_id>/report")
def report(exam_id: uuid.UUID) -> str:
    exam = _exam(exam_id)
    data = exam_report(db(), exam)
    top = data["missed_knowledge_points"][:10]
    widest = max((row["missed"] for row in top), default=0) or 1

    def sheet_url(student_ref: str) -> str:
        return url_for("web.student", exam_id=exam.id, student_ref=student_ref)

    actions = {
        "pack": url_for("web.pack", exam_id=exam.id),
        "share": url_for("web.share", exam_id=exam.id),
        "class_url": lambda label: url_for("web.klass", class_label=label),
    }
    return render_template(
        "exam_report.html",
        layout="app/base.html",
        exam=exam,
        report=data,
        top=top,
        widest=widest,
        sheet_url=sheet_url,
        actions=actions,
    )


def _sheet(exam: Exam, student_ref: str) -> dict[str, Any]:
    data = student_report(db(), g.school.id, student_ref, exam_id=exam.id)
    if not data["exams"]:
        raise not_found("student")
    return {
        "report": data,
        "paper": db().get(Paper, data["exams"][0]["paper_id"]),
        "practice": sheet_practice(data, exam),
    }


@web.get("/exams/<uuid:exam_id>/students/<path:student_ref>")
def student(exam_id: uuid.UUID, student_ref: str) -> str:
    exam = _exam(exam_id)
    return render_template(
        "app/student.html",
        exam=exam,
        sheets=[_sheet(exam, student_ref)],
        text=LABELS.get(exam.language, LABELS["en"]),
        lang=exam.language,
        today=date.today(),
    )


@web.get("/exams/<uuid:exam_id>/pack")
def pack(exam_id: uuid.UUID) -> str:
    """Every student's sheet in one printable page: A4, each sheet from a new page."""
    exam = _exam(exam_id)
    refs = db().scalars(
        select(Paper.student_ref)
        .where(Paper.exam_id == exam.id, Paper.status.in_((PaperStatus.graded, PaperStatus.needs_review)))
        .order_by(Paper.class_label, Paper.student_ref)
    )
    return render_template(
        "app/pack.html",
        exam=exam,
        sheets=[_sheet(exam, ref) for ref in dict.fromkeys(refs)],
        text=LABELS.get(exam.language, LABELS["en"]),
        lang=exam.language,
        today=date.today(),
    )
