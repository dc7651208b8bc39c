"""The main job: start markq on this machine, mark sample papers, print the results.

Starts Redis if none answers, then the API (gunicorn), Celery workers (calls, images, offline
OCR), beat and Flower as local processes. With OPENAI_API_KEY the vision model marks the papers;
without one, the offline reader does (provider `local`): real grades from OCR against the answer
key, at no cost, with the answers it is unsure of left for a teacher's review. `--loopback` instead
shows the vision path against the loopback OpenAI-compatible server, and says on every result that
those grades are simulated. Stops what it started when done (--keep leaves the processes running
and prints how to stop them).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from client.api import MarkqClient
from client.samples import write_samples
from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import migrate
from shared.models import School, Teacher
from shared.schools import create_key, create_school
from shared.settings import get_settings
from shared.teachers import create_teacher, set_password

SIMULATED = "[SIMULATED: loopback server, no OPENAI_API_KEY; not real grades]"


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


def wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s; see .markq/logs/")


def ensure_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
        return
    except redis.ConnectionError:
        pass
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit(
            f"No Redis answers at {url} and redis-server is not installed "
            "(apt-get install redis-server, or set MARKQ_REDIS_URL)."
        )
    print("starting redis-server (none was answering)")
    subprocess.run(
        [server, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"],
        check=True,
    )
    wait_until(client.ping, "Redis")


class Processes:
    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = env
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *argv: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append((name, process))

    def check_alive(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.logs / (name + '.log')}")

    def stop(self) -> None:
        for _name, process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _name, process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


DEMO_TEACHER = "teacher@demo.markq"


def demo_key(database_url: str) -> tuple[str, str]:
    """The demo school's new API key, and a new password for its teacher (the web app's sign-in)."""
    migrate(database_url)
    engine = make_engine(database_url)
    password = secrets.token_urlsafe(12)
    with transaction(make_session_factory(engine)) as session:
        school = session.query(School).filter_by(name="Demo school").one_or_none()
        school = school or create_school(session, "Demo school")
        key = create_key(session, school).key
        teacher = session.query(Teacher).filter_by(email=DEMO_TEACHER).one_or_none()
        if teacher is None:
            create_teacher(session, school, DEMO_TEACHER, "Demo teacher", password, is_admin=True)
        else:
            set_password(teacher, password)
    engine.dispose()
    return key, password


def print_results(client: MarkqClient, exam: dict[str, Any], simulated: bool) -> None:
    tag = f" {SIMULATED}" if simulated else ""
    report = client.report(exam["id"])
    who = (
        "the offline reader (OCR on this machine, no provider calls)"
        if exam["provider"] == "local"
        else f"{exam['provider']}, model {exam['model']}"
    )
    print(f"\n== {exam['title']} (marked by {who}) ==")
    for summary in report["papers"]:
        paper = client.paper(summary["id"])
        score = f"{paper['score']:g}/{paper['max_score']:g}" if paper["score"] is not None else "-"
        wrong = [q["question_id"] for q in paper["questions"] if not q["is_correct"]]
        review = [q["question_id"] for q in paper["questions"] if q["needs_review"]]
        line = f"  {paper['class_label']} {paper['student_ref']}: {score} [{paper['status']}]"
        if wrong:
            line += f" wrong: {', '.join(wrong)}"
        if review:
            line += f" review: {', '.join(review)}"
        read = [
            f"{q['question_id']}={q['student_answer']!r}"
            for q in paper["questions"]
            if q["marked_by"] == "local" and not q["is_correct"]
        ]
        if read and not simulated:
            line += f" (read: {', '.join(read)})"
        if paper["status"] in ("failed", "paused"):
            line += f" ({paper['status_reason']})"
        if paper.get("reused_from"):
            line += " (same pages as an earlier paper: its result reused, no provider call)"
        print(line + tag)
    missed = [row for row in report["missed_knowledge_points"] if row["missed"]]
    print(f"  most-missed knowledge points{tag}:")
    for row in missed[:5]:
        print(f"    {row['missed']}/{row['attempted']}  {row['name_zh']} / {row['name_en']} ({row['id']})")
    if not missed:
        print("    none missed")
    usage = client.exam(exam["id"])["usage"]
    print(
        f"  provider calls {usage['calls']}, prompt tokens {usage['prompt_tokens']} "
        f"(cached {usage['cached_tokens']}), completion tokens {usage['completion_tokens']}, "
        f"cost ${usage['cost_usd']:.4f}{tag}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the processes running afterwards")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--loopback",
        action="store_true",
        help="without OPENAI_API_KEY, show the vision path against the loopback server (simulated grades)",
    )
    args = parser.parse_args()

    settings = get_settings()
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    ensure_redis(settings.redis_url)
    env = dict(os.environ)
    processes = Processes(home / "logs", env)
    simulated = not settings.openai_api_key and args.loopback
    try:
        if not settings.openai_api_key and not simulated:
            print(
                "No OPENAI_API_KEY: the offline reader marks the papers (provider 'local'): real grades, "
                "no key, no cost."
            )
        if simulated:
            port = free_port(8089)
            processes.start(
                "loopback-openai",
                sys.executable,
                "-m",
                "loopback.server",
                "--port",
                str(port),
                "--latency-ms",
                "200-600",
            )
            env.update(
                OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
                OPENAI_API_KEY="sk-loopback",
                MARKQ_DEFAULT_PROVIDER="vision",
            )
            print(
                f"No OPENAI_API_KEY: grading with the loopback server at {env['OPENAI_BASE_URL']}. "
                "Grades below are SIMULATED."
            )
        api_key, teacher_password = demo_key(settings.database_url)
        api_port, flower_port = free_port(8000), free_port(5555)
        api_url = f"http://127.0.0.1:{api_port}"
        bin_dir = Path(sys.executable).parent
        processes.start("api", str(bin_dir / "gunicorn"), "-b", f"127.0.0.1:{api_port}", "-w", "2", "api.wsgi:app")
        processes.start(
            "worker",
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.main",
            "worker",
            "--loglevel=INFO",
            "--pool=threads",
            "--concurrency=8",
            "-n",
            "calls@%h",
            "-Q",
            settings.queue_name,
        )
        processes.start(
            "worker-images",
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.main",
            "worker",
            "--loglevel=INFO",
            "--concurrency=2",
            "-n",
            "images@%h",
            "-Q",
            settings.image_queue_name,
        )
        processes.start(
            "worker-ocr",
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.main",
            "worker",
            "--loglevel=INFO",
            "--concurrency=2",
            "-n",
            "ocr@%h",
            "-Q",
            settings.ocr_queue_name,
        )
        processes.start(
            "beat",
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.main",
            "beat",
            "--loglevel=INFO",
            "-s",
            str(home / "beat-schedule"),
        )
        processes.start(
            "flower",
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.main",
            "flower",
            "--address=127.0.0.1",
            f"--port={flower_port}",
        )
        wait_until(lambda: httpx.get(f"{api_url}/readyz").status_code == 200, "the API")
        processes.check_alive()

        client = MarkqClient(api_url, api_key)
        samples = write_samples(home / "samples")
        print(f"sample papers written to {home / 'samples'}")
        exams = []
        for plan in samples["exams"]:
            exam = client.create_exam(plan["exam"])
            for student, pages in plan["papers"].items():
                client.submit_paper(exam["id"], student, pages, class_label=plan["class_label"])
            print(f"submitted {len(plan['papers'])} papers for {exam['title']!r} (exam {exam['id']})")
            exams.append(exam)

        def show(exam: dict[str, Any]) -> None:
            processes.check_alive()
            counts = ", ".join(f"{k} {v}" for k, v in exam["progress"].items() if v)
            print(f"  {exam['title']}: {counts}", flush=True)

        for exam in exams:
            client.wait_for_exam(exam["id"], timeout=args.timeout, on_progress=show)
        for exam in exams:
            print_results(client, exam, simulated)
        print(f"\nAPI docs: {api_url}/docs   OpenAPI: {api_url}/openapi.json   Flower: http://127.0.0.1:{flower_port}")
        print(f"API key for the demo school: {api_key}")
        print(
            f"Web app: {api_url}/app/  (sign in as {DEMO_TEACHER}, password {teacher_password}; run with --keep to use it)"
        )
        if args.keep:
            pids = " ".join(str(p.pid) for _n, p in processes.started)
            print(f"Processes left running; stop them with: kill {pids}")
            processes.started.clear()
    finally:
        processes.stop()


if __name__ == "__main__":
    main()
