"""Intake throughput and memory: pages through the API against the same bytes straight to S3.

    python -m bench.intake

500 pages of about 1.5 MB (100 papers of 5 pages), each way from 8 threads, against the real API
(gunicorn, two worker processes of 4 threads, one per core; S3 storage on moto's server,
PostgreSQL, Redis):

- by URL (the path clients use), as markq's client sends many papers (`upload_papers`): papers in
  groups of 8, each group started in one call (`/uploads/batch`), its pages PUT to their presigned
  URLs, completed in one call (`/uploads/complete`); 8 files going up at once, as on the direct
  path, a group's calls to the API made while the group before it has files going up;
- multipart (the small-client path): the pages in the request; the API checks every page in it;
- directly: boto3 puts the same bytes into the same S3 server (the baseline, timed before and
  after the URL path, their mean: the server slows a little as it fills).

The URL path and its baselines run in three rounds; each round's ratio is printed and the median
round is the figure (one round's ratio varied 0.73-0.96 from run to run on two shared cores).

Prints pages per second for each, the ratios to direct, the API's CPU seconds per page on the URL
path (its worker processes' user + system time, from /proc), and the larger peak memory growth of
the API's worker processes in each run (its peak VmHWM less its VmRSS before, the peak reset at the
start of the run). Targets (by URL): at least
0.9 of direct, at most 5 ms of API CPU a page, memory growth under 50 MB. The images worker, which
checks and decodes each page, is not part of the intake path measured. The last line is one JSON
object.
"""

from __future__ import annotations

import io
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import psycopg
import redis
from PIL import Image, ImageDraw, ImageFilter

from bench.throughput import ADMIN_URL, REDIS_URL, free_port
from client.api import MarkqClient
from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import migrate
from shared.schools import create_key, create_school

PAPERS, PAGES_PER_PAPER, THREADS, ROUNDS = 100, 5, 8, 3
API_WORKERS, API_THREADS = 2, 4  # the Dockerfile runs 8 threads a worker: more CPU a page here
ROOT = Path(__file__).resolve().parent.parent


def scan(seed: int) -> bytes:
    """An A4 scan at 300 dpi with paper grain, about 1.5 MB as JPEG."""
    rng = random.Random(seed)
    image = Image.effect_noise((2480, 3508), 18).point(lambda v: 200 + v // 5)
    draw = ImageDraw.Draw(image)
    for line in range(40):
        y = 200 + line * 80
        draw.line((200 + rng.randint(0, 50), y, 2200 - rng.randint(0, 400), y + rng.randint(-3, 3)), fill=30, width=4)
    out = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(0.5)).convert("RGB").save(out, "JPEG", quality=91)  # 1.50 MB
    return out.getvalue()


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def start_peak(pids: list[int]) -> tuple[dict[int, int], bool]:
    """Each process's size now (VmRSS, kB), with its peak (VmHWM) started afresh from it, so a
    phase's peak is its own and not the warm-up's (whose multipart pages are decoded whole): writing
    5 to clear_refs resets the high-water mark (Linux 4.0+). False where the kernel refuses: the
    peak then includes what came before."""
    reset = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            reset = False
    return {pid: rss_kb(pid, "VmRSS") for pid in pids}, reset


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def by_url(client: MarkqClient, exam_id: str, files: list[Path], first: int) -> None:
    """PAPERS papers through the URL path as markq's client sends them (`upload_papers`): in groups
    of THREADS, each started and completed in one call, THREADS files going up at once (as many as
    the direct path's), a group's calls running while the group before it has files going up."""
    papers = [
        (f"u{n}", [files[(n + i) % len(files)] for i in range(PAGES_PER_PAPER)]) for n in range(first, first + PAPERS)
    ]
    for paper in client.upload_papers(exam_id, papers, streams=THREADS):
        assert paper["status"] == "queued", paper


