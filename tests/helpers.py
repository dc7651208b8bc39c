"""Plain helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import httpx
import pytest
import redis
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import func, select

from shared.grading import lanes
from shared.models import Exam, Paper, PaperStatus, QuestionResult
from worker.celery_app import queue_keys

if TYPE_CHECKING:
    from flask import Flask

    from loopback.server import LoopbackServer
    from shared.settings import Settings

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("MARKQ_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("MARKQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUES = ("MARKQ_QUEUE_NAME", "MARKQ_IMAGE_QUEUE_NAME", "MARKQ_OCR_QUEUE_NAME")
FINISHED = {"graded", "needs_review", "failed", "paused"}


# --- waiting -------------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], T],
    timeout: float = 60.0,
    every: float = 0.2,
    poke: Callable[[], object] | None = None,
    what: str | Callable[[], str] = "condition",
    fail: bool = True,
) -> T:
    """Call `check` until it returns something truthy, and return that; fail the test after
    `timeout` seconds. `poke` runs between tries (to nudge a beat task, say). `what` names the
    condition in the failure message; a callable is called then, so it can tell the last state
    seen. With `fail=False` a timeout is no failure: the last (falsy) value is returned."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if poke is not None:
            poke()
        time.sleep(every)
    if not fail:
        return value
    pytest.fail(f"{what() if callable(what) else what} not met within {timeout:g} s")


def wait_for(api, headers, paper_id, statuses=FINISHED, timeout=60.0):
    """The paper, once its status is one of `statuses`."""
    seen: dict[str, str] = {}

    def settled():
        paper = httpx.get(f"{api}/v1/papers/{paper_id}", headers=headers).json()
        seen["status"] = paper["status"]
        return paper if paper["status"] in statuses else None

    return wait_until(
        settled, timeout=timeout, what=lambda: f"paper {paper_id} in {sorted(statuses)} (still {seen.get('status')})"
    )


def wait_until_no_paper_is_in_flight(app: Flask, timeout: float = 60.0) -> None:
    def in_flight() -> int:
        with app.extensions["markq"].sessions() as session:
            return session.scalar(
                select(func.count())
                .select_from(Paper)
                .join(Exam, Exam.id == Paper.exam_id)
                .where(Paper.status.in_([PaperStatus.queued, PaperStatus.processing]), lanes.live_exams())
            )  # economy papers wait for a batch on purpose

    wait_until(lambda: in_flight() == 0, timeout=timeout, what="no paper in flight")


# --- processes and queues ------------------------------------------------------------------------


