"""Fixtures: real PostgreSQL, Redis, an S3 server (moto) and the loopback OpenAI server on loopback.

Each run makes its own PostgreSQL database and uses its own Redis database number, so runs
never see each other's data.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from moto.server import ThreadedMotoServer
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import func, select
from werkzeug.serving import make_server

from loopback.server import LoopbackServer, _QuietHandler
from shared.db import transaction
from shared.grading.vocabulary import sync_vocabulary
from shared.migrate import upgrade
from shared.models import Exam, Paper, PaperStatus
from shared.schools import create_key, create_school
from shared.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("MARKQ_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("MARKQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped at the end."""
    name = f"markq_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number of the tests' own, emptied before and after."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the markq bucket."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="markq-test")
    yield url
    server.stop()


@pytest.fixture(scope="session")
def loopback() -> Iterator[LoopbackServer]:
    """The project's OpenAI-compatible server on loopback."""
    with LoopbackServer() as server:
        yield server


def loopback_call(server: LoopbackServer, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    base = server.url.removesuffix("/v1")
    reply = httpx.post(base + path, json=body) if body is not None else httpx.get(base + path)
    reply.raise_for_status()
    return reply.json()


@pytest.fixture(scope="session")
def service_env(postgres_url: str, redis_url: str, s3_url: str, loopback: LoopbackServer,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment every markq process of the run shares (API here, worker and beat apart)."""
    env = {
        "MARKQ_HOME": str(tmp_path_factory.mktemp("markq-home")),
        "MARKQ_DATABASE_URL": postgres_url,
        "MARKQ_REDIS_URL": redis_url,
        "MARKQ_STORAGE_BACKEND": "s3",
        "MARKQ_S3_BUCKET": "markq-test",
        "MARKQ_S3_ENDPOINT_URL": s3_url,
        "MARKQ_S3_PUBLIC_ENDPOINT_URL": s3_url,
        "MARKQ_QUEUE_NAME": "markq-test",
        "MARKQ_IMAGE_QUEUE_NAME": "markq-test-images",
        "MARKQ_OCR_QUEUE_NAME": "markq-test-ocr",
        "MARKQ_STUCK_QUEUED_SECONDS": "2",
        "MARKQ_SWEEP_INTERVAL_SECONDS": "1",
        "MARKQ_MAX_ATTEMPTS": "3",
        # the tests' receiver listens on loopback over plain http: allowed here, never by default
        "MARKQ_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "MARKQ_WEBHOOK_ALLOW_PRIVATE": "true",
        "MARKQ_WEBHOOK_ALLOW_HTTP": "true",  # backoff 2 s then 4 s: the give-up test stays short
        "OPENAI_BASE_URL": loopback.url,
        "OPENAI_API_KEY": "sk-loopback",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    os.environ.update(env)
    get_settings.cache_clear()
    return env


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]) -> Settings:
    settings = get_settings()
    upgrade(settings.database_url)
    from shared.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    with transaction(make_session_factory(engine)) as session:
        sync_vocabulary(session)
    engine.dispose()
    return settings


@pytest.fixture(scope="session")
def app(settings: Settings) -> Flask:
    """The API app on the run's PostgreSQL, Redis and S3 server."""
    from api import create_app

    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def live_api(app: Flask) -> Iterator[str]:
    """The API served over real HTTP on a loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


QUEUES = ("MARKQ_QUEUE_NAME", "MARKQ_IMAGE_QUEUE_NAME", "MARKQ_OCR_QUEUE_NAME")


def start_celery(service_env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.main", *args],
        cwd=ROOT, env={**os.environ, **service_env}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def worker(app: Flask, service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Celery worker process consuming every queue from the real Redis, on a thread pool
    as provider calls run in production; yields its node name."""
    name = f"markq-test-{secrets.token_hex(3)}@localhost"
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = start_celery(
        service_env, "worker", "--loglevel=INFO", "--pool=threads", "--concurrency=4", "-n", name,
        "-Q", ",".join(service_env[name] for name in QUEUES), log=log,
    )
    celery_app = app.extensions["celery"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"worker exited: {log.read_text()[-3000:]}")
        if celery_app.control.ping(destination=[name], timeout=1.0):
            break
    else:
        stop_process(process)
        pytest.fail(f"worker did not start: {log.read_text()[-3000:]}")
    yield name
    stop_process(process)


@pytest.fixture(scope="session")
def school_keys(app: Flask) -> dict[str, str]:
    """Two schools, A and B, with one API key each."""
    keys = {}
    with transaction(app.extensions["markq"].sessions) as session:
        for label in ("A", "B"):
            school = create_school(session, f"Test school {label} {secrets.token_hex(3)}")
            keys[label] = create_key(session, school).key
    return keys


@pytest.fixture
def auth(school_keys: dict[str, str]) -> Callable[[str], dict[str, str]]:
    return lambda label="A": {"Authorization": f"Bearer {school_keys[label]}"}


MATH_KEY = {
    "questions": [
        {"id": "1", "answer": "56", "points": 2, "knowledge_points": ["math.g3.multi-digit-multiplication"]},
        {"id": "2", "answer": "3/4", "points": 2, "accepted": ["0.75"], "knowledge_points": ["math.g3.fractions-intro"]},
        {"id": "3", "answer": "24 cm", "points": 3, "knowledge_points": ["math.g3.perimeter"]},
        {"id": "4", "answer": "7 r 2", "points": 3},
    ]
}


def exam_body(**overrides: Any) -> dict[str, Any]:
    return {"title": "Grade 3 unit test", "subject": "math", "grade": 3, "language": "zh",
            "answer_key": MATH_KEY, **overrides}


def page_bytes(text: str | None = None, size: tuple[int, int] = (1240, 1754), fmt: str = "JPEG") -> bytes:
    """A plain page with some marks and `text` written on it (unique by default, so two pages
    are never identical unless a test asks: identical pages are graded once and reused)."""
    image = Image.new("RGB", size, "white")
    for x in range(100, size[0] - 100, 40):
        image.paste((20, 20, 20), (x, 200, x + 20, 220))
    ImageDraw.Draw(image).text((100, 300), text or secrets.token_hex(8), fill=(0, 0, 0),
                               font=ImageFont.load_default(40))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def wait_until_no_paper_is_in_flight(app: Flask, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.extensions["markq"].sessions() as session:
            busy = session.scalar(select(func.count()).select_from(Paper).join(Exam, Exam.id == Paper.exam_id).where(
                Paper.status.in_([PaperStatus.queued, PaperStatus.processing]),
                Exam.priority != "economy"))  # economy papers wait for a batch on purpose
        if busy == 0:
            return
        time.sleep(0.2)
    pytest.fail("papers still in flight")


@pytest.fixture
def idle(worker: str, app: Flask) -> str:
    """The worker with nothing in flight, so the loopback counters measure this test alone."""
    wait_until_no_paper_is_in_flight(app)
    return worker


def queued_messages(settings: Settings) -> int:
    """Messages waiting in the markq queues."""
    broker = redis.Redis.from_url(settings.redis_url)
    return int(sum(broker.llen(queue) for queue in queue_names(settings)))


def queue_names(settings: Settings) -> tuple[str, str, str]:
    return settings.queue_name, settings.image_queue_name, settings.ocr_queue_name


def pause_consuming(app: Flask, settings: Settings, worker: str) -> None:
    for queue in queue_names(settings):
        app.extensions["celery"].control.cancel_consumer(queue, destination=[worker], reply=True)


def resume_consuming(app: Flask, settings: Settings, worker: str) -> None:
    for queue in queue_names(settings):
        app.extensions["celery"].control.add_consumer(queue, destination=[worker], reply=True)
