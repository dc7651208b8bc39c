"""Fair share: a small exam submitted behind another school's large one.

    python -m bench.fairness               # 5 papers behind 300, the loopback server at 300 RPM
    python -m bench.fairness --profile ci  # 5 behind 40 (the test's profile)

The real API (gunicorn), Redis, PostgreSQL, a calls worker (16 threads) and an images worker (2
processes), against the loopback OpenAI-compatible server enforcing a fixed requests-per-minute
limit, as in bench.throughput. First one school's 5-paper exam alone; then another school's large
exam is submitted and, as soon as it is in, the 5-paper exam again. The figure is how long the 5
papers take from their submission until the last is marked, behind the large exam over alone.
Target: at most 2 (a teacher's class is not stuck behind thousands of another school's papers).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select

from bench.throughput import KEY, Stack, page
from shared.db import transaction
from shared.models import Paper, PaperStatus
from shared.schools import create_key, create_school

PROFILES = {
    "full": {"papers": 300, "small": 5, "rpm": 300, "tpm": 1_000_000, "latency_ms": (200, 800)},
    "ci": {"papers": 40, "small": 5, "rpm": 120, "tpm": 1_000_000, "latency_ms": (100, 300)},
}
DONE = (PaperStatus.graded, PaperStatus.needs_review, PaperStatus.failed)


def submit_exam(stack: Stack, key: str, title: str, papers: int, offset: int) -> tuple[str, float]:
    """Create an exam and submit its papers (8 at a time); its id and when the last was in."""
    headers = {"Authorization": f"Bearer {key}"}
    exam = httpx.post(
        f"{stack.api_url}/v1/exams",
        headers=headers,
        timeout=30,
        json={"title": title, "subject": "math", "grade": 2, "language": "en", "answer_key": KEY},
    ).json()

    def submit(n: int) -> None:
        httpx.post(
            f"{stack.api_url}/v1/exams/{exam['id']}/papers",
            headers=headers,
            timeout=60,
            data={"student_ref": f"s{n}"},
            files=[("pages", ("p.jpg", page(offset + n), "image/jpeg"))],
        ).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(papers)))
    return exam["id"], time.monotonic()


def finished(stack: Stack, exam_id: str) -> int:
    with stack.sessions() as session:
        return session.scalar(
            select(func.count()).select_from(Paper).where(Paper.exam_id == exam_id, Paper.status.in_(DONE))
        )


def wait_done(stack: Stack, exam_id: str, papers: int, timeout: float = 900) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if finished(stack, exam_id) >= papers:
            return time.monotonic()
        time.sleep(0.1)
    raise TimeoutError(f"exam {exam_id}: not finished in {timeout} s")


def school_key(stack: Stack, name: str) -> str:
    with transaction(stack.sessions) as session:
        return create_key(session, create_school(session, name)).key


def run(profile_name: str) -> dict:
    profile = PROFILES[profile_name]
    with tempfile.TemporaryDirectory(prefix="markq-bench-") as home:
        stack = Stack(profile, Path(home))
        try:
            workers = stack.workers("markq")
            small_key, large_key = school_key(stack, "small school"), school_key(stack, "large school")
            warm_id, _ = submit_exam(stack, small_key, "warm-up", 1, 500_000)  # imports, connections
            wait_done(stack, warm_id, 1)
            started = time.monotonic()
            alone_id, _ = submit_exam(stack, small_key, "alone", profile["small"], 0)
            alone = wait_done(stack, alone_id, profile["small"]) - started
            # the provider's bucket refills before the second run, as it was full for the first
            time.sleep(60 * profile["small"] / profile["rpm"] + 1)
            large_id, _ = submit_exam(stack, large_key, "large", profile["papers"], 1_000)
            large_ahead = profile["papers"] - finished(stack, large_id)
            started = time.monotonic()
            behind_id, _ = submit_exam(stack, small_key, "behind", profile["small"], 100_000)
            behind = wait_done(stack, behind_id, profile["small"]) - started
            large_left = profile["papers"] - finished(stack, large_id)
            wait_done(stack, large_id, profile["papers"])
            for process in workers:
                process.terminate()
        finally:
            stack.close()
    ratio = behind / alone
    return {
        "profile": profile_name,
        "large_papers": profile["papers"],
        "small_papers": profile["small"],
        "rpm": profile["rpm"],
        "small_alone_seconds": round(alone, 2),
        "small_behind_seconds": round(behind, 2),
        "large_unfinished_when_small_submitted": large_ahead,
        "large_unfinished_when_small_done": large_left,
        "ratio": round(ratio, 2),
        "target_met": ratio <= 2.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="markq fair share: a small exam behind a large one")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    summary = run(parser.parse_args().profile)
    print(
        f"{summary['small_papers']} papers alone: {summary['small_alone_seconds']} s; behind "
        f"{summary['large_papers']} of another school's ({summary['large_unfinished_when_small_submitted']} "
        f"unfinished when submitted, {summary['large_unfinished_when_small_done']} when done): "
        f"{summary['small_behind_seconds']} s; ratio {summary['ratio']} "
        f"(target at most 2: {'MET' if summary['target_met'] else 'NOT MET'})"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
