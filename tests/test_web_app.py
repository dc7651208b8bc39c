"""The teacher's web app over HTTP: accounts, sessions, CSRF, slowed-down guesses, schools kept
apart, answer groups and corrected readings. The browser test is tests/test_web_app_in_browser.py."""

from __future__ import annotations

import io
import re
import secrets
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner
from openpyxl import Workbook
from sqlalchemy import select

from api.admin import main as admin
from shared.db import transaction
from shared.grading.review import review_queue
from shared.models import Exam, Paper, PaperStatus, School, Teacher
from shared.schools import create_school
from shared.teachers import FREE_GUESSES, create_teacher
from tests.helpers import KEY, page_bytes, stored_answer, stored_exam

PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parent.parent


def new_teacher(app, school_name: str | None = None) -> dict:
    with transaction(app.extensions["markq"].sessions) as session:
        school = create_school(session, school_name or f"Web school {secrets.token_hex(3)}")
        teacher = create_teacher(session, school, f"t{secrets.token_hex(4)}@school.cn", "王老师", PASSWORD)
        return {"email": teacher.email, "school_id": school.id}


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def sign_in(client, email: str, password: str = PASSWORD):
    form = client.get("/app/sign-in")
    return client.post("/app/sign-in", data={"email": email, "password": password, "csrf_token": csrf_of(form.text)})


@pytest.fixture
def teacher(app):
    return new_teacher(app)


@pytest.fixture
def signed_in(app, teacher):
    client = app.test_client()
    reply = sign_in(client, teacher["email"])
    assert reply.status_code == 302, reply.text
    return client


def graded_exam(app, school_id: int, readings: dict[str, str]) -> Exam:
    """An exam whose papers have question 1 waiting for review with the given readings."""
    with transaction(app.extensions["markq"].sessions) as session:
        exam = stored_exam(session, school_id, "三年级数学", KEY)
        for student, reading in readings.items():
            paper = Paper(
                school_id=school_id, exam_id=exam.id, student_ref=student, class_label="3(2)", status=PaperStatus.graded
            )
            session.add(paper)
            session.flush()
            session.add(
                stored_answer(
                    paper.id,
                    1,
                    "1",
                    reading,
                    "56",
                    False,
                    score=None,
                    max_score=2,
                    error_type="illegible",
                    confidence=0.3,
                    needs_review=True,
                    review_reason="illegible: a teacher must read the answer",
                    model_score=None,
                )
            )
            paper.status = PaperStatus.needs_review
        session.flush()
        session.expunge(exam)
        return exam


def test_a_page_without_a_session_redirects_to_sign_in(client):
    reply = client.get("/app/")
    assert reply.status_code == 302 and reply.headers["Location"].startswith("/app/sign-in?next=/app/")
    assert client.get(f"/app/exams/{uuid.uuid4()}/review").status_code == 302
    assert client.post(f"/app/exams/{uuid.uuid4()}/review", json={}).status_code == 401


def test_sign_in_opens_a_server_side_session_and_sign_out_ends_it(app, teacher):
    client = app.test_client()
    reply = sign_in(client, teacher["email"].upper())  # emails are not case-sensitive
    assert reply.status_code == 302
    cookie = reply.headers["Set-Cookie"]
    assert "markq_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/app/")
    assert page.status_code == 200 and "王老师" in page.text
    assert page.headers["Cache-Control"] == "private, no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    reply = client.post("/app/sign-out", data={"csrf_token": csrf_of(page.text)})
    assert reply.status_code == 302
    assert client.get("/app/").status_code == 302  # the session row is gone, not only the cookie


def test_a_wrong_password_is_refused_and_repeated_ones_are_slowed_down(app, teacher):
    client = app.test_client()
    for _ in range(FREE_GUESSES):
        assert sign_in(client, teacher["email"], "wrong password!").status_code == 401
    slowed = sign_in(client, teacher["email"], "wrong password!")
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) >= 1
    # while slowed, even the right password waits: guessing gets no faster
    right = sign_in(client, teacher["email"])
    assert right.status_code == 429
    unknown = sign_in(client, "nobody@school.cn")
    assert (
        unknown.status_code == 401 and "Wrong email or password" in unknown.text or "邮箱或密码不正确" in unknown.text
    )