def main() -> int:
    pages = [scan(seed) for seed in range(10)]
    mean_mb = sum(map(len, pages)) / len(pages) / 1e6
    print(f"generated pages of {mean_mb:.2f} MB on average", flush=True)
    home = Path(tempfile.mkdtemp(prefix="markq-intake-"))
    s3_port, api_port = free_port(), free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        env=env,
        stdout=(home / "moto.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    db_name = f"markq_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{db_name}"
    api = None
    try:
        migrate(db_url)
        engine = make_engine(db_url)
        with transaction(make_session_factory(engine)) as session:
            key = create_key(session, create_school(session, "bench")).key
        engine.dispose()
        for _ in range(100):
            try:
                httpx.get(s3_url)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        s3 = boto3.client(
            "s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
        )
        s3.create_bucket(Bucket="intake")
        s3.create_bucket(Bucket="direct")
        api_env = {
            **env,
            "MARKQ_HOME": str(home),
            "MARKQ_DATABASE_URL": db_url,
            "MARKQ_REDIS_URL": REDIS_URL,
            "MARKQ_STORAGE_BACKEND": "s3",
            "MARKQ_S3_BUCKET": "intake",
            "MARKQ_S3_ENDPOINT_URL": s3_url,
            "MARKQ_S3_PUBLIC_ENDPOINT_URL": s3_url,
            "MARKQ_QUEUE_NAME": "bench-calls",
            "MARKQ_IMAGE_QUEUE_NAME": "bench-images",
            "MALLOC_ARENA_MAX": "2",  # as the Dockerfile runs the API
        }
        api = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-b",
                f"127.0.0.1:{api_port}",
                "-w",
                str(API_WORKERS),
                "--threads",
                str(API_THREADS),
                "--timeout",
                "120",
                "api.wsgi:app",
            ],
            cwd=ROOT,
            env=api_env,
            stdout=(home / "api.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{api_port}"
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        worker_pids = [
            int(pid)
            for pid in subprocess.run(
                ["ps", "--ppid", str(api.pid), "-o", "pid="], capture_output=True, text=True
            ).stdout.split()
        ]
        exam = httpx.post(
            f"{base}/v1/exams",
            headers=headers,
            timeout=60,
            json={
                "title": "intake bench",
                "subject": "math",
                "grade": 3,
                "answer_key": {"questions": [{"id": "1", "answer": "1", "points": 1}]},
            },
        ).json()
        # warm up both workers (imports, first connections), then take the baseline
        for n in range(4):
            httpx.post(
                f"{base}/v1/exams/{exam['id']}/papers",
                headers=headers,
                timeout=120,
                data={"student_ref": f"warm{n}"},
                files=[("pages", ("p.jpg", pages[0], "image/jpeg"))],
            ).raise_for_status()
        page_files = []
        for n, data in enumerate(pages):
            page_files.append(home / f"page{n}.jpg")
            page_files[-1].write_bytes(data)  # the client streams each page from its file
        client = MarkqClient(base, key, timeout=300)
        client.upload_paper(exam["id"], "warm-url", page_files[:PAGES_PER_PAPER])  # warm the URL path too

        def direct(n: int, run: str) -> None:
            for i in range(PAGES_PER_PAPER):
                s3.upload_fileobj(io.BytesIO(pages[(n + i) % len(pages)]), "direct", f"{run}/{n}/{i}")

        def timed_direct(run: str) -> float:
            started = time.perf_counter()
            with ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(lambda n: direct(n, run), range(PAPERS)))
            return time.perf_counter() - started

        # Rounds, each the URL path between two baselines (the S3 server slows as it fills: their
        # mean), so a round's ratio compares like with like; the median round is the figure (on
        # two shared cores one run's ratio varied 0.73-0.96 from run to run).
        rss_before, peak_reset = start_peak(worker_pids)
        url_cpu = 0.0
        rounds: list[tuple[float, float]] = []  # (URL seconds, direct seconds) each round
        for r in range(ROUNDS):
            direct_before = timed_direct(f"before{r}")
            cpu_before = sum(cpu_seconds(pid) for pid in worker_pids)
            started = time.perf_counter()
            by_url(client, exam["id"], page_files, r * PAPERS)
            url_seconds = time.perf_counter() - started
            url_cpu += sum(cpu_seconds(pid) for pid in worker_pids) - cpu_before
            rounds.append((url_seconds, (direct_before + timed_direct(f"after{r}")) / 2))
        api_cpu_ms = url_cpu / (ROUNDS * PAPERS * PAGES_PER_PAPER) * 1000
        url_growth_mb = max(rss_kb(pid, "VmHWM") - rss_before[pid] for pid in worker_pids) / 1024
        rounds.sort(key=lambda pair: pair[1] / pair[0])
        ratios = [direct / url for url, direct in rounds]
        url_seconds, direct_seconds = rounds[ROUNDS // 2]

        def through_api(n: int) -> None:
            files = [
                ("pages", (f"p{i}.jpg", pages[(n + i) % len(pages)], "image/jpeg")) for i in range(PAGES_PER_PAPER)
            ]
            reply = httpx.post(
                f"{base}/v1/exams/{exam['id']}/papers",
                headers=headers,
                timeout=300,
                data={"student_ref": f"s{n}"},
                files=files,
            )
            reply.raise_for_status()

        rss_before, reset_again = start_peak(worker_pids)
        peak_reset = peak_reset and reset_again
        started = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(through_api, range(PAPERS)))
        api_seconds = time.perf_counter() - started
        peak_growth_mb = max(rss_kb(pid, "VmHWM") - rss_before[pid] for pid in worker_pids) / 1024

        total = PAPERS * PAGES_PER_PAPER
        api_rate, direct_rate, url_rate = total / api_seconds, total / direct_seconds, total / url_seconds
        ratio, url_ratio = api_rate / direct_rate, url_rate / direct_rate
        met = url_ratio >= 0.9 and api_cpu_ms <= 5 and url_growth_mb < 50
        print(f"by URL:          {total} pages in {url_seconds:.1f} s = {url_rate:.1f} pages/s")
        print(f"  each round's ratio to direct: {', '.join(f'{r:.2f}' for r in ratios)} (the median is the figure)")
        print(f"multipart:       {total} pages in {api_seconds:.1f} s = {api_rate:.1f} pages/s")
        print(
            f"directly to S3:  {total} pages in {direct_seconds:.1f} s = {direct_rate:.1f} pages/s (mean of before and after)"
        )
        print(
            f"by URL {url_ratio:.2f} of direct (target >= 0.9), API CPU {api_cpu_ms:.2f} ms a page (target <= 5); "
            f"API worker peak memory growth {url_growth_mb:.1f} MB (target < 50); multipart {ratio:.2f} of direct, "
            f"{peak_growth_mb:.1f} MB in it{'' if peak_reset else ' (peaks not reset: they include the warm-up)'}: "
            f"{'MET' if met else 'NOT MET'}"
        )
        print(
            json.dumps(
                {
                    "pages": total,
                    "mean_page_mb": round(mean_mb, 2),
                    "url_pages_per_second": round(url_rate, 2),
                    "multipart_pages_per_second": round(api_rate, 2),
                    "direct_pages_per_second": round(direct_rate, 2),
                    "ratio": round(url_ratio, 3),
                    "round_ratios": [round(r, 3) for r in ratios],
                    "multipart_ratio": round(ratio, 3),
                    "api_cpu_ms_per_page": round(api_cpu_ms, 2),
                    "api_peak_memory_growth_mb": round(url_growth_mb, 1),
                    "multipart_peak_memory_growth_mb": round(peak_growth_mb, 1),
                    "peak_reset_per_run": peak_reset,
                    "target_met": met,
                }
            )
        )
    finally:
        for process in (api, moto):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        redis.Redis.from_url(REDIS_URL).flushdb()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
