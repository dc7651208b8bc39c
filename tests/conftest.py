"""Fixtures: real PostgreSQL, Redis, an S3 server (moto) and the loopback OpenAI server on loopback.

Each run makes its own PostgreSQL database and uses its own Redis database number, so runs
never see each other's data.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator

import boto3
import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from loopback.server import LoopbackServer, _QuietHandler
from shared.db import transaction
from shared.migrate import migrate
from shared.schools import create_key, create_school
from shared.settings import Settings, get_settings
from tests.helpers import (
    PG_ADMIN_URL,
    QUEUES,
    REDIS_TEST_URL,
    start_celery,
    stop_process,
    wait_until,
    wait_until_no_paper_is_in_flight,
)


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


@pytest.fixture(scope="session")
def service_env(
    postgres_url: str, redis_url: str, s3_url: str, loopback: LoopbackServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The environment every markq process of the run shares (API here, worker and beat apart)."""
    with socket.socket() as probe:  # the live API's port, known before the app is built: share
        probe.bind(("127.0.0.1", 0))  # links are made on the public address, as in production
        api_port = probe.getsockname()[1]
    env = {
        "MARKQ_HOME": str(tmp_path_factory.mktemp("markq-home")),
        "MARKQ_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        "MARKQ_METRICS_TOKEN": "metrics-token-for-tests",
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
        "MARKQ_FLEX_RETRY_SECONDS": "0.5",
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
    """The run's settings, with the schema migrated to the newest revision."""
    settings = get_settings()
    migrate(settings.database_url)
    return settings


@pytest.fixture(scope="session")
def app(settings: Settings) -> Flask:
    """The API app on the run's PostgreSQL, Redis and S3 server."""
    from api import create_app

    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A Flask test client of the API app."""
    return app.test_client()


@pytest.fixture(scope="session")
def live_api(app: Flask) -> Iterator[str]:
    """The API served over real HTTP on a loopback port."""
    port = int(app.extensions["markq"].settings.public_base_url.rsplit(":", 1)[1])
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def worker(app: Flask, service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Celery worker (thread pool, as in production) on every queue; yields its node name."""
    name = f"markq-test-{secrets.token_hex(3)}@localhost"
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = start_celery(
        service_env,
        "worker",
        "--loglevel=INFO",
        "--pool=threads",
        "--concurrency=4",
        "-n",
        name,
        "-Q",
        ",".join(service_env[name] for name in QUEUES),
        log=log,
    )
    celery_app = app.extensions["celery"]

    def answers_a_ping() -> object:
        if process.poll() is not None:
            pytest.fail(f"worker exited: {log.read_text()[-3000:]}")
        return celery_app.control.ping(destination=[name], timeout=1.0)

    if not wait_until(answers_a_ping, timeout=60, every=0, fail=False):  # the ping itself waits up to 1 s
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
    """Headers with school `label`'s API key: auth("A") or auth("B")."""
    return lambda label="A": {"Authorization": f"Bearer {school_keys[label]}"}


@pytest.fixture
def idle(worker: str, app: Flask) -> str:
    """The worker with nothing in flight, so the loopback counters measure this test alone."""
    wait_until_no_paper_is_in_flight(app)
    return worker
