"""Compose's front door (deploy/proxy.conf, nginx) in front of the live API: slow clients hold
nginx connections, not the API; errors come back in markq's one shape; and a page sent at 40 KB/s
uploads and is marked."""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.helpers import ANSWERS, KEY, loopback_call, make_exam, verdict, wait_for, wait_until
from tests.test_uploads_by_url import declare

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_proxy(folder: Path, api_port: int, api_up: bool = True) -> tuple[subprocess.Popen[bytes], str]:
    """nginx with compose's proxy config, its API upstream at `api_port` on loopback."""
    port = free_port()
    conf = (ROOT / "deploy" / "proxy.conf").read_text()
    conf = conf.replace("server api:8000", f"server 127.0.0.1:{api_port}").replace(
        "server flower:5555", f"server 127.0.0.1:{free_port()}"
    )
    (folder / "proxy.conf").write_text(conf.replace("listen 80 ", f"listen 127.0.0.1:{port} "))
    for temp in ("body", "proxy"):
        (folder / temp).mkdir(mode=0o777, exist_ok=True)
        (folder / temp).chmod(0o777)  # nginx's workers may run as another user
    (folder / "nginx.conf").write_text(
        f"daemon off; pid {folder}/nginx.pid; error_log stderr warn; worker_processes 1;\n"
        f"events {{ worker_connections 512; }}\n"
        f"http {{ access_log off; client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy;\n"
        f"  include {folder}/proxy.conf; }}\n"
    )
    process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == (200 if api_up else 503)
        except httpx.HTTPError:
            return False

    assert wait_until(answering, timeout=10, every=0.1), "nginx did not start"
    return process, url


@pytest.fixture(scope="module")
def proxy(live_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert NGINX, "nginx is not installed (make test installs it: scripts/ensure-services.sh)"
    process, url = run_proxy(tmp_path_factory.mktemp("nginx"), int(live_api.rsplit(":", 1)[1]))
    yield url
    process.terminate()
    process.wait(timeout=10)


def a_page_of(size: int) -> bytes:
    """A real JPEG of about `size` bytes (noise compresses badly, as a phone photo does)."""
    rng = random.Random(size)
    side = 400
    while True:
        noise = Image.frombytes("L", (side, side), bytes(rng.getrandbits(8) for _ in range(side * side))).convert("RGB")
        out = io.BytesIO()
        noise.save(out, "JPEG", quality=95)
        if out.tell() >= size:
            return out.getvalue()
        side = int(side * 1.25)


def slow_client(url: str, stop: threading.Event, body: bool) -> None:
    """A phone on a bad link: the request's headers (or its body) a few bytes a second."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        if body:
            conn.sendall(b"POST /v1/estimate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            conn.sendall(b"Content-Length: 1000000\r\n\r\n")
        else:
            conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        while not stop.wait(0.5):
            try:
                conn.sendall(b"x" if body else b"X-Slow: 1\r\n")
            except OSError:
                return


def test_twenty_slow_clients_do_not_delay_anyone_else(proxy):
    stop = threading.Event()
    clients = [threading.Thread(target=slow_client, args=(proxy, stop, n % 2 == 0), daemon=True) for n in range(20)]
    for client in clients:
        client.start()
    try:
        time.sleep(1.0)
        worst = 0.0
        for _ in range(10):
            started = time.perf_counter()
            assert httpx.get(f"{proxy}/healthz", timeout=5).status_code == 200
            worst = max(worst, time.perf_counter() - started)
        assert worst < 1.0, worst
    finally:
        stop.set()


def test_the_proxys_own_errors_are_in_markqs_error_shape(proxy, tmp_path):
    too_large = httpx.post(f"{proxy}/v1/estimate", content=b"x" * (201 * 1024 * 1024))
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "request_entity_too_large" and "/uploads" in too_large.text
    assert httpx.get(f"{proxy}/flower/metrics").status_code == 404  # Flower answers it without auth: never served
    # the API gone: nginx answers for it
    process, down = run_proxy(tmp_path, free_port(), api_up=False)
    try:
        reply = httpx.get(f"{down}/v1/exams")
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "service_unavailable"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_page_sent_at_40_kb_a_second_uploads_and_is_marked(proxy, auth, idle, loopback):
    """The teacher's phone on a slow link: 1.5 MB at 40 KB/s (about 38 s), by upload URL, while
    the API stays free; then the paper is marked once."""
    exam = make_exam(proxy, auth(), answer_key=KEY, title="slow link")
    page = a_page_of(1_500_000)
    reply = httpx.post(
        f"{proxy}/v1/exams/{exam['id']}/uploads",
        headers=auth(),
        json={"student_ref": "S-slow", "files": [declare("photo.jpg", page)]},
    )
    assert reply.status_code == 201, reply.text
    target = reply.json()["files"][0]

    def throttled() -> Iterator[bytes]:
        started, sent = time.perf_counter(), 0
        for offset in range(0, len(page), 4096):
            chunk = page[offset : offset + 4096]
            yield chunk
            sent += len(chunk)
            time.sleep(max(0.0, sent / 40_000 - (time.perf_counter() - started)))

    started = time.perf_counter()
    stored = httpx.put(target["url"], content=throttled(), headers=target["headers"], timeout=120)
    took = time.perf_counter() - started
    assert stored.status_code == 200, stored.text
    assert took >= len(page) / 40_000 * 0.95, took  # it really was slow
    loopback_call(loopback, "/_loopback/replies", {"replies": [{"questions": {q: verdict(q, False) for q in ANSWERS}}]})
    calls = loopback_call(loopback, "/_loopback/stats")["completions"]
    done = httpx.post(f"{proxy}{reply.json()['complete_url']}", headers=auth())
    assert done.status_code == 200, done.text
    paper = wait_for(proxy, auth(), done.json()["id"])
    assert paper["status"] == "graded", paper
    assert loopback_call(loopback, "/_loopback/stats")["completions"] == calls + 1


def test_the_api_servers_access_log_never_holds_a_share_links_token(service_env, live_api, auth, tmp_path):
    """gunicorn run with the Dockerfile's own command line: a share link's token (in the query)
    never reaches the access log, which still shows the request."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    command = json.loads(re.search(r"^CMD (\[.*?\])\s*$", dockerfile.replace("\\\n", ""), re.M | re.S).group(1))
    assert command[0] == "gunicorn"
    port = free_port()
    args = [a if a != "0.0.0.0:8000" else f"127.0.0.1:{port}" for a in command[1:]]
    args[args.index("--access-logfile") + 1] = str(tmp_path / "access.log")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), *args], env={**os.environ, **service_env}, cwd=ROOT
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(up, timeout=30, every=0.2), "gunicorn did not start"
        exam = make_exam(live_api, auth(), answer_key=KEY, title="log")
        link = httpx.post(f"{live_api}/v1/exams/{exam['id']}/share", headers=auth()).json()["url"]
        token = link.split("token=")[1]
        path = link.split("/", 3)[3]
        assert httpx.get(f"{url}/{path}").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = (tmp_path / "access.log").read_text()
    assert f"/pages/exams/{exam['id']}" in log and token not in log, log
