"""Throughput at the provider's rate limit: markq's shared limiter against a naive baseline.

    python -m bench.throughput            # 300 papers, 300 RPM / 150,000 TPM, 200-800 ms latency
    python -m bench.throughput --profile ci

Both runs use the real API (gunicorn), Redis, PostgreSQL, a calls worker on a thread pool and an
images worker, against the loopback OpenAI-compatible server enforcing the limits. The naive
baseline uses the same workers with no shared limiter and the SDK's default retries.

Both the provider's buckets and markq's start full, so no client can finish N papers sooner than
T_min = 60 * max(N / rpm - 1, N * tokens_per_paper / tpm - 1) seconds: the burst, then the refill
at the limit. The ratio printed is T_min over the time the run took, which is the run's papers per
minute over the most the limits allow. Tokens per paper are measured (prompt + completion, as the
limit charges them once the reply is in). Target: at least 0.9 with at most 2% of requests
answered 429. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psycopg
import redis
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import func, select

from loopback.server import LoopbackServer, LoopbackState
from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import migrate
from shared.models import Paper, PaperStatus
from shared.schools import create_key, create_school

PROFILES = {
    "full": {"papers": 300, "rpm": 300, "tpm": 150_000, "latency_ms": (200, 800), "modes": ("markq", "naive")},
    "ci": {"papers": 32, "rpm": 24, "tpm": 1_000_000, "latency_ms": (50, 150), "modes": ("markq",)},
}
ADMIN_URL = os.environ.get("MARKQ_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("MARKQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
KEY = {
    "questions": [
        {"id": str(n), "answer": str(7 * n), "points": 1, "knowledge_points": ["math.g2.times-tables"]}
        for n in range(1, 4)
    ]
}
ROOT = Path(__file__).resolve().parent.parent


def page(n: int) -> bytes:
    """A small unique page (unique, or markq would rightly reuse the first result)."""
    image = Image.new("L", (800, 1100), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(36)
    for line in range(6):
        draw.text((60, 80 + 150 * line), f"{line + 1}. {n} x {line + 2} = {n * (line + 2)}", fill=0, font=font)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(prefix: str) -> tuple[str, str]:
    """A new, migrated PostgreSQL database for one run: its name and SQLAlchemy URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    migrate(url)
    return name, url