def loopback_call(server: LoopbackServer, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    base = server.url.removesuffix("/v1")
    reply = httpx.post(base + path, json=body) if body is not None else httpx.get(base + path)
    reply.raise_for_status()
    return reply.json()


def start_celery(service_env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.main", *args],
        cwd=ROOT,
        env={**os.environ, **service_env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def queued_messages(settings: Settings) -> int:
    """Messages waiting in the markq queues."""
    broker = redis.Redis.from_url(settings.redis_url)
    return int(sum(broker.llen(key) for queue in queue_names(settings) for key in queue_keys(queue)))


def queue_names(settings: Settings) -> tuple[str, str, str]:
    return settings.queue_names


CONTROL_TIMEOUT = 15.0  # s a busy worker has to answer a control message (the default, 1 s, is missed under load)


def pause_consuming(app: Flask, settings: Settings, worker: str) -> None:
    """The worker stops taking messages from every markq queue, and has said so."""
    for queue in queue_names(settings):
        replies = app.extensions["celery"].control.cancel_consumer(
            queue, destination=[worker], reply=True, timeout=CONTROL_TIMEOUT
        )
        assert replies, f"{worker} did not answer: it may still take messages from {queue}"


def resume_consuming(app: Flask, settings: Settings, worker: str) -> None:
    for queue in queue_names(settings):
        replies = app.extensions["celery"].control.add_consumer(
            queue, destination=[worker], reply=True, timeout=CONTROL_TIMEOUT
        )
        assert replies, f"{worker} did not answer: it may not take messages from {queue} again"


# --- exams, pages and papers ---------------------------------------------------------------------

MATH_KEY = {
    "questions": [
        {"id": "1", "answer": "56", "points": 2, "knowledge_points": ["math.g3.multi-digit-multiplication"]},
        {
            "id": "2",
            "answer": "3/4",
            "points": 2,
            "accepted": ["0.75"],
            "knowledge_points": ["math.g3.fractions-intro"],
        },
        {"id": "3", "answer": "24 cm", "points": 3, "knowledge_points": ["math.g3.perimeter"]},
        {"id": "4", "answer": "7 r 2", "points": 3},
    ]
}


def exam_body(**overrides: Any) -> dict[str, Any]:
    return {
        "title": "Grade 3 unit test",
        "subject": "math",
        "grade": 3,
        "language": "zh",
        "answer_key": MATH_KEY,
        **overrides,
    }


def page_bytes(text: str | None = None, size: tuple[int, int] = (1240, 1754), fmt: str = "JPEG") -> bytes:
    """A plain page with some marks and `text` written on it (unique by default, so two pages
    are never identical unless a test asks: identical pages are graded once and reused)."""
    image = Image.new("RGB", size, "white")
    for x in range(100, size[0] - 100, 40):
        image.paste((20, 20, 20), (x, 200, x + 20, 220))
    ImageDraw.Draw(image).text(
        (100, 300), text or secrets.token_hex(8), fill=(0, 0, 0), font=ImageFont.load_default(40)
    )
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def create_exam(client, headers, **overrides):
    """An exam made through the Flask test client."""
    reply = client.post("/v1/exams", headers=headers, json=exam_body(**overrides))
    assert reply.status_code == 201, reply.json
    return reply.json


def exam_school(app, exam):
    with app.extensions["markq"].sessions() as session:
        return session.get(Exam, uuid.UUID(exam["id"])).school_id


def stored_objects(app, settings, exam) -> int:
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"{exam_school(app, exam)}/{exam['id']}/")
    return listed.get("KeyCount", 0)


def make_exam(api, headers, **overrides):
    """An exam made over real HTTP."""
    reply = httpx.post(f"{api}/v1/exams", headers=headers, json=exam_body(**overrides))
    assert reply.status_code == 201, reply.text
    return reply.json()


def submit(api, headers, exam_id, student="s1", pages=2, class_label="3A"):
    files = [("pages", (f"photo-{n}.jpg", page_bytes(), "image/jpeg")) for n in range(1, pages + 1)]
    reply = httpx.post(
        f"{api}/v1/exams/{exam_id}/papers",
        headers=headers,
        data={"student_ref": student, "class_label": class_label},
        files=files,
    )
    assert reply.status_code == 202, reply.text
    return reply.json()


def stored_exam(session: Any, school_id: int, title: str, answer_key: dict[str, Any], grade: int = 3) -> Exam:
    """A mathematics exam written straight into the database (for reports built on stored results)."""
    exam = Exam(
        school_id=school_id,
        title=title,
        subject="math",
        grade=grade,
        language="zh",
        answer_key=answer_key,
        model="gpt-4o",
        image_detail="high",
    )
    session.add(exam)
    session.flush()
    return exam


def stored_answer(
    paper_id: Any, position: int, question_id: str, answer: str, key: str, right: bool, **overrides: Any
) -> QuestionResult:
    """One marked answer worth a point, right or wrong as given; `overrides` change any column."""
    columns: dict[str, Any] = {
        "paper_id": paper_id,
        "position": position,
        "question_id": question_id,
        "student_answer": answer,
        "correct_answer": key,
        "is_correct": right,
        "score": float(right),
        "max_score": 1.0,
        "error_type": "none" if right else "calculation",
        "explanation": "",
        "correction": "",
        "confidence": 0.95,
        "model_is_correct": right,
        "model_score": float(right),
    }
    return QuestionResult(**{**columns, **overrides})


# --- scripted verdicts for the reports ------------------------------------------------------------

KEY = {
    "questions": [
        {"id": "1", "answer": "56", "points": 2, "knowledge_points": ["math.g2.times-tables"]},
        {"id": "2", "answer": "0.75", "points": 2, "knowledge_points": ["math.g3.fractions-intro"]},
        {"id": "3", "answer": "24厘米", "points": 3, "knowledge_points": ["math.g3.perimeter"]},
    ]
}
ANSWERS = {"1": ("56", "54"), "2": ("0.75", "0.7"), "3": ("24厘米", "12厘米")}
POINTS = {"1": 2, "2": 2, "3": 3}


def verdict(question: str, wrong: bool, **overrides):
    right_answer, wrong_answer = ANSWERS[question]
    return {
        "student_answer": wrong_answer if wrong else right_answer,
        "is_correct": not wrong,
        "score": 0 if wrong else POINTS[question],
        "knowledge_points": [],
        "error_type": "calculation" if wrong else "none",
        "explanation": "x" if wrong else "",
        "correction": f"= {right_answer}" if wrong else "",
        "confidence": 0.95,
        **overrides,
    }
