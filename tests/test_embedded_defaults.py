"""The embedded defaults (SQLite file, local storage folder) run the same pipeline, with pages
sent inline as data: image parts because a local folder has no URL a provider could fetch."""

import io

import httpx
import pytest
from sqlalchemy import inspect

from shared.db import make_engine, make_session_factory, transaction
from shared.grading import papers
from shared.grading.exams import create_exam
from shared.grading.requests import prepare_paper
from shared.grading.results import parse_reply, record_marks
from shared.intake.submission import UploadedPage, check_pages, submit_paper
from shared.migrate import migrate
from shared.models import PaperStatus
from shared.provider import VisionProvider
from shared.schools import create_school
from shared.spending import ledger
from shared.storage import LocalStorage
from tests.helpers import MATH_KEY, page_bytes


@pytest.fixture
def sqlite_sessions(tmp_path):
    url = f"sqlite:///{tmp_path}/markq.db"
    migrate(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    yield sessions
    engine.dispose()


def new_exam(sessions, school_name, **overrides):
    with transaction(sessions) as session:
        school = create_school(session, school_name)
        return create_exam(
            session,
            school,
            {
                "title": "t",
                "subject": "math",
                "grade": 3,
                "language": "zh",
                "answer_key": MATH_KEY,
                "rubric": "",
                "model": "gpt-4o",
                "image_detail": "high",
                **overrides,
            },
        )


def test_migrations_build_every_table_on_sqlite(sqlite_sessions):
    tables = set(inspect(sqlite_sessions.kw["bind"]).get_table_names())
    assert {
        "schools",
        "api_keys",
        "exams",
        "papers",
        "pages",
        "question_results",
        "question_knowledge_points",
        "knowledge_points",
        "usage",
    } <= tables


def test_local_storage_pages_go_inline_as_data_image_parts(sqlite_sessions, tmp_path, loopback):
    storage = LocalStorage(tmp_path / "storage")
    exam = new_exam(sqlite_sessions, "Embedded school", language="en")
    pages = [UploadedPage(io.BytesIO(page_bytes()), "p1.png")]
    pages, headers = check_pages(pages, max_bytes=10_000_000, max_pixels=10_000_000, max_pages=20)
    with sqlite_sessions() as session:
        paper = submit_paper(session, storage, exam, student_ref="s", class_label="", pages=pages, headers=headers)
    with transaction(sqlite_sessions) as session:
        assert papers.claim(session, paper.id)
        assert not papers.claim(session, paper.id)  # a second claim does nothing
    with transaction(sqlite_sessions) as session:
        prepared = prepare_paper(
            session, storage, paper.id, presign_seconds=60, max_completion_tokens=2000, local_threshold=0.9
        )
    image_parts = [p for p in prepared.request["messages"][-1]["content"] if p["type"] == "image_url"]
    assert len(image_parts) == 1 and image_parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    text = " ".join(str(m["content"]) for m in prepared.request["messages"][:-1])
    assert "base64" not in text

    before = httpx.get(loopback.url.removesuffix("/v1") + "/_loopback/stats").json()
    reply = VisionProvider("sk-loopback", loopback.url, 30).complete(prepared.request)
    after = httpx.get(loopback.url.removesuffix("/v1") + "/_loopback/stats").json()
    assert after["image_parts_data"] - before["image_parts_data"] == 1
    with transaction(sqlite_sessions) as session:
        usage_id = ledger.reserve(
            session,
            exam_id=prepared.exam_id,
            school_id=prepared.school_id,
            paper_id=paper.id,
            model=prepared.model,
            cost=prepared.cost,
        ).id
    with transaction(sqlite_sessions) as session:
        ledger.store_reply(session, usage_id, reply)
    with transaction(sqlite_sessions) as session:
        usage = ledger.stored_reply(session, paper.id)
        marks = parse_reply(prepared, ledger.reply_of(usage))
        status = record_marks(session, prepared, marks, "reply-key", local_threshold=0.9)
    # markq's estimate uses the same token rules as the loopback server, so here they agree
    assert usage.prompt_tokens == usage.estimated_prompt_tokens
    assert status in (PaperStatus.graded, PaperStatus.needs_review)


def test_the_request_prefix_is_identical_for_every_paper_of_an_exam(sqlite_sessions, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    exam = new_exam(sqlite_sessions, "Prefix school", rubric="Show working.")
    requests = []
    for student, text in (("a", "first"), ("b", "second paper")):
        pages = [UploadedPage(io.BytesIO(page_bytes(text)), "p.jpg")]
        pages, headers = check_pages(pages, max_bytes=10_000_000, max_pixels=10_000_000, max_pages=20)
        with sqlite_sessions() as session:
            paper = submit_paper(
                session, storage, exam, student_ref=student, class_label="", pages=pages, headers=headers
            )
        with transaction(sqlite_sessions) as session:
            requests.append(
                prepare_paper(
                    session, storage, paper.id, presign_seconds=60, max_completion_tokens=2000, local_threshold=0.9
                ).request
            )
    first, second = requests
    assert first["messages"][:2] == second["messages"][:2]
    assert first["response_format"] == second["response_format"]
    assert first["prompt_cache_key"] == second["prompt_cache_key"] == f"markq-exam-{exam.id}"
    assert first["messages"][2] != second["messages"][2]  # only the pages differ