def test_a_post_without_the_csrf_token_is_refused(app, signed_in, teacher):
    exam = graded_exam(app, teacher["school_id"], {"S1": "5b"})
    paper_id = str(review_queue(app.extensions["markq"].sessions(), exam.id)[0]["paper_id"])
    body = {"question_id": "1", "papers": [paper_id], "action": "right"}
    refused = signed_in.post(f"/app/exams/{exam.id}/review", json=body)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "refused"
    forged = signed_in.post(f"/app/exams/{exam.id}/review", json=body, headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 403
    assert signed_in.post("/app/sign-out").status_code == 403  # a form without its token too
    token = csrf_of(signed_in.get("/app/").text)
    done = signed_in.post(f"/app/exams/{exam.id}/review", json=body, headers={"X-CSRF-Token": token})
    assert done.status_code == 200 and done.json == {"decided": 1, "remaining": 0}
    # the sign-in form has its own token (no session yet): without it nothing is checked
    fresh = app.test_client()
    assert fresh.post("/app/sign-in", data={"email": teacher["email"], "password": PASSWORD}).status_code == 403


def test_a_cascade_trials_held_papers_show_in_the_exams_estimate(app, signed_in, teacher):
    from shared.models import PauseCause, Reader

    with transaction(app.extensions["markq"].sessions) as session:
        exam = stored_exam(session, teacher["school_id"], "三年级数学 试运行", KEY)
        exam.provider, exam.trial_papers = Reader.cascade, 1
        for n, unsure in enumerate((["1"], ["1"], [])):
            session.add(
                Paper(
                    school_id=exam.school_id,
                    exam_id=exam.id,
                    student_ref=f"T{n}",
                    status=PaperStatus.paused,  # the third paused before its reading (none in flight)
                    paused_for=PauseCause.trial,
                    local_reading={"questions": {}, "unsure": unsure} if unsure else None,
                )
            )
        exam_id = exam.id
    page = signed_in.get(f"/app/exams/{exam_id}")
    assert page.status_code == 200
    estimate = re.search(r'id="estimate">\$([0-9.]+)<', page.text)
    assert estimate and float(estimate.group(1)) > 0
    assert "已离线识别 2 份试卷" in page.text  # the two held after their reading; the third not read
    progress = signed_in.get(f"/app/exams/{exam_id}/progress.json").json
    assert float(progress["estimated_usd"]) == pytest.approx(float(estimate.group(1)), abs=1e-4)


def test_a_teacher_never_sees_another_schools_exams(app, signed_in):
    other = new_teacher(app)
    exam = graded_exam(app, other["school_id"], {"S1": "56"})
    paper_id = review_queue(app.extensions["markq"].sessions(), exam.id)[0]["paper_id"]
    for path in (
        f"/app/exams/{exam.id}",
        f"/app/exams/{exam.id}/review",
        f"/app/exams/{exam.id}/report",
        f"/app/exams/{exam.id}/pack",
        f"/app/exams/{exam.id}/upload",
        f"/app/exams/{exam.id}/students/S1",
        f"/app/papers/{paper_id}/questions/1/crop",
    ):
        assert signed_in.get(path).status_code == 404, path
    token = csrf_of(signed_in.get("/app/").text)
    post = signed_in.post(
        f"/app/exams/{exam.id}/review",
        json={"question_id": "1", "papers": [str(paper_id)], "action": "right"},
        headers={"X-CSRF-Token": token},
    )
    assert post.status_code == 404
    assert signed_in.post(f"/app/papers/{paper_id}/retry", data={"csrf_token": token}).status_code == 404
    assert exam.title not in signed_in.get("/app/?q=三年级").text


def test_identical_readings_are_one_group_and_a_corrected_reading_is_marked_against_the_key(app, signed_in, teacher):
    exam = graded_exam(app, teacher["school_id"], {"S1": "5b", "S2": "5 b", "S3": "54"})
    page = signed_in.get(f"/app/exams/{exam.id}/review")
    assert page.status_code == 200
    groups = __import__("json").loads(re.search(r'id="groups">(.*?)</script>', page.text, re.S).group(1))
    assert [sorted(p["student_ref"] for p in g["papers"]) for g in groups] == [["S1", "S2"], ["S3"]]
    assert groups[0]["review_reason"] == "无法识别：需要老师查看答案"  # why it waits, in her language
    token = csrf_of(page.text)
    group = groups[0]
    reply = signed_in.post(
        f"/app/exams/{exam.id}/review",
        json={
            "question_id": "1",
            "papers": [p["paper_id"] for p in group["papers"]],
            "action": "reading",
            "reading": "56",
        },
        headers={"X-CSRF-Token": token},
    )
    assert reply.status_code == 200 and reply.json == {"decided": 2, "remaining": 1}
    wrong = signed_in.post(
        f"/app/exams/{exam.id}/review",
        json={"question_id": "1", "papers": [groups[1]["papers"][0]["paper_id"]], "action": "reading", "reading": "54"},
        headers={"X-CSRF-Token": token},
    )
    assert wrong.json["remaining"] == 0
    with app.extensions["markq"].sessions() as session:
        rows = {p.student_ref: p for p in session.scalars(select(Paper).where(Paper.exam_id == exam.id))}
        right = rows["S1"].questions[0]
        assert (right.student_answer, right.is_correct, right.score) == ("56", True, 2)
        miss = rows["S3"].questions[0]
        assert (miss.student_answer, miss.is_correct, miss.score) == ("54", False, 0)
        assert "56" in miss.correction and miss.reviewed_at is not None
        assert [kp.knowledge_point_id for kp in miss.knowledge_points] == ["math.g2.times-tables"]
        assert rows["S3"].status == PaperStatus.graded and rows["S3"].score == 0
    sheet = signed_in.get(f"/app/exams/{exam.id}/students/S3")
    assert 'data-mistake="1"' in sheet.text and ">54<" in sheet.text  # the corrected reading, in the 错题本


def test_an_exam_is_created_from_the_form_and_from_a_spreadsheet(app, signed_in, teacher):
    page = signed_in.get("/app/exams/new")
    token = csrf_of(page.text)
    assert "math.g2.times-tables" in page.text  # the vocabulary to pick knowledge points from
    assert re.search(r"视觉模型（gpt-4o）约 \$\d+\.\d\d", page.text)  # the class's cost before saving
    form = {
        "csrf_token": token,
        "title": "二年级口算",
        "subject": "math",
        "grade": "2",
        "language": "zh",
        "provider": "local",
        "q_id": ["1", "2"],
        "q_type": ["number", "blanks"],
        "q_answer": ["56", "3；4"],
        "q_points": ["2", "4"],
        "q_kps": ["math.g2.times-tables", ""],
    }
    reply = signed_in.post("/app/exams/new", data=form)
    assert reply.status_code == 302, reply.text
    with app.extensions["markq"].sessions() as session:
        exam = session.scalar(select(Exam).where(Exam.school_id == teacher["school_id"], Exam.title == "二年级口算"))
        questions = exam.answer_key["questions"]
        assert questions[0]["answer"] == "56" and questions[0]["knowledge_points"] == ["math.g2.times-tables"]
        assert [b["answer"] for b in questions[1]["blanks"]] == ["3", "4"]

    broken = signed_in.post("/app/exams/new", data={**form, "q_kps": ["no.such.point", ""]})
    assert broken.status_code == 422 and "no.such.point" in broken.text and "二年级口算" in broken.text

    book = Workbook()
    book.active.append(["题号", "题型", "答案", "分值", "知识点"])
    book.active.append(["1", "number", "56", 2, "math.g2.times-tables"])
    book.active.append(["2", "text", "plays", 2, ""])
    data = io.BytesIO()
    book.save(data)
    xlsx = {**form, "title": "从表格导入", "key_file": (io.BytesIO(data.getvalue()), "key.xlsx")}
    assert signed_in.post("/app/exams/new", data=xlsx, content_type="multipart/form-data").status_code == 302
    csv_file = "id,answer,points\n1,56,2\n2,0.75,2\n".encode()
    from_csv = {**form, "title": "从 CSV 导入", "key_file": (io.BytesIO(csv_file), "key.csv")}
    assert signed_in.post("/app/exams/new", data=from_csv, content_type="multipart/form-data").status_code == 302
    bad = {**form, "title": "坏文件", "key_file": (io.BytesIO(b"PK\x03\x04 broken"), "key.xlsx")}
    refused = signed_in.post("/app/exams/new", data=bad, content_type="multipart/form-data")
    assert refused.status_code == 422 and ("XLSX" in refused.text)
    with app.extensions["markq"].sessions() as session:
        titles = set(session.scalars(select(Exam.title).where(Exam.school_id == teacher["school_id"])))
    assert {"从表格导入", "从 CSV 导入"} <= titles and "坏文件" not in titles


def test_the_pages_are_in_the_teachers_language(app, signed_in):
    page = signed_in.get("/app/")
    assert "考试" in page.text and "新建考试" in page.text  # Chinese by default
    signed_in.post("/app/language", data={"csrf_token": csrf_of(page.text), "language": "en", "next": "/app/"})
    assert "New exam" in signed_in.get("/app/").text


def test_every_message_of_the_web_app_has_its_chinese_compiled():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "translations.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_first_admin_is_made_on_the_command_line(app, settings):
    name = f"CLI school {secrets.token_hex(3)}"
    with transaction(app.extensions["markq"].sessions) as session:
        create_school(session, name)
    email = f"admin{secrets.token_hex(3)}@school.cn"
    runner = CliRunner()
    args = ["create-teacher", name, email, "--name", "李校长", "--admin", "--password-stdin"]
    made = runner.invoke(admin, args, input=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    short = runner.invoke(
        admin, ["create-teacher", name, "x" + email, "--name", "x", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    again = runner.invoke(admin, args, input=PASSWORD + "\n")
    assert again.exit_code == 1 and "already exists" in again.output
    with app.extensions["markq"].sessions() as session:
        teacher = session.scalar(select(Teacher).where(Teacher.email == email))
        assert teacher.is_admin and teacher.password_hash.startswith("$argon2")
        assert session.get(School, teacher.school_id).name == name
    signed = app.test_client()
    assert sign_in(signed, email).status_code == 302


def test_a_school_admin_adds_teachers_and_manages_api_keys_and_a_teacher_cannot(app, teacher, signed_in):
    assert signed_in.get("/app/school").status_code == 403  # a teacher, not an admin
    with transaction(app.extensions["markq"].sessions) as session:
        school = session.get(School, teacher["school_id"])
        admin_email = create_teacher(
            session, school, f"a{secrets.token_hex(4)}@school.cn", "校长", PASSWORD, is_admin=True
        ).email
    admin_client = app.test_client()
    assert sign_in(admin_client, admin_email).status_code == 302
    page = admin_client.get("/app/school")
    assert page.status_code == 200 and "王老师" in page.text
    token = csrf_of(page.text)

    new_email = f"n{secrets.token_hex(4)}@school.cn"
    invited = admin_client.post(
        "/app/school/teachers", data={"csrf_token": token, "email": new_email, "name": "新老师", "language": "en"}
    )
    password = re.search(r'id="invited-password">([^<]+)<', invited.text).group(1)
    newcomer = app.test_client()
    assert sign_in(newcomer, new_email, password).status_code == 302
    assert "New exam" in newcomer.get("/app/").text  # her language
    again = admin_client.post("/app/school/teachers", data={"csrf_token": token, "email": new_email, "name": "x"})
    assert again.status_code == 422 and "already exists" in again.text

    made = admin_client.post("/app/school/keys", data={"csrf_token": token})
    key = re.search(r'id="new-key">([^<]+)<', made.text).group(1)
    headers = {"Authorization": f"Bearer {key}"}
    assert app.test_client().get("/v1/exams", headers=headers).status_code == 200
    other_admin = new_teacher(app)
    with transaction(app.extensions["markq"].sessions) as session:
        session.scalar(select(Teacher).where(Teacher.email == other_admin["email"])).is_admin = True
    stranger = app.test_client()
    sign_in(stranger, other_admin["email"])
    stranger_token = csrf_of(stranger.get("/app/school").text)
    prefix = key.split("_")[1]
    assert stranger.post(f"/app/school/keys/{prefix}/revoke", data={"csrf_token": stranger_token}).status_code == 404
    assert app.test_client().get("/v1/exams", headers=headers).status_code == 200
    assert admin_client.post(f"/app/school/keys/{prefix}/revoke", data={"csrf_token": token}).status_code == 302
    assert app.test_client().get("/v1/exams", headers=headers).status_code == 401


def test_a_teacher_changes_her_password(app, teacher, signed_in):
    token = csrf_of(signed_in.get("/app/password").text)
    wrong = signed_in.post("/app/password", data={"csrf_token": token, "current": "not it at all", "new": "x" * 12})
    assert wrong.status_code == 422
    short = signed_in.post("/app/password", data={"csrf_token": token, "current": PASSWORD, "new": "short"})
    assert short.status_code == 422
    done = signed_in.post(
        "/app/password", data={"csrf_token": token, "current": PASSWORD, "new": "a new long password"}
    )
    assert done.status_code == 200
    assert sign_in(app.test_client(), teacher["email"]).status_code == 401
    assert sign_in(app.test_client(), teacher["email"], "a new long password").status_code == 302


def test_a_teacher_shares_a_sheet_and_opens_a_class_page(app, signed_in, teacher):
    exam = graded_exam(app, teacher["school_id"], {"S1": "56", "S2": "54"})
    token = csrf_of(signed_in.get("/app/").text)
    made = signed_in.post(f"/app/exams/{exam.id}/share", data={"csrf_token": token, "student_ref": "S2", "days": "3"})
    assert made.status_code == 200
    link = re.search(r'id="link" class="link-box" value="([^"]+)"', made.text).group(1)
    assert "/pages/exams/" in link and "/students/S2?token=" in link
    url = urlsplit(link)
    opened = app.test_client().get(f"{url.path}?{url.query}")
    assert opened.status_code == 200 and "S2" in opened.text
    assert (
        signed_in.post(f"/app/exams/{exam.id}/share", data={"csrf_token": token, "student_ref": "nobody"}).status_code
        == 404
    )
    assert signed_in.get("/app/classes/3(2)").status_code == 200
    assert signed_in.get("/app/classes/no-such-class").status_code == 404
    other = new_teacher(app)
    theirs = graded_exam(app, other["school_id"], {"T1": "56"})
    assert signed_in.post(f"/app/exams/{theirs.id}/share", data={"csrf_token": token}).status_code == 404


def test_a_class_zip_dropped_on_the_upload_screen_is_unpacked_by_student(app, signed_in, teacher):
    exam = graded_exam(app, teacher["school_id"], {"S0": "56"})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for student in ("Z1", "Z2"):
            zipped.writestr(f"3(2)/{student}/p1.jpg", page_bytes(student))
        zipped.writestr("3(2)/Z3/notes.txt", "not a page")
    token = csrf_of(signed_in.get(f"/app/exams/{exam.id}/upload").text)
    reply = signed_in.post(
        f"/app/exams/{exam.id}/bulk",
        data={"archive": (io.BytesIO(archive.getvalue()), "class.zip"), "class_label": "3(2)"},
        headers={"X-CSRF-Token": token},
        content_type="multipart/form-data",
    )
    assert reply.status_code == 200, reply.json
    assert sorted(p["student_ref"] for p in reply.json["created"]) == ["Z1", "Z2"]
    assert [r["file"] for r in reply.json["refused"]] == ["3(2)/Z3/notes.txt"]
    assert signed_in.post(f"/app/exams/{exam.id}/bulk", data={}).status_code == 403  # no CSRF token


def test_the_upload_screen_sends_a_class_zip_by_url_and_polls_its_unpacking(app, signed_in, teacher, worker):
    """What app.js does with a dropped ZIP: declare it, PUT it to storage, complete, poll."""
    exam = graded_exam(app, teacher["school_id"], {"S0": "56"})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for student in ("U1", "U2"):
            zipped.writestr(f"3(2)/{student}/p1.jpg", page_bytes(student))
        zipped.writestr("3(2)/U3/notes.txt", "not a page")
    data = archive.getvalue()
    token = csrf_of(signed_in.get(f"/app/exams/{exam.id}/upload").text)
    headers = {"X-CSRF-Token": token}
    body = {"name": "class.zip", "size": len(data), "class_label": "3(2)"}
    assert signed_in.post(f"/app/exams/{exam.id}/bulk/uploads", json=body).status_code == 403  # no CSRF token
    declared = signed_in.post(f"/app/exams/{exam.id}/bulk/uploads", json=body, headers=headers)
    assert declared.status_code == 201, declared.json
    assert declared.json["complete_url"].startswith("/app/bulk/") and declared.json["status_url"].startswith("/app/")
    target = declared.json["upload"]
    assert httpx.put(target["url"], content=data, headers=target["headers"]).status_code == 200
    completed = signed_in.post(declared.json["complete_url"], headers=headers)
    assert completed.status_code == 200 and completed.json["status"] == "queued", completed.json
    deadline = time.monotonic() + 60
    state = completed.json
    while state["status"] not in {"done", "failed"} and time.monotonic() < deadline:
        time.sleep(0.3)
        state = signed_in.get(declared.json["status_url"]).json
    assert state["status"] == "done", state
    assert sorted(p["student_ref"] for p in state["result"]["created"]) == ["U1", "U2"]
    assert [r["file"] for r in state["result"]["refused"]] == ["3(2)/U3/notes.txt"]
    other = new_teacher(app)
    theirs = graded_exam(app, other["school_id"], {"T1": "56"})
    assert signed_in.post(f"/app/exams/{theirs.id}/bulk/uploads", json=body, headers=headers).status_code == 404
    for created in state["result"]["created"]:  # marked before the test ends: nothing left in flight
        while time.monotonic() < deadline + 60:
            with app.extensions["markq"].sessions() as session:
                if session.get(Paper, created["paper_id"]).status not in {PaperStatus.queued, PaperStatus.processing}:
                    break
            time.sleep(0.3)
