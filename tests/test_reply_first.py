"""A paid reply is never lost and never paid twice: faults right after the provider answered.

Each test runs a Celery worker of its own whose PostgreSQL, Redis and S3 traffic passes through
loopback fault proxies, against a loopback OpenAI server of its own (latency 1.5 s, so a fault
can be put in place while the call is at the provider). Each asserts one provider call, one usage
row at the real price, and a graded paper.
"""

from __future__ import annotations

import io
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from celery import Celery
from sqlalchemy import select

from loopback.proxy import FaultProxy
from loopback.server import LoopbackServer
from shared.db import make_engine, make_session_factory, transaction
from shared.grading import lanes
from shared.grading.exams import create_exam
from shared.intake.submission import UploadedPage, check_pages, submit_paper
from shared.models import Paper, PaperStatus, Usage
from shared.schools import create_school
from shared.settings import Settings
from shared.spending.costs import call_cost
from shared.storage import make_storage
from tests.helpers import MATH_KEY, page_bytes, start_celery, stop_process, wait_until
from worker.celery_app import celery_config

pytestmark = pytest.mark.integration

PROVIDER_TIMEOUT = 8.0
SWEEP_INTERVAL = 1.0
LATENCY_MS = 1500


def _through(proxy: FaultProxy, url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(
        netloc=parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    ).geturl()


@dataclass
class FaultRig:
    """A worker and beat that reach PostgreSQL, Redis and S3 only through fault proxies."""

    env: dict[str, str]
    settings: Settings
    postgres: FaultProxy
    redis: FaultProxy
    s3: FaultProxy
    provider: LoopbackServer
    logs: Path
    worker: subprocess.Popen[bytes] | None = None
    worker_name: str = ""
    beat: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        name = self.worker_name = f"markq-faults-{secrets.token_hex(3)}@localhost"
        self.worker = start_celery(
            self.env,
            "worker",
            "--loglevel=INFO",
            "--pool=threads",
            "--concurrency=2",
            "-n",
            name,
            "-Q",
            ",".join(self._queues()),
            log=self.logs / f"worker-{name.split('@')[0]}.log",
        )

    def start_beat(self) -> None:
        self.beat = start_celery(
            self.env, "beat", "--loglevel=INFO", "-s", str(self.logs / "beat-schedule"), log=self.logs / "beat.log"
        )

    def answers(self, within: float) -> bool:
        """Whether the worker answers a ping through the broker (it is consuming) within `within` s."""
        app = Celery(broker=self.settings.redis_url)
        app.config_from_object(celery_config(self.settings))
        control = app.control
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.worker is None or self.worker.poll() is not None:
                return False
            if control.ping(destination=[self.worker_name], timeout=1.0):
                return True
        return False

    def ready_worker(self) -> None:
        """A worker consuming the rig's queues before a test: the one running, or a new one in place
        of one the last fault left dead, dying or not connected to the broker."""
        if self.answers(10.0):
            return
        if self.worker is not None:
            self.kill_worker()
        self.start_worker()
        assert self.answers(90.0), "a new worker did not start consuming"

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()
        self.worker = None

    def _queues(self) -> tuple[str, str, str]:
        return self.settings.queue_names

    def calls(self) -> int:
        return self.provider.state.stats["completions"]

    def requests_arrived(self) -> int:
        return self.provider.state.stats["requests"]


@pytest.fixture(scope="module")
def rig(
    settings: Settings, service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultRig]:
    db, broker, s3 = (urlsplit(u) for u in (settings.database_url, settings.redis_url, settings.s3_endpoint_url or ""))
    provider = LoopbackServer().start()
    proxies = [FaultProxy(p.hostname or "127.0.0.1", p.port or 0).start() for p in (db, broker, s3)]
    postgres, redis_proxy, s3_proxy = proxies
    direct = {
        "MARKQ_QUEUE_NAME": "markq-faults",
        "MARKQ_IMAGE_QUEUE_NAME": "markq-faults-images",
        "MARKQ_OCR_QUEUE_NAME": "markq-faults-ocr",
        "MARKQ_REDIS_URL": settings.redis_url.rsplit("/", 1)[0] + "/11",
        "MARKQ_PROVIDER_TIMEOUT_SECONDS": str(PROVIDER_TIMEOUT),
        "MARKQ_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL),
        "MARKQ_STUCK_QUEUED_SECONDS": "30",
        "MARKQ_MAX_ATTEMPTS": "5",
        "MARKQ_LIMITER_ENABLED": "true",
        "OPENAI_BASE_URL": provider.url,
    }
    env = {
        **service_env,
        **direct,
        "MARKQ_DATABASE_URL": _through(postgres, settings.database_url),
        "MARKQ_REDIS_URL": _through(redis_proxy, direct["MARKQ_REDIS_URL"]),
        "MARKQ_S3_ENDPOINT_URL": _through(s3_proxy, settings.s3_endpoint_url or ""),
    }
    rig = FaultRig(
        env=env,
        settings=Settings(**{k.removeprefix("MARKQ_").lower(): v for k, v in direct.items() if k.startswith("MARKQ_")}),
        postgres=postgres,
        redis=redis_proxy,
        s3=s3_proxy,
        provider=provider,
        logs=tmp_path_factory.mktemp("faults"),
    )
    rig.start_worker()
    rig.start_beat()
    yield rig
    for process in (rig.worker, rig.beat):
        if process is not None:
            stop_process(process)
    for proxy in proxies:
        proxy.stop()
    provider.stop()


@pytest.fixture
def fresh(rig: FaultRig) -> FaultRig:
    """Every proxy passing, the provider slow enough to put a fault in place mid-call."""
    for proxy in (rig.postgres, rig.redis, rig.s3):
        proxy.restore()
    rig.provider.state.reset()
    rig.provider.state.latency_ms = (LATENCY_MS, LATENCY_MS)
    # a worker the last test's fault brought down (Celery can stop on a lost broker connection)
    # would leave this test's paper for the next one's worker: never start with one
    rig.ready_worker()
    return rig


def submit(rig: FaultRig, settings: Settings) -> uuid.UUID:
    """A one-page paper of a new vision exam, committed and queued on the rig's queues."""
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    storage = make_storage(settings)
    with transaction(sessions) as session:
        school = create_school(session, f"Fault school {secrets.token_hex(3)}")
        exam = create_exam(
            session,
            school,
            {
                "title": "fault",
                "subject": "math",
                "grade": 3,
                "language": "zh",
                "answer_key": MATH_KEY,
                "rubric": "",
                "model": "gpt-4o",
                "image_detail": "high",
                "provider": "vision",
            },
        )
    pages, headers = check_pages(
        [UploadedPage(io.BytesIO(page_bytes()), "p1.jpg")], max_bytes=10_000_000, max_pixels=40_000_000, max_pages=20
    )
    with sessions() as session:
        paper = submit_paper(session, storage, exam, student_ref="s1", class_label="3A", pages=pages, headers=headers)
        step = lanes.step_for(session, paper.id)
    broker = Celery(broker=rig.settings.redis_url)
    broker.config_from_object(celery_config(rig.settings))
    from worker.base import STEP_TASKS

    broker.send_task(STEP_TASKS[step], args=(str(paper.id),))
    engine.dispose()
    return paper.id


def usage_and_status(settings: Settings, paper_id: uuid.UUID) -> tuple[list[Usage], PaperStatus]:
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        rows = list(session.scalars(select(Usage).where(Usage.paper_id == paper_id)))
        status = session.get_one(Paper, paper_id).status
    engine.dispose()
    return rows, status


def assert_paid_once(rig: FaultRig, settings: Settings, paper_id: uuid.UUID) -> None:
    def graded() -> bool:
        return usage_and_status(settings, paper_id)[1] in (PaperStatus.graded, PaperStatus.needs_review)

    wait_until(graded, timeout=90, what="the paper graded")
    rows, _ = usage_and_status(settings, paper_id)
    assert rig.calls() == 1, "the provider was called more than once"
    assert len(rows) == 1, [(r.outcome, r.cost_usd) for r in rows]
    usage = rows[0]
    assert usage.outcome == "ok" and usage.prompt_tokens > 0
    assert usage.cost_usd == call_cost("gpt-4o", usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)
    assert usage.cost_usd > Decimal(0)


def at_the_provider(rig: FaultRig) -> None:
    wait_until(lambda: rig.requests_arrived() >= 1, timeout=60, every=0.05, what="the call at the provider")


def reply_stored(settings: Settings, paper_id: uuid.UUID) -> bool:
    return any(r.outcome == "replied" for r in usage_and_status(settings, paper_id)[0])


def test_a_reply_paid_for_is_recorded_after_the_worker_is_killed(fresh: FaultRig, settings: Settings) -> None:
    paper_id = submit(fresh, settings)
    at_the_provider(fresh)
    fresh.s3.hang()  # the reply arrives, is stored, and archiving it hangs
    wait_until(lambda: reply_stored(settings, paper_id), timeout=30, every=0.05, what="the reply stored")
    fresh.kill_worker()
    killed_at = time.monotonic()
    fresh.s3.restore()
    fresh.start_worker()
    assert_paid_once(fresh, settings, paper_id)
    assert time.monotonic() - killed_at <= PROVIDER_TIMEOUT + 2 * SWEEP_INTERVAL + 20  # + a worker's start-up


def test_a_reply_paid_for_is_recorded_when_redis_goes_away_right_after_the_call(
    fresh: FaultRig, settings: Settings
) -> None:
    paper_id = submit(fresh, settings)
    at_the_provider(fresh)
    fresh.redis.refuse()
    time.sleep(LATENCY_MS / 1000 + 2.0)  # the reply comes back while Redis is away
    fresh.redis.restore()
    assert_paid_once(fresh, settings, paper_id)


def test_a_reply_paid_for_is_recorded_when_storage_goes_away_right_after_the_call(
    fresh: FaultRig, settings: Settings
) -> None:
    paper_id = submit(fresh, settings)
    at_the_provider(fresh)
    fresh.s3.refuse()
    wait_until(lambda: reply_stored(settings, paper_id), timeout=30, every=0.05, what="the reply stored")
    time.sleep(3.0)  # archiving fails at least once
    fresh.s3.restore()
    assert_paid_once(fresh, settings, paper_id)


def test_a_reply_paid_for_is_recorded_when_the_database_fails_the_first_recording(
    fresh: FaultRig, settings: Settings
) -> None:
    paper_id = submit(fresh, settings)
    at_the_provider(fresh)
    fresh.postgres.refuse()
    time.sleep(LATENCY_MS / 1000 + 2.0)  # the reply comes back; storing it fails, and is tried again
    fresh.postgres.restore()
    assert_paid_once(fresh, settings, paper_id)


def test_the_sweep_takes_back_a_paper_whose_worker_died_mid_call_within_the_bound(
    fresh: FaultRig, settings: Settings
) -> None:
    fresh.provider.state.latency_ms = (4000, 4000)
    paper_id = submit(fresh, settings)
    at_the_provider(fresh)
    fresh.kill_worker()  # the call completes at the provider, unread
    killed_at = time.monotonic()
    fresh.start_worker()

    def claimed_again() -> bool:
        return fresh.requests_arrived() >= 2

    wait_until(
        claimed_again, timeout=PROVIDER_TIMEOUT + 2 * SWEEP_INTERVAL + 30, every=0.1, what="the paper called again"
    )
    took = time.monotonic() - killed_at
    bound = PROVIDER_TIMEOUT + 2 * SWEEP_INTERVAL
    assert took <= bound + 3.0, f"taken back after {took:.1f} s; the bound is {bound:.0f} s"
    wait_until(
        lambda: usage_and_status(settings, paper_id)[1] in (PaperStatus.graded, PaperStatus.needs_review),
        timeout=60,
        what="the paper graded",
    )
    rows, _ = usage_and_status(settings, paper_id)
    # the lost call stays in the ledger at its worst case (it may have been billed), never as free
    assert sorted(r.outcome for r in rows) == ["abandoned", "ok"]
