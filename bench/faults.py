"""Faults: nothing lost, nothing paid twice, whatever breaks.

    python -m bench.faults                 # every case
    python -m bench.faults --profile ci    # the short profile the tests run

Starts the real processes: the API (gunicorn, as the Dockerfile runs it), a worker on every queue,
beat, and PostgreSQL, a Redis database of its own and an S3 server (moto) each reached only through
a fault proxy that can refuse or hang (loopback/proxy.py), against the loopback OpenAI-compatible
server (latency, 401, 429, 500, quota, cut or off-schema replies). Then, one case after another,
submits papers, puts a fault in place, takes it away, and waits for every paper to end.

For each case it prints papers lost (accepted, never marked), paid replies lost (answered by the
provider but recorded nowhere in the ledger), extra provider calls (answered calls beyond one a
paper), and the seconds from the fault's end until every paper was marked. A case passes with no
paper and no paid reply lost, at most one extra call (none where the fault came after the reply
arrived), and recovery within its bound (for a dead worker: the provider timeout plus two sweep
intervals). The last line is one JSON object with the totals.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import psycopg
import redis
from moto.server import ThreadedMotoServer
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from bench.throughput import ADMIN_URL, KEY, free_port, fresh_database
from loopback.proxy import FaultProxy
from loopback.server import LoopbackServer, LoopbackState
from shared.db import make_engine, make_session_factory, transaction
from shared.models import Paper, PaperStatus, Usage
from shared.schools import create_key, create_school

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("MARKQ_FAULTS_REDIS_URL", "redis://127.0.0.1:6379/11")
PROVIDER_TIMEOUT = 8.0
SWEEP_INTERVAL = 1.0
STUCK_QUEUED = 5
LATENCY_S = 1.5
# Recorded in the ledger: a call the provider answered, whatever became of it.
PAID = ("ok", "replied", "invalid_reply", "unknown", "abandoned")
FINAL = (PaperStatus.graded, PaperStatus.needs_review)


def a_page(n: int) -> bytes:
    """A small unique page (unique, or markq would rightly reuse an earlier paper's result)."""
    image = Image.new("L", (800, 1000), 255)
    ImageDraw.Draw(image).text((60, 80), f"{n} x 7 = {n * 7}", fill=0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _through(proxy: FaultProxy, url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(
        netloc=parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    ).geturl()


class Rig:
    """The processes, each reaching PostgreSQL, Redis and S3 through a fault proxy."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.db_name, self.db_url = fresh_database("markq_faults")
        self.engine = make_engine(self.db_url)
        self.sessions = make_session_factory(self.engine)
        self.broker = redis.Redis.from_url(REDIS_URL)
        self.broker.flushdb()
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        s3_url = f"http://{host}:{port}"
        self.s3_direct = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
        self.s3_direct.create_bucket(Bucket="markq")
        self.provider = LoopbackServer(state=LoopbackState()).start()
        db, broker, s3 = (urlsplit(u) for u in (self.db_url, REDIS_URL, s3_url))
        self.postgres, self.redis, self.s3 = (
            FaultProxy(p.hostname or "127.0.0.1", p.port or 0).start() for p in (db, broker, s3)
        )
        self.env = {
            **os.environ,
            "MARKQ_HOME": str(home),
            "MARKQ_DATABASE_URL": _through(self.postgres, self.db_url),
            "MARKQ_REDIS_URL": _through(self.redis, REDIS_URL),
            "MARKQ_STORAGE_BACKEND": "s3",
            "MARKQ_S3_BUCKET": "markq",
            "MARKQ_S3_ENDPOINT_URL": _through(self.s3, s3_url),
            "MARKQ_QUEUE_NAME": "faults-calls",
            "MARKQ_IMAGE_QUEUE_NAME": "faults-images",
            "MARKQ_OCR_QUEUE_NAME": "faults-ocr",
            "MARKQ_PROVIDER_TIMEOUT_SECONDS": str(PROVIDER_TIMEOUT),
            "MARKQ_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL),
            "MARKQ_STUCK_QUEUED_SECONDS": str(STUCK_QUEUED),
            "MARKQ_MAX_ATTEMPTS": "5",
            "OPENAI_BASE_URL": self.provider.url,
            "OPENAI_API_KEY": "sk-loopback",
        }
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self.start(
            "api",
            [
                gunicorn,
                "-b",
                f"127.0.0.1:{port}",
                "-k",
                "gthread",
                "-w",
                "2",
                "--threads",
                "4",
                "--timeout",
                "120",
                "api.wsgi:app",
            ],
        )
        self.start_worker()
        self.start("beat", [*self._celery(), "beat", "--loglevel=INFO", "-s", str(home / "beat-schedule")])
        self._wait(lambda: self._answers("/healthz"), 60, "the API")
        with transaction(self.sessions) as session:
            self.key = create_key(session, create_school(session, "faults")).key
        self.headers = {"Authorization": f"Bearer {self.key}"}
        self.pages = 0

    def _celery(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "worker.main"]

    def start(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def start_worker(self) -> None:
        name = f"faults-{secrets.token_hex(3)}@localhost"
        self.start(
            "worker",
            [
                *self._celery(),
                "worker",
                "--loglevel=INFO",
                "--pool=threads",
                "--concurrency=4",
                "-n",
                name,
                "-Q",
                "faults-calls,faults-images,faults-ocr",
            ],
        )
        log = self.logs / "worker.log"
        self._wait(lambda: f"{name} ready." in log.read_text(errors="replace"), 60, "the worker")

    def signal_worker(self, sig: signal.Signals, wait: bool = True) -> None:
        worker = self.processes.pop("worker")
        worker.send_signal(sig)
        if wait:
            worker.wait(timeout=PROVIDER_TIMEOUT + 30)

    def _answers(self, path: str) -> bool:
        try:
            return httpx.get(self.api_url + path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{what}: not within {timeout} s")

    def exam(self, title: str) -> str:
        reply = httpx.post(
            f"{self.api_url}/v1/exams",
            headers=self.headers,
            timeout=30,
            json={"title": title, "subject": "math", "grade": 2, "language": "en", "answer_key": KEY},
        )
        reply.raise_for_status()
        return reply.json()["id"]

    def submit(self, exam_id: str, timeout: float = 60) -> httpx.Response:
        self.pages += 1
        return httpx.post(
            f"{self.api_url}/v1/exams/{exam_id}/papers",
            headers=self.headers,
            timeout=timeout,
            data={"student_ref": f"s{self.pages}"},
            files=[("pages", ("p.jpg", a_page(self.pages), "image/jpeg"))],
        )

    def why_not_marked(self, exam_id: str) -> list[str]:
        with self.sessions() as session:
            rows = session.execute(
                select(Paper.status, Paper.status_reason, Paper.attempts).where(
                    Paper.exam_id == exam_id, Paper.status.notin_(FINAL)
                )
            )
            return [
                f"{status.value} after {attempts} attempts: {(reason or '')[:160]}" for status, reason, attempts in rows
            ]

    def papers(self, exam_id: str) -> list[tuple[str, PaperStatus]]:
        with self.sessions() as session:
            return [
                (str(i), s) for i, s in session.execute(select(Paper.id, Paper.status).where(Paper.exam_id == exam_id))
            ]

    def paid(self, exam_id: str) -> int:
        with self.sessions() as session:
            return session.scalar(
                select(func.count())
                .select_from(Usage)
                .join(Paper, Paper.id == Usage.paper_id)
                .where(Paper.exam_id == exam_id, Usage.outcome.in_(PAID))
            )

    def stored_objects(self) -> int:
        return self.s3_direct.list_objects_v2(Bucket="markq").get("KeyCount", 0)

    def completions(self) -> int:
        return self.provider.state.stats["completions"]

    def arrived(self) -> int:
        return self.provider.state.stats["requests"]

    def restore(self) -> None:
        for proxy in (self.postgres, self.redis, self.s3):
            proxy.restore()
        self.provider.state.reset()
        self.provider.state.latency_ms = (int(LATENCY_S * 1000), int(LATENCY_S * 1000))
        if "worker" not in self.processes or self.processes["worker"].poll() is not None:
            self.start_worker()

    def close(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for proxy in (self.postgres, self.redis, self.s3):
            proxy.stop()
        self.provider.stop()
        self.moto.stop()
        self.engine.dispose()
        self.broker.flushdb()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


@dataclass
class Outcome:
    case: str
    papers: int
    papers_lost: int
    paid_lost: int
    extra_calls: int
    recovery_seconds: float
    bound_seconds: float
    extra_allowed: int
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            self.papers_lost == 0
            and self.paid_lost == 0
            and self.extra_calls <= self.extra_allowed
            and self.recovery_seconds <= self.bound_seconds
            and not [n for n in self.notes if n.startswith("FAIL")]
        )


def settle(
    rig: Rig,
    case: str,
    exam_id: str,
    recovered_from: float,
    *,
    bound: float,
    extra_allowed: int,
    notes: list[str] | None = None,
) -> Outcome:
    """Wait (up to the bound and a minute more) for every accepted paper of the exam to end; count."""
    deadline = time.monotonic() + bound + 60
    while time.monotonic() < deadline and not all(s in FINAL for _i, s in rig.papers(exam_id)):
        time.sleep(0.2)
    recovered = time.monotonic() - recovered_from
    papers = rig.papers(exam_id)
    time.sleep(1.0)  # a call still in flight would show in the counts
    calls = rig.completions()  # the provider's counts start at 0 for every case
    notes = [*(notes or []), *rig.why_not_marked(exam_id)]
    return Outcome(
        case=case,
        papers=len(papers),
        papers_lost=sum(1 for _i, s in papers if s not in FINAL),
        paid_lost=max(0, calls - rig.paid(exam_id)),
        extra_calls=max(0, calls - len(papers)),
        recovery_seconds=round(recovered, 1),
        bound_seconds=bound,
        extra_allowed=extra_allowed,
        notes=notes,
    )


def mid_call(rig: Rig) -> None:
    rig._wait(lambda: rig.arrived() >= 1, 60, "the call at the provider")


def after_reply(rig: Rig) -> None:
    """Just after the provider answered (its latency): the reply is on its way back."""
    mid_call(rig)
    time.sleep(LATENCY_S + 0.05)


DEAD_WORKER_BOUND = PROVIDER_TIMEOUT + 2 * SWEEP_INTERVAL + 15  # plus a worker's start-up


def case_worker_killed_mid_call(rig: Rig) -> Outcome:
    exam = rig.exam("SIGKILL")
    rig.submit(exam).raise_for_status()
    mid_call(rig)
    rig.signal_worker(signal.SIGKILL)
    killed = time.monotonic()
    rig.start_worker()
    return settle(rig, "worker SIGKILL mid-call", exam, killed, bound=DEAD_WORKER_BOUND, extra_allowed=1)


def case_worker_killed_after_the_reply(rig: Rig) -> Outcome:
    exam = rig.exam("SIGKILL after the reply")
    rig.submit(exam).raise_for_status()
    mid_call(rig)
    rig.s3.hang()  # the reply arrives, is stored first, and archiving it hangs: kill it there
    rig._wait(lambda: rig.paid(exam) >= 1, 30, "the reply stored")
    rig.signal_worker(signal.SIGKILL)
    killed = time.monotonic()
    rig.s3.restore()
    rig.start_worker()
    return settle(rig, "worker SIGKILL after the reply", exam, killed, bound=DEAD_WORKER_BOUND, extra_allowed=0)


def case_worker_stopped_mid_call(rig: Rig) -> Outcome:
    exam = rig.exam("SIGTERM")
    rig.submit(exam).raise_for_status()
    mid_call(rig)
    rig.signal_worker(signal.SIGTERM)  # a warm shutdown: the call it holds is finished first
    stopped = time.monotonic()
    rig.start_worker()
    return settle(rig, "worker SIGTERM mid-call", exam, stopped, bound=DEAD_WORKER_BOUND, extra_allowed=0)


def case_redis_restarted_empty(rig: Rig) -> Outcome:
    rig.signal_worker(signal.SIGTERM)
    exam = rig.exam("Redis emptied")
    for _ in range(3):
        rig.submit(exam).raise_for_status()
    rig.redis.refuse()
    rig.broker.flushdb()  # every queued message gone, as after a restart without persistence
    rig.redis.restore()
    emptied = time.monotonic()
    rig.start_worker()
    return settle(
        rig, "Redis restarted empty", exam, emptied, bound=STUCK_QUEUED + 3 * SWEEP_INTERVAL + 20, extra_allowed=0
    )


def case_storage_at_intake(rig: Rig, hang: bool) -> Outcome:
    exam = rig.exam("storage at intake")
    objects = rig.stored_objects()
    (rig.s3.hang if hang else rig.s3.refuse)()
    started = time.monotonic()
    try:
        reply = rig.submit(exam, timeout=150)
        status, body = reply.status_code, reply.text
    except httpx.HTTPError as exc:
        status, body = 0, str(exc)
    answered = time.monotonic() - started
    rig.s3.restore()
    notes = [f"intake answered {status} in {answered:.1f} s"]
    if status != 503 or '"storage_unavailable"' not in body:
        notes.append(f"FAIL: expected a 503 storage_unavailable, got {status}")
    if answered > 35:
        notes.append("FAIL: the API was held past gunicorn's 30 s")
    left = rig.stored_objects() - objects
    if left or rig.papers(exam):
        notes.append(f"FAIL: left {left} objects and {len(rig.papers(exam))} papers behind")
    restored = time.monotonic()
    rig.submit(exam).raise_for_status()  # the teacher sends it again
    name = "storage hanging at intake" if hang else "storage refused at intake"
    return settle(rig, name, exam, restored, bound=30, extra_allowed=0, notes=notes)


def case_gone_while_normalising(rig: Rig, name: str, proxy: FaultProxy, outage: float) -> Outcome:
    """A service away for `outage` seconds while papers wait to be normalised: the worker meets
    the refusal, backs off (not counting an attempt) and tries again until it is back."""
    rig.signal_worker(signal.SIGTERM)
    exam = rig.exam(name)
    for _ in range(2):
        rig.submit(exam).raise_for_status()
    proxy.refuse()
    rig.start_worker()
    time.sleep(outage)
    proxy.restore()
    restored = time.monotonic()
    # the last backoff before it came back can be a minute long
    outcome = settle(rig, f"{name} ({outage:.0f} s)", exam, restored, bound=75, extra_allowed=0)
    if f"[exam {exam}]" not in (rig.logs / "worker.log").read_text(errors="replace"):
        outcome.notes.append("FAIL: the worker's log lines about it do not name its exam")
    return outcome


def case_after_the_call(rig: Rig, name: str, proxy: FaultProxy, outage: float) -> Outcome:
    exam = rig.exam(name)
    rig.submit(exam).raise_for_status()
    after_reply(rig)
    proxy.refuse()
    time.sleep(outage)
    proxy.restore()
    restored = time.monotonic()
    return settle(rig, name, exam, restored, bound=DEAD_WORKER_BOUND + 30, extra_allowed=0)


def case_provider(
    rig: Rig,
    name: str,
    faults: list[dict],
    *,
    resume: bool = False,
    extra: int = 0,
    replies: list | None = None,
    latency_s: float | None = None,
) -> Outcome:
    exam = rig.exam(name)
    rig.provider.state.faults.extend(faults)
    if replies:
        rig.provider.state.replies.extend(replies)
    if latency_s is not None:
        rig.provider.state.latency_ms = (int(latency_s * 1000), int(latency_s * 1000))
    rig.submit(exam).raise_for_status()
    notes = []
    if resume:  # the operator fixes the key or tops up, then resumes the paused exam
        rig._wait(lambda: any(s == PaperStatus.paused for _i, s in rig.papers(exam)), 60, "the exam paused")
        notes.append("paused, then resumed")
        httpx.post(f"{rig.api_url}/v1/exams/{exam}/resume", headers=rig.headers, timeout=30).raise_for_status()
    if latency_s is not None:
        mid_call(rig)
        rig.provider.state.latency_ms = (int(LATENCY_S * 1000), int(LATENCY_S * 1000))
    started = time.monotonic()
    return settle(rig, name, exam, started, bound=90, extra_allowed=extra, notes=notes)


def case_duplicate_delivery(rig: Rig) -> Outcome:
    from celery import Celery

    from shared.settings import Settings
    from worker.celery_app import celery_config

    rig.signal_worker(signal.SIGTERM)
    exam = rig.exam("duplicate delivery")
    rig.submit(exam).raise_for_status()
    [(paper_id, _status)] = rig.papers(exam)
    settings = Settings(
        redis_url=REDIS_URL, queue_name="faults-calls", image_queue_name="faults-images", ocr_queue_name="faults-ocr"
    )
    broker = Celery(broker=REDIS_URL)
    broker.config_from_object(celery_config(settings))
    broker.send_task("markq.normalise_paper", args=(paper_id,))  # the same message twice
    rig.start_worker()
    started = time.monotonic()
    return settle(rig, "duplicate delivery", exam, started, bound=30, extra_allowed=0)


def cases(rig: Rig, profile: str, only: set[str] | None = None) -> list[Callable[[], Outcome]]:
    outage = 60.0 if profile == "full" else 10.0  # "a service gone for a minute"
    quota = {"status": 429, "type": "insufficient_quota", "code": "insufficient_quota", "message": "quota"}
    key = {"status": 401, "type": "invalid_request_error", "code": "invalid_api_key", "message": "Incorrect API key"}
    storm = [
        {
            "status": 429,
            "type": "requests",
            "code": "rate_limit_exceeded",
            "message": "slow down",
            "headers": {"retry-after": "1"},
        }
    ] * 8
    every: list[tuple[str, Callable[[], Outcome]]] = [
        ("kill", lambda: case_worker_killed_mid_call(rig)),
        ("kill-after", lambda: case_worker_killed_after_the_reply(rig)),
        ("term", lambda: case_worker_stopped_mid_call(rig)),
        ("redis", lambda: case_redis_restarted_empty(rig)),
        ("intake-refused", lambda: case_storage_at_intake(rig, hang=False)),
        ("intake-hang", lambda: case_storage_at_intake(rig, hang=True)),
        ("normalise", lambda: case_gone_while_normalising(rig, "storage gone while normalising", rig.s3, outage)),
        ("db-gone", lambda: case_gone_while_normalising(rig, "database gone while normalising", rig.postgres, 60)),
        ("s3-after", lambda: case_after_the_call(rig, "storage refused right after the call", rig.s3, 5)),
        ("redis-after", lambda: case_after_the_call(rig, "Redis refused right after the call", rig.redis, 5)),
        ("db-after", lambda: case_after_the_call(rig, "database refused right after the call", rig.postgres, 5)),
        ("401", lambda: case_provider(rig, "provider 401 (key rotated)", [key], resume=True)),
        ("429", lambda: case_provider(rig, "provider 429 storm", storm)),
        ("500", lambda: case_provider(rig, "provider 500s", [{"status": 500, "message": "boom"}] * 3)),
        ("timeout", lambda: case_provider(rig, "provider timeout", [], extra=1, latency_s=PROVIDER_TIMEOUT + 3)),
        ("malformed", lambda: case_provider(rig, "malformed reply", [], extra=1, replies=['{"questions": {'])),
        (
            "off-schema",
            lambda: case_provider(
                rig, "schema-invalid reply", [], extra=1, replies=[json.dumps({"questions": {"1": {"answer": 3}}})]
            ),
        ),
        ("quota", lambda: case_provider(rig, "provider quota", [quota], resume=True)),
        ("duplicate", lambda: case_duplicate_delivery(rig)),
    ]
    # The tests run the cases no other test covers (tests/test_reply_first.py and
    # tests/test_grading_end_to_end.py cover the rest, each on its own, Redis emptied included).
    short = {"term", "intake-refused", "normalise"}
    if only:
        return [run for name, run in every if name in only]
    return [run for name, run in every if profile == "full" or name in short]


def run(profile: str, only: set[str] | None = None) -> dict:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request lines
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="markq-faults-") as home:
        rig = Rig(Path(home))
        try:
            for case in cases(rig, profile, only):
                rig.restore()
                try:
                    outcome = case()
                except Exception as exc:  # a case that breaks is a failed row, not the end of the run
                    outcome = Outcome(getattr(case, "__name__", "case"), 0, 0, 0, 0, 0.0, 0.0, 0, [f"FAIL: {exc!r}"])
                outcomes.append(outcome)
                print(
                    f"{outcome.case:40} papers {outcome.papers}  lost {outcome.papers_lost}  paid lost "
                    f"{outcome.paid_lost}  extra calls {outcome.extra_calls}/{outcome.extra_allowed}  recovered in "
                    f"{outcome.recovery_seconds:5.1f} s (bound {outcome.bound_seconds:.0f})  "
                    f"{'PASS' if outcome.passed else 'FAIL'}  {'; '.join(outcome.notes)}",
                    flush=True,
                )
        finally:
            rig.close()
    return {
        "profile": profile,
        "cases": len(outcomes),
        "passed": sum(o.passed for o in outcomes),
        "papers_lost": sum(o.papers_lost for o in outcomes),
        "paid_replies_lost": sum(o.paid_lost for o in outcomes),
        "extra_calls": sum(o.extra_calls for o in outcomes),
        "all_passed": all(o.passed for o in outcomes),
        "rows": [o.__dict__ | {"passed": o.passed} for o in outcomes],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="markq under faults: papers and paid replies lost, extra calls")
    parser.add_argument("--profile", choices=("full", "ci"), default="full")
    parser.add_argument("--case", action="append", help="Only this case (kill, term, redis, ...); again for more.")
    args = parser.parse_args()
    summary = run(args.profile, set(args.case or ()) or None)
    print(f"{summary['passed']} of {summary['cases']} cases passed")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