class Stack:
    """Database, Redis db, loopback server and API for one benchmark run."""

    def __init__(self, profile: dict, home: Path) -> None:
        self.profile = profile
        if threading.current_thread() is threading.main_thread():
            # a benchmark stopped with SIGTERM (kill, a CI timeout) unwinds through its `finally`
            # and closes its stack: its workers would otherwise live on, taking the next run's tasks
            signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
        self.db_name, self.db_url = fresh_database("markq_bench")
        self.engine = make_engine(self.db_url)
        self.sessions = make_session_factory(self.engine)
        with transaction(self.sessions) as session:
            self.api_key = create_key(session, create_school(session, "bench")).key
        self.broker = redis.Redis.from_url(REDIS_URL)
        self.broker.flushdb()
        low, high = profile["latency_ms"]
        self.loopback = LoopbackServer(
            state=LoopbackState(rpm=profile["rpm"], tpm=profile["tpm"], latency_ms=(low, high))
        ).start()
        self.env = {
            **os.environ,
            "MARKQ_HOME": str(home),
            "MARKQ_DATABASE_URL": self.db_url,
            "MARKQ_REDIS_URL": REDIS_URL,
            "MARKQ_STORAGE_DIR": str(home / "storage"),
            "MARKQ_QUEUE_NAME": "bench-calls",
            "MARKQ_IMAGE_QUEUE_NAME": "bench-images",
            "OPENAI_BASE_URL": self.loopback.url,
            "OPENAI_API_KEY": "sk-loopback",
            "MARKQ_RATE_LIMIT_RPM": str(profile["rpm"]),
            "MARKQ_RATE_LIMIT_TPM": str(profile["tpm"]),
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.start(
            "api",
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
                "--threads",
                "4",
                "api.wsgi:app",
            ],
            self.env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=(self.logs / f"{name}.log").open("ab"), stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def workers(self, mode: str) -> list[subprocess.Popen[bytes]]:
        env = dict(self.env)
        if mode == "naive":
            env.update(MARKQ_LIMITER_ENABLED="false", MARKQ_PROVIDER_SDK_RETRIES="2")
        celery = [sys.executable, "-m", "celery", "-A", "worker.main", "worker", "--loglevel=INFO"]
        calls = self.start(
            f"calls-{mode}",
            [*celery, "--pool=threads", "--concurrency=16", "-n", f"calls-{mode}@%h", "-Q", "bench-calls"],
            env,
        )
        images = self.start(
            f"images-{mode}", [*celery, "--concurrency=2", "-n", f"images-{mode}@%h", "-Q", "bench-images"], env
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both workers up before any clock starts
            logs = [(self.logs / f"{kind}-{mode}.log").read_text(errors="replace") for kind in ("calls", "images")]
            if all(" ready." in log for log in logs):
                break
            time.sleep(0.2)
        return [calls, images]

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.loopback.stop()
        self.engine.dispose()
        self.broker.flushdb()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


def run_mode(stack: Stack, mode: str, offset: int) -> dict:
    profile = stack.profile
    stack.broker.flushdb()
    httpx.post(stack.loopback.url.removesuffix("/v1") + "/_loopback/reset").raise_for_status()
    workers = stack.workers(mode)
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    exam = httpx.post(
        f"{stack.api_url}/v1/exams",
        headers=headers,
        timeout=30,
        json={"title": f"bench {mode}", "subject": "math", "grade": 2, "language": "en", "answer_key": KEY},
    ).json()
    pages = [page(offset + n) for n in range(profile["papers"])]
    started = datetime.now(timezone.utc)

    def submit(n: int) -> None:
        reply = httpx.post(
            f"{stack.api_url}/v1/exams/{exam['id']}/papers",
            headers=headers,
            timeout=60,
            data={"student_ref": f"s{n}"},
            files=[("pages", ("p.jpg", pages[n], "image/jpeg"))],
        )
        reply.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(profile["papers"])))
    done_states = [PaperStatus.graded, PaperStatus.needs_review, PaperStatus.failed]
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        with stack.sessions() as session:
            done = session.scalar(
                select(func.count())
                .select_from(Paper)
                .where(Paper.exam_id == exam["id"], Paper.status.in_(done_states))
            )
        if done >= profile["papers"]:
            break
        time.sleep(0.5)
    with stack.sessions() as session:
        first, last = session.execute(
            select(func.min(Paper.graded_at), func.max(Paper.graded_at)).where(Paper.exam_id == exam["id"])
        ).one()
        failed = session.scalar(
            select(func.count())
            .select_from(Paper)
            .where(Paper.exam_id == exam["id"], Paper.status == PaperStatus.failed)
        )
    for process in workers:
        process.terminate()
    for process in workers:
        process.wait(timeout=30)
    stats = httpx.get(stack.loopback.url.removesuffix("/v1") + "/_loopback/stats").json()
    seconds = (last - first).total_seconds()
    first_result = (first - started).total_seconds()
    completions = stats["completions"]
    tokens_per_paper = (stats["prompt_tokens"] + stats["completion_tokens"]) / max(1, completions)
    papers = profile["papers"]
    fastest = 60 * max(papers / profile["rpm"] - 1, papers * tokens_per_paper / profile["tpm"] - 1, 0)
    theoretical_per_minute = min(profile["rpm"], profile["tpm"] / tokens_per_paper)
    result = {
        "mode": mode,
        "papers": profile["papers"],
        "graded": profile["papers"] - failed,
        "failed": failed,
        "seconds": round(seconds, 1),
        "seconds_to_first_result": round(first_result, 1),
        "papers_per_minute": round(profile["papers"] / seconds * 60, 1),
        "theoretical_papers_per_minute": round(theoretical_per_minute, 1),
        "tokens_per_paper": round(tokens_per_paper),
        "fastest_possible_seconds": round(fastest, 1),
        "ratio_to_maximum": round(fastest / seconds, 3) if fastest else None,
        "requests": stats["requests"],
        "answered_429": stats["rate_limited"],
        "share_429": round(stats["rate_limited"] / max(1, stats["requests"]), 4),
    }
    print(
        f"{mode:6} {result['papers']} papers in {result['seconds']} s after the first result "
        f"(which took {first_result:.1f} s): {result['papers_per_minute']} papers/min "
        f"(steady-state limit {result['theoretical_papers_per_minute']}/min, {result['tokens_per_paper']} tokens a paper); "
        f"fastest possible {fastest:.1f} s, ratio {result['ratio_to_maximum']}; 429s {stats['rate_limited']} of "
        f"{stats['requests']} requests ({result['share_429']:.1%}); failed {failed}",
        flush=True,
    )
    return result


def run(profile_name: str) -> dict:
    profile = PROFILES[profile_name]
    with tempfile.TemporaryDirectory(prefix="markq-bench-") as home:
        stack = Stack(profile, Path(home))
        try:
            results = {mode: run_mode(stack, mode, offset=10_000 * i) for i, mode in enumerate(profile["modes"])}
        finally:
            stack.close()
    markq = results["markq"]
    summary = {
        "profile": profile_name,
        "limits": {"rpm": profile["rpm"], "tpm": profile["tpm"]},
        "latency_ms": list(profile["latency_ms"]),
        "markq_ratio": markq["ratio_to_maximum"],
        "markq_share_429": markq["share_429"],
        "target_met": (markq["ratio_to_maximum"] or 0) >= 0.9 and markq["share_429"] <= 0.02,
    }
    if "naive" in results:
        summary.update(naive_ratio=results["naive"]["ratio_to_maximum"], naive_share_429=results["naive"]["share_429"])
    summary["runs"] = results
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description="markq throughput at the provider's rate limit")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    summary = run(parser.parse_args().profile)
    print(f"target (>= 0.9 of the maximum, <= 2% 429s): {'MET' if summary['target_met'] else 'NOT MET'}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
