"""Uploads by URL: the bytes go from the client straight to storage (moto's S3 server here, the
API's own endpoint with a local folder), the images worker checks them, abandoned uploads expire."""

from __future__ import annotations

import io
import json
import random
import threading
import time
import zipfile
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw
from sqlalchemy import select, update
from werkzeug.serving import make_server

from client import samples
from client.api import MarkqClient, MarkqError
from client.cli import main as cli
from client.uploads import UploadState
from loopback.proxy import FaultProxy, Mode
from shared.intake import uploads
from shared.intake.uploads import PART_BYTES, upload_key
from shared.models import BulkStatus, BulkUpload, Paper, PaperStatus, utcnow
from shared.storage import StorageError
from tests.helpers import exam_body, loopback_call, page_bytes, wait_for
from tests.test_api import another_app

pytestmark = pytest.mark.integration


def declare(name: str, data: bytes, content_type: str = "image/jpeg") -> dict:
    return {"name": name, "size": len(data), "content_type": content_type}


def start(api: str, headers: dict, exam_id: str, files: dict[str, bytes], student: str = "S01") -> dict:
    reply = httpx.post(
        f"{api}/v1/exams/{exam_id}/uploads",
        headers=headers,
        json={"student_ref": student, "class_label": "3(2)", "files": [declare(n, d) for n, d in files.items()]},
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


def put(target: dict, data: bytes) -> httpx.Response:
    return httpx.put(target["url"], content=data, headers=target["headers"])


def make_exam(api: str, headers: dict, **overrides) -> dict:
    reply = httpx.post(f"{api}/v1/exams", headers=headers, json=exam_body(**overrides))
    assert reply.status_code == 201, reply.text
    return reply.json()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict:
    return samples.write_samples(tmp_path_factory.mktemp("samples"))["exams"][0]


def test_a_paper_uploaded_by_url_is_checked_by_the_worker_and_marked(live_api, auth, worker, app, sample):
    exam = make_exam(live_api, auth(), provider="local", answer_key=sample["exam"]["answer_key"], title="by URL")
    files = {path.name: path.read_bytes() for path in sample["papers"]["S02"]}
    upload = start(live_api, auth(), exam["id"], files)
    assert upload["status"] == "uploading" and [f["number"] for f in upload["files"]] == [1, 2]
    assert all(f["url"].startswith(app.extensions["markq"].settings.s3_endpoint_url) for f in upload["files"])
    assert all(not f["uploaded"] for f in upload["files"])
    assert "math-S02" not in " ".join(f["url"] for f in upload["files"])  # keys never from file names

    complete = f"{live_api}{upload['complete_url']}"
    early = httpx.post(complete, headers=auth())
    assert early.status_code == 409 and early.json()["error"]["code"] == "upload_incomplete"
    assert [p["number"] for p in early.json()["error"]["details"]] == [1, 2]

    first, second = files.values()
    assert put(upload["files"][0], first).status_code == 200
    assert put(upload["files"][1], second[: len(second) // 2]).status_code == 200  # a link cut halfway
    half = httpx.post(complete, headers=auth())
    assert half.status_code == 409 and "not the" in half.json()["error"]["message"]
    again = httpx.get(f"{live_api}/v1/papers/{upload['paper_id']}/upload", headers=auth()).json()
    assert [f["uploaded"] for f in again["files"]] == [True, False]  # resume: only the second again
    assert put(again["files"][1], second).status_code == 200

    done = httpx.post(complete, headers=auth())
    assert done.status_code == 200 and done.json()["status"] in ("queued", "processing", "graded", "needs_review")
    twice = httpx.post(complete, headers=auth())
    assert twice.status_code == 200  # completing again queues nothing twice
    paper = wait_for(live_api, auth(), upload["paper_id"], timeout=120)
    assert paper["status"] in ("graded", "needs_review"), paper["status_reason"]
    wrong = {q["question_id"] for q in paper["questions"] if not q["is_correct"]}
    assert {"1", "3"} <= wrong  # S02's mistakes, read from the pages that went by URL
    assert [(p["number"], p["width"] > 0) for p in paper["pages"]] == [(1, True), (2, True)]
    storage = app.extensions["markq"].storage
    with app.extensions["markq"].sessions() as session:
        row = session.get(Paper, upload["paper_id"])
        assert all(page.verified and not page.original_key.startswith("uploads/") for page in row.pages)
        assert row.pages_hash
        assert storage.size(upload_key(row.school_id, row.exam_id, row.id, 1)) is None  # upload objects removed


def test_a_corrupt_page_by_url_fails_its_paper_with_no_call_and_an_upload_again_replaces_it(
    live_api, auth, worker, loopback
):
    exam = make_exam(live_api, auth(), title="corrupt by URL")
    good = page_bytes("1. 7 x 8 = 56")
    broken = good[: len(good) // 3]  # a JPEG cut short: its header reads, its pixels do not
    calls = loopback_call(loopback, "/_loopback/stats")["requests"]
    upload = start(live_api, auth(), exam["id"], {"front.jpg": good, "back.jpg": broken}, student="S09")
    for target, data in zip(upload["files"], (good, broken), strict=True):
        assert put(target, data).status_code == 200
    assert httpx.post(f"{live_api}{upload['complete_url']}", headers=auth()).status_code == 200
    paper = wait_for(live_api, auth(), upload["paper_id"], statuses={"failed", "graded", "needs_review"})
    assert paper["status"] == "failed"
    assert paper["status_reason"].startswith("invalid_page: page 2 (back.jpg)"), paper["status_reason"]
    assert loopback_call(loopback, "/_loopback/stats")["requests"] == calls

    # the teacher uploads the student's pages again: the new paper takes the failed one's place
    again = start(live_api, auth(), exam["id"], {"front.jpg": good, "back.jpg": good}, student="S09")
    for target in again["files"]:
        assert put(target, good).status_code == 200
    completed = httpx.post(f"{live_api}{again['complete_url']}", headers=auth())
    assert completed.status_code == 200 and completed.json()["replaced"] == [paper["id"]], completed.text
    assert httpx.get(f"{live_api}/v1/papers/{paper['id']}", headers=auth()).status_code == 404
    listed = httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
    assert [p["id"] for p in listed if p["student_ref"] == "S09"] == [again["paper_id"]]
    done = wait_for(live_api, auth(), again["paper_id"], statuses={"failed", "graded", "needs_review"})
    assert done["status"] in {"graded", "needs_review"}, done["status_reason"]


def test_declared_files_are_refused_with_the_limit_and_the_reason(live_api, auth, settings):
    exam = make_exam(live_api, auth(), title="refused by URL")
    url = f"{live_api}/v1/exams/{exam['id']}/uploads"
    big = {"name": "huge.jpg", "size": settings.max_page_bytes + 1, "content_type": "image/jpeg"}
    reply = httpx.post(url, headers=auth(), json={"student_ref": "S1", "files": [big]})
    assert reply.status_code == 413 and str(settings.max_page_bytes) in reply.json()["error"]["message"]
    text = {"name": "notes.txt", "size": 10, "content_type": "text/plain"}
    reply = httpx.post(url, headers=auth(), json={"student_ref": "S1", "files": [text]})
    assert reply.status_code == 415 and reply.json()["error"]["details"] == {"file": "notes.txt", "number": 1}
    reply = httpx.post(url, headers=auth(), json={"student_ref": "S1", "files": []})
    assert reply.status_code == 422
    reply = httpx.post(url, headers=auth("B"), json={"student_ref": "S1", "files": [declare("a.jpg", b"x")]})
    assert reply.status_code == 404  # another school's exam


def test_an_upload_never_completed_is_removed_by_the_sweep(live_api, auth, app):
    from worker.tasks import sweep_stuck_papers

    exam = make_exam(live_api, auth(), title="abandoned")
    data = page_bytes("abandoned")
    upload = start(live_api, auth(), exam["id"], {"a.jpg": data}, student="S-gone")
    assert put(upload["files"][0], data).status_code == 200
    storage = app.extensions["markq"].storage
    with app.extensions["markq"].sessions() as session:
        paper = session.get(Paper, upload["paper_id"])
        key = paper.pages[0].original_key
        assert storage.size(key) == len(data)
        session.execute(
            update(Paper).where(Paper.id == paper.id).values(upload_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    # a class ZIP abandoned the same way
    archive = class_zip({"S01/a.jpg": data})
    bulk_upload = start_class(live_api, auth(), exam["id"], archive)
    assert put(bulk_upload["upload"], archive).status_code == 200
    with app.extensions["markq"].sessions() as session:
        bulk = session.get(BulkUpload, bulk_upload["bulk_id"])
        bulk_key = bulk.archive_key
        assert storage.size(bulk_key) == len(archive)
        bulk.upload_expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    with app.app_context():
        sweep_stuck_papers()
    with app.extensions["markq"].sessions() as session:
        assert session.get(Paper, upload["paper_id"]) is None
        assert session.get(BulkUpload, bulk_upload["bulk_id"]) is None
    assert storage.size(key) is None and storage.size(bulk_key) is None
    listed = httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
    assert listed == []


def test_with_a_local_folder_the_api_takes_the_upload_itself(settings, app, auth, tmp_path, sample):
    queues = {name: f"markq-test-unconsumed-{name}" for name in ("queue_name", "image_queue_name", "ocr_queue_name")}
    # its own queues, which no worker reads: the run's worker reads S3, not this folder
    local = settings.model_copy(
        update={
            "storage_backend": "local",
            "home": tmp_path,
            "storage_dir": tmp_path / "storage",
            # a multipart paper's body may be 5 MB here; a class ZIP by URL is not held to it
            "max_page_bytes": 2 * 1024 * 1024,
            "max_pages_per_paper": 2,
            **queues,
        }
    )
    with another_app(local, app) as folder_app, folder_app.test_client() as client:
        exam = client.post("/v1/exams", headers=auth(), json=exam_body(title="local folder")).json
        data = sample["papers"]["S01"][0].read_bytes()
        reply = client.post(
            f"/v1/exams/{exam['id']}/uploads",
            headers=auth(),
            json={"student_ref": "L1", "files": [declare("p.jpg", data)]},
        )
        assert reply.status_code == 201, reply.text
        target = reply.json["files"][0]
        path = target["url"].removeprefix(settings.public_base_url)
        assert path.startswith("/v1/uploads/")
        too_much = client.put(path, data=data + b"x", headers=target["headers"])
        assert too_much.status_code == 413
        assert client.put(path.rsplit("/", 1)[0] + "/forged", data=data).status_code == 404
        stored = client.put(path, data=io.BytesIO(data), headers=target["headers"])
        assert stored.status_code == 200 and stored.json["uploaded"] is True
        done = client.post(reply.json["complete_url"], headers=auth())
        assert done.status_code == 200 and done.json["status"] == "queued"
        assert client.put(path, data=data).status_code == 404  # completed: the URL is spent
        with folder_app.extensions["markq"].sessions() as session:
            paper = session.scalar(select(Paper).where(Paper.id == reply.json["paper_id"]))
            assert paper.status == PaperStatus.queued
            session.delete(paper)  # its task went to queues no worker reads: leave nothing in flight
            session.commit()

        # a class ZIP the same way, through the API's own upload endpoint
        archive = class_zip({"L2/p.jpg": data, "L2/scan.bin": random.randbytes(6 * 1024 * 1024)})
        assert len(archive) > folder_app.config["MAX_CONTENT_LENGTH"]
        started = client.post(
            f"/v1/exams/{exam['id']}/bulk/uploads", headers=auth(), json={"name": "c.zip", "size": len(archive)}
        )
        assert started.status_code == 201, started.text
        bulk_path = started.json["upload"]["url"].removeprefix(settings.public_base_url)
        assert client.put(bulk_path, data=archive + b"x").status_code == 413
        assert client.put(bulk_path.rsplit("/", 1)[0] + "/forged", data=archive).status_code == 404
        assert client.post(started.json["complete_url"], headers=auth()).status_code == 409
        assert client.put(bulk_path, data=io.BytesIO(archive)).json["uploaded"] is True
        done = client.post(started.json["complete_url"], headers=auth())
        assert done.status_code == 200 and done.json["status"] == "queued"
        assert client.put(bulk_path, data=archive).status_code == 404  # completed: the URL is spent
        with folder_app.extensions["markq"].sessions() as session:
            bulk = session.get(BulkUpload, started.json["bulk_id"])
            assert (tmp_path / "storage" / bulk.archive_key).read_bytes() == archive
            session.delete(bulk)  # as its paper above: nothing left for another test's worker
            session.commit()


@contextmanager
def serving(flask_app):
    """`flask_app` over real HTTP on a loopback port, for one test."""
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


class CountingTransport(httpx.HTTPTransport):
    """Storage's side of the client, counting the PUTs under way at once (a body is sent inside
    handle_request)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock, self.now, self.most, self.puts = threading.Lock(), 0, 0, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.now += 1
            self.most, self.puts = max(self.most, self.now), self.puts + 1
        try:
            time.sleep(0.05)  # long enough for the papers' other files to be ready beside it
            return super().handle_request(request)
        finally:
            with self.lock:
                self.now -= 1


def test_many_papers_go_up_at_once_within_their_streams_and_once_each(
    live_api, auth, school_keys, worker, tmp_path, sample
):
    exam = make_exam(live_api, auth(), provider="local", answer_key=sample["exam"]["answer_key"], title="many")
    client = MarkqClient(live_api, school_keys["A"])
    transport = CountingTransport()
    client.storage = httpx.Client(transport=transport)
    papers = [(student, sample["papers"][student]) for student in ("S01", "S02", "S03")]
    sent: list[int] = []
    state = UploadState(tmp_path / "uploads.json")
    done = client.upload_papers(exam["id"], papers, "3(2)", state=state, progress=sent.append, streams=2)
    assert [paper["student_ref"] for paper in done] == ["S01", "S02", "S03"]  # in the order given
    assert all(paper["status"] != "uploading" for paper in done)
    assert transport.puts == 6 and transport.most == 2  # every file once, two at a time
    assert sum(sent) == sum(page.stat().st_size for _, pages in papers for page in pages)
    again = client.upload_papers(exam["id"], papers, "3(2)", state=state, streams=2)  # run again
    assert [paper["id"] for paper in again] == [paper["id"] for paper in done] and transport.puts == 6
    listed = httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
    assert sorted(paper["id"] for paper in listed) == sorted(paper["id"] for paper in done)  # none twice
    for paper in done:
        marked = wait_for(live_api, auth(), paper["id"], timeout=120)
        assert marked["status"] in ("graded", "needs_review"), marked["status_reason"]
    # one paper refused: its error is raised once the others have gone up and been completed
    notes = tmp_path / "notes.txt"
    notes.write_text("not a page")
    refused = [("S04", sample["papers"]["S01"]), ("S05", [notes]), ("S06", sample["papers"]["S02"])]
    with pytest.raises(MarkqError) as error:
        client.upload_papers(exam["id"], refused, "3(2)", state=state, streams=2)
    assert error.value.status == 415, error.value
    listed = httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
    others = {
        paper["student_ref"]: paper["status"] for paper in listed if paper["student_ref"] in ("S04", "S05", "S06")
    }
    assert set(others) == {"S04", "S06"} and "uploading" not in others.values(), others
    for paper in listed:
        if paper["student_ref"] in others:
            wait_for(live_api, auth(), paper["id"], timeout=120)  # marked before the next test


class RefusingTransport(httpx.HTTPTransport):
    """Storage that refuses (403) every PUT whose URL holds `paper_id`, as for an expired URL."""

    def __init__(self, paper_id: str | None = None) -> None:
        super().__init__()
        self.paper_id = paper_id

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.paper_id and self.paper_id in str(request.url):
            return httpx.Response(403, text="refused")
        return super().handle_request(request)


def test_a_paper_whose_files_storage_refuses_fails_alone_and_the_next_run_completes_it(
    live_api, auth, school_keys, worker, tmp_path, sample
):
    exam = make_exam(live_api, auth(), provider="local", answer_key=sample["exam"]["answer_key"], title="refused")
    client = MarkqClient(live_api, school_keys["A"])
    papers = [(student, sample["papers"][student]) for student in ("S01", "S02", "S03", "S04")]
    state = UploadState(tmp_path / "uploads.json")
    transport = RefusingTransport()
    client.storage = httpx.Client(transport=transport)

    def refuse_s02s_files(reply: httpx.Response) -> None:  # the groups start in either order
        if reply.url.path.endswith("/uploads/batch") and transport.paper_id is None:
            reply.read()
            for paper in reply.json()["papers"]:
                if paper["student_ref"] == "S02":
                    transport.paper_id = paper["paper_id"]

    client.http.event_hooks["response"].append(refuse_s02s_files)
    with pytest.raises(httpx.HTTPStatusError) as error:
        client.upload_papers(exam["id"], papers, "3(2)", state=state, streams=2)  # two groups of two
    assert error.value.response.status_code == 403
    listed = {p["student_ref"]: p for p in httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json()}
    assert listed["S02"]["status"] == "uploading", listed  # the refused one waits, resumable
    assert all(listed[s]["status"] != "uploading" for s in ("S01", "S03", "S04")), listed  # the others went on
    transport.paper_id = ""  # storage takes everything now
    again = client.upload_papers(exam["id"], papers, "3(2)", state=state, streams=2)
    assert [p["id"] for p in again] == [listed[s]["id"] for s, _ in papers]  # the same four papers
    assert all(p["status"] != "uploading" for p in again), again
    for paper in again:
        wait_for(live_api, auth(), paper["id"], timeout=120)  # marked before the next test


def test_a_class_is_started_and_completed_in_one_call_each(live_api, auth, worker, sample):
    exam = make_exam(live_api, auth(), provider="local", answer_key=sample["exam"]["answer_key"], title="batch")
    base = f"{live_api}/v1/exams/{exam['id']}/uploads"
    students = ("S01", "S02", "S03")
    files = {s: [page.read_bytes() for page in sample["papers"][s]] for s in students}
    body = {
        "papers": [
            {
                "student_ref": s,
                "class_label": "3(2)",
                "files": [declare(f"p{i}.png", d) for i, d in enumerate(files[s])],
            }
            for s in students
        ]
    }
    # all or nothing: one file refused refuses the batch, naming its paper and file, and makes none
    refused = {
        "papers": [*body["papers"][:2], {**body["papers"][2], "files": [declare("notes.txt", b"x", "text/plain")]}]
    }
    reply = httpx.post(f"{base}/batch", headers=auth(), json=refused)
    assert reply.status_code == 415, reply.text
    error = reply.json()["error"]
    assert error["code"] == "unsupported_page" and error["details"]["paper"] == 2, error
    assert error["details"]["student_ref"] == "S03" and error["details"]["file"] == "notes.txt", error
    assert httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json() == []
    too_many = httpx.post(f"{base}/batch", headers=auth(), json={"papers": body["papers"] * 34})
    assert too_many.status_code == 422, too_many.text  # 102 papers: over the 100 a call takes

    reply = httpx.post(f"{base}/batch", headers=auth(), json=body)
    assert reply.status_code == 201, reply.text
    made = reply.json()["papers"]
    assert [p["student_ref"] for p in made] == list(students) and all(p["status"] == "uploading" for p in made)
    for upload, student in zip(made, students, strict=True):
        for target, data in zip(upload["files"], files[student], strict=True):
            if student != "S03" or target["number"] == 1:  # S03's second file never goes up
                assert put(target, data).status_code == 200
    ids = [p["paper_id"] for p in made]
    unknown = "00000000-0000-4000-8000-000000000000"
    reply = httpx.post(f"{base}/complete", headers=auth(), json={"paper_ids": [*ids, unknown]})
    assert reply.status_code == 200, reply.text
    done = reply.json()
    assert [p["id"] for p in done["papers"]] == ids[:2] and all(p["status"] == "queued" for p in done["papers"])
    left = {item["paper_id"]: item["error"] for item in done["incomplete"]}
    assert left[ids[2]]["code"] == "upload_incomplete" and left[ids[2]]["details"][0]["number"] == 2, left
    assert left[unknown]["code"] == "not_found" and len(left) == 2, left
    # another school cannot complete this exam's papers
    assert httpx.post(f"{base}/complete", headers=auth("B"), json={"paper_ids": ids}).status_code == 404
    # S03's file goes up; completing all three again queues S03 and leaves the others as they were
    assert put(made[2]["files"][1], files["S03"][1]).status_code == 200
    again = httpx.post(f"{base}/complete", headers=auth(), json={"paper_ids": ids}).json()
    assert [p["id"] for p in again["papers"]] == ids and again["incomplete"] == [], again
    listed = httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
    assert sorted(p["id"] for p in listed) == sorted(ids)  # three papers, each once
    for paper_id in ids:
        marked = wait_for(live_api, auth(), paper_id, timeout=120)
        assert marked["status"] in ("graded", "needs_review"), marked["status_reason"]


def test_an_upload_cut_halfway_is_resumed_by_the_cli_and_the_paper_completes_once(
    settings, app, auth, school_keys, worker, tmp_path, sample
):
    s3 = urlsplit(settings.s3_endpoint_url)
    first_page, second_page = sample["papers"]["S03"]
    with FaultProxy(s3.hostname, s3.port) as link:
        # clients reach storage through a link that will drop; the workers reach it directly
        through = settings.model_copy(update={"s3_public_endpoint_url": f"http://127.0.0.1:{link.port}"})
        with another_app(through, app) as proxied, serving(proxied) as api:
            exam = make_exam(api, auth(), provider="local", answer_key=sample["exam"]["answer_key"], title="cut link")
            env = {
                "MARKQ_API_URL": api,
                "MARKQ_API_KEY": school_keys["A"],
                "MARKQ_CONFIG": str(tmp_path / "none.toml"),
                "XDG_CACHE_HOME": str(tmp_path / "cache"),
            }
            command = ["--json", "submit", exam["id"], str(first_page), str(second_page), "--student", "S03"]
            link.cut_after(first_page.stat().st_size + second_page.stat().st_size // 2)
            cut = CliRunner().invoke(cli, command, env=env)
            assert cut.exit_code == 1 and "run the same command again to resume" in cut.output, cut.output
            started = httpx.get(f"{api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
            assert [p["status"] for p in started] == ["uploading"]
            link.restore()
            resumed = CliRunner().invoke(cli, command, env=env)
            assert resumed.exit_code == 0, resumed.output
            paper = json.loads(resumed.stdout)
            assert paper["id"] == started[0]["id"]  # the same paper, not a second one
            done = wait_for(api, auth(), paper["id"], timeout=120)
            assert done["status"] in ("graded", "needs_review"), done["status_reason"]
            again = CliRunner().invoke(cli, command, env=env)  # a third run: nothing new
            assert again.exit_code == 0, again.output
            listed = httpx.get(f"{api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
            assert [p["id"] for p in listed] == [paper["id"]]


def test_a_link_that_drops_for_a_moment_costs_one_try_again_not_the_run(
    settings, app, auth, school_keys, tmp_path, sample
):
    s3 = urlsplit(settings.s3_endpoint_url)
    pages = sample["papers"]["S04"]
    size = sum(page.stat().st_size for page in pages)
    with FaultProxy(s3.hostname, s3.port) as link:
        through = settings.model_copy(update={"s3_public_endpoint_url": f"http://127.0.0.1:{link.port}"})
        with another_app(through, app) as proxied, serving(proxied) as api:
            exam = make_exam(api, auth(), provider="local", answer_key=sample["exam"]["answer_key"], title="a drop")
            link.cut_after(size // 3)

            def back_once_dropped() -> None:  # the link comes back half a second after it dropped
                deadline = time.monotonic() + 30
                while link.mode != Mode.refusing and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.5)
                link.restore()

            comes_back = threading.Thread(target=back_once_dropped)
            comes_back.start()
            counted: list[int] = []
            paper = MarkqClient(api, school_keys["A"]).upload_paper(
                exam["id"], "S04", pages, state=UploadState(tmp_path / "state.json"), progress=counted.append
            )
            comes_back.join()
            assert paper["status"] == "queued", paper  # one run: the PUTs cut were tried again
            assert min(counted) < 0  # a cut try's bytes were taken back off the bar...
            assert sum(counted) == size  # ...which ends at the files' bytes, not more
            listed = httpx.get(f"{api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
            assert [p["id"] for p in listed] == [paper["id"]]  # one paper, created once


def test_completing_while_the_apis_storage_is_away_for_a_moment_is_tried_again(
    settings, app, auth, school_keys, tmp_path, sample
):
    s3 = urlsplit(settings.s3_endpoint_url)
    pages = sample["papers"]["S02"]
    with FaultProxy(s3.hostname, s3.port) as link:
        # the API reaches storage through a link that goes down; clients PUT to storage directly
        behind = settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{link.port}"})
        with another_app(behind, app) as proxied, serving(proxied) as api:
            exam = make_exam(api, auth(), provider="local", answer_key=sample["exam"]["answer_key"], title="away")
            client = MarkqClient(api, school_keys["A"])
            answers: list[int] = []

            def storage_down_as_it_completes(request: httpx.Request) -> None:
                if request.url.path.endswith("/complete") and not answers:
                    link.refuse()

            def storage_back_after_a_503(reply: httpx.Response) -> None:
                if reply.url.path.endswith("/complete"):
                    answers.append(reply.status_code)
                    if reply.status_code == 503:
                        link.restore()

            client.http.event_hooks = {
                "request": [storage_down_as_it_completes],
                "response": [storage_back_after_a_503],
            }
            paper = client.upload_paper(exam["id"], "S02", pages, state=UploadState(tmp_path / "state.json"))
            assert answers == [503, 200], answers  # storage away: 503; tried again a second later
            assert paper["status"] == "queued", paper
            listed = httpx.get(f"{api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
            assert [p["id"] for p in listed] == [paper["id"]]  # one paper, queued once


def class_zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def start_class(api: str, headers: dict, exam_id: str, data: bytes, **fields) -> dict:
    body = {"name": "class 3(2).zip", "size": len(data), "class_label": "3(2)", **fields}
    reply = httpx.post(f"{api}/v1/exams/{exam_id}/bulk/uploads", headers=headers, json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def wait_for_class(api: str, headers: dict, upload: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(f"{api}{upload['status_url']}", headers=headers).json()
        if state["status"] in {"done", "failed"}:
            return state
        time.sleep(0.3)
    raise AssertionError(f"the class ZIP was not unpacked: {state}")


def test_a_class_zip_by_url_is_unpacked_by_a_worker_with_every_refusal_named(live_api, auth, worker, app):
    exam = make_exam(live_api, auth(), title="class by URL")
    good = page_bytes("1. 7 x 8 = 56")
    data = class_zip(
        {
            "3(2)/S01/page2.jpg": good,
            "3(2)/S01/page1.jpg": good,
            "3(2)/S02/page1.jpg": good[: len(good) // 3],  # damaged: S02's paper is not made
            "3(2)/S03/scan.jpg": good,
            "../evil.jpg": good,  # zip slip
            "3(2)/S04/inner.zip": class_zip({"a.jpg": good}),  # nested archive
        }
    )
    upload = start_class(live_api, auth(), exam["id"], data)
    assert upload["status"] == "uploading" and upload["result"] is None
    early = httpx.post(f"{live_api}{upload['complete_url']}", headers=auth())
    assert early.status_code == 409 and early.json()["error"]["code"] == "upload_incomplete"
    assert put(upload["upload"], data).status_code == 200
    completed = httpx.post(f"{live_api}{upload['complete_url']}", headers=auth())
    assert completed.status_code == 200 and completed.json()["status"] == "queued", completed.text

    state = wait_for_class(live_api, auth(), upload)
    assert state["status"] == "done", state
    result = state["result"]
    assert [(p["student_ref"], p["pages"], p["class_label"]) for p in result["created"]] == [
        ("S01", 2, "3(2)"),
        ("S03", 1, "3(2)"),
    ]
    refused = {r["file"]: r for r in result["refused"]}
    assert set(refused) == {"3(2)/S02/page1.jpg", "../evil.jpg", "3(2)/S04/inner.zip"}
    assert refused["3(2)/S02/page1.jpg"]["status"] == 422 and "not created" in refused["3(2)/S02/page1.jpg"]["note"]
    assert "unsafe path" in refused["../evil.jpg"]["reason"]
    assert "archives inside" in refused["3(2)/S04/inner.zip"]["reason"]
    for created in result["created"]:
        paper = wait_for(live_api, auth(), created["paper_id"], statuses={"failed", "graded", "needs_review"})
        assert paper["status"] in {"graded", "needs_review"}, paper["status_reason"]
    # the archive is gone once unpacked; completing again unpacks nothing twice
    with app.extensions["markq"].sessions() as session:
        key = session.get(BulkUpload, upload["bulk_id"]).archive_key
    assert app.extensions["markq"].storage.size(key) is None
    again = httpx.post(f"{live_api}{upload['complete_url']}", headers=auth())
    assert again.status_code == 200 and again.json()["status"] == "done"
    listed = httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
    assert sorted(p["student_ref"] for p in listed) == ["S01", "S03"]
    assert httpx.get(f"{live_api}{upload['status_url']}", headers=auth("B")).status_code == 404


def test_a_class_zip_unpacked_again_after_a_crash_lists_its_papers_once(live_api, auth, worker, app):
    from worker.tasks import unpack_bulk

    exam = make_exam(live_api, auth(), title="class crash")
    good = page_bytes("1. 7 x 8 = 56")
    data = class_zip({"S01__1.jpg": good, "S02__1.jpg": good, "S03__1.jpg": good})
    upload = start_class(live_api, auth(), exam["id"], data, roster=None)
    assert put(upload["upload"], data).status_code == 200
    assert httpx.post(f"{live_api}{upload['complete_url']}", headers=auth()).status_code == 200
    done = wait_for_class(live_api, auth(), upload)
    made = [p["paper_id"] for p in done["result"]["created"]]
    assert len(made) == 3
    for paper_id in made:  # marked before the rows are touched below
        wait_for(live_api, auth(), paper_id, statuses={"failed", "graded", "needs_review"})
    # as a worker killed after the first paper's commit leaves it: unpacking, one paper made and
    # listed, the archive still stored (a finished unpacking removed it: it is put back)
    with app.extensions["markq"].sessions() as session:
        bulk = session.get(BulkUpload, upload["bulk_id"])
        app.extensions["markq"].storage.put(bulk.archive_key, io.BytesIO(data), "application/zip")
        bulk.status = BulkStatus.unpacking
        bulk.result = {"created": [bulk.result["created"][0]], "existing": [], "refused": []}
        for paper_id in made[1:]:
            session.delete(session.get(Paper, paper_id))
        session.commit()
    with app.app_context():
        # while the claim is fresh (its worker may be alive), a second run leaves it alone
        assert unpack_bulk(upload["bulk_id"]) == "nothing to unpack"
    with app.extensions["markq"].sessions() as session:
        stale = utcnow() - timedelta(seconds=app.extensions["markq"].settings.stuck_queued_seconds + 1)
        session.execute(update(BulkUpload).where(BulkUpload.id == upload["bulk_id"]).values(updated_at=stale))
        session.commit()
    with app.app_context():
        assert unpack_bulk(upload["bulk_id"]) == "done"
    state = httpx.get(f"{live_api}{upload['status_url']}", headers=auth()).json()
    created = state["result"]["created"]
    assert [p["student_ref"] for p in created] == ["S01", "S02", "S03"] and state["result"]["existing"] == []
    assert created[0]["paper_id"] == made[0]  # listed once, not again as existing nor made twice
    listed = httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
    assert sorted(p["id"] for p in listed) == sorted(p["paper_id"] for p in created)
    for paper in created:
        wait_for(live_api, auth(), paper["paper_id"], statuses={"failed", "graded", "needs_review"})


def test_a_class_zip_that_is_not_a_zip_fails_with_the_reason_and_makes_nothing(live_api, auth, worker, settings):
    exam = make_exam(live_api, auth(), title="not a zip")
    data = page_bytes("not an archive")
    upload = start_class(live_api, auth(), exam["id"], data)
    assert put(upload["upload"], data).status_code == 200
    assert httpx.post(f"{live_api}{upload['complete_url']}", headers=auth()).status_code == 200
    state = wait_for_class(live_api, auth(), upload)
    assert state["status"] == "failed" and state["status_reason"].startswith(
        "archive_refused: class 3(2).zip: not a readable ZIP"
    )
    assert state["result"] is None
    assert httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json() == []
    too_big = {"name": "huge.zip", "size": settings.bulk_max_total_bytes + 1}
    reply = httpx.post(f"{live_api}/v1/exams/{exam['id']}/bulk/uploads", headers=auth(), json=too_big)
    assert reply.status_code == 413 and str(settings.bulk_max_total_bytes) in reply.json()["error"]["message"]
    bad_roster = {"name": "c.zip", "size": 10, "roster": "name,student\na,b\n"}
    reply = httpx.post(f"{live_api}/v1/exams/{exam['id']}/bulk/uploads", headers=auth(), json=bad_roster)
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_roster"


def noise_page(seed: int) -> bytes:
    """A 300 dpi page of grain and a few lines, about 3 MB as JPEG: big files, real pages."""
    rng = random.Random(seed)
    image = Image.effect_noise((2480, 3508), 40).point(lambda v: 180 + v // 4).convert("RGB")
    draw = ImageDraw.Draw(image)
    for line in range(12):
        y = 300 + line * 240
        draw.line((200, y, 2200 - rng.randint(0, 600), y), fill=(20, 20, 20), width=6)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def test_a_large_class_zip_goes_in_parts_and_the_cli_resumes_from_the_last_part(
    settings, app, auth, school_keys, worker, tmp_path
):
    folder = tmp_path / "3(2)"
    for n in range(6):
        (folder / f"S{n + 1:02d}").mkdir(parents=True)
        (folder / f"S{n + 1:02d}" / "page1.jpg").write_bytes(noise_page(n))
    size = sum(p.stat().st_size for p in folder.rglob("*.jpg"))
    assert size > 2 * PART_BYTES, size  # three parts or more
    s3 = urlsplit(settings.s3_endpoint_url)
    with FaultProxy(s3.hostname, s3.port) as link:
        through = settings.model_copy(update={"s3_public_endpoint_url": f"http://127.0.0.1:{link.port}"})
        with another_app(through, app) as proxied, serving(proxied) as api:
            exam = make_exam(api, auth(), title="large class")
            env = {
                "MARKQ_API_URL": api,
                "MARKQ_API_KEY": school_keys["A"],
                "MARKQ_CONFIG": str(tmp_path / "none.toml"),
                "XDG_CACHE_HOME": str(tmp_path / "cache"),
            }
            command = ["--json", "submit", exam["id"], str(folder), "--class", "3(2)"]
            link.cut_after(PART_BYTES + PART_BYTES // 2)  # the link drops in the second part
            cut = CliRunner().invoke(cli, command, env=env)
            assert cut.exit_code == 1 and "run the same command again to resume" in cut.output, cut.output
            with app.extensions["markq"].sessions() as session:
                (bulk,) = session.scalars(select(BulkUpload).where(BulkUpload.exam_id == exam["id"])).all()
                assert bulk.status == BulkStatus.uploading and bulk.parts_id is not None
            state = httpx.get(f"{api}/v1/bulk/{bulk.id}/upload", headers=auth()).json()["upload"]
            assert [p["uploaded"] for p in state["parts"]][:2] == [True, False], state["parts"]
            link.restore()
            resumed = CliRunner().invoke(cli, command, env=env)
            assert resumed.exit_code == 0, resumed.output
            assert json.loads(resumed.stdout) == {"created": 6, "existing": 0, "refused": 0}
            with app.extensions["markq"].sessions() as session:
                (again,) = session.scalars(select(BulkUpload).where(BulkUpload.exam_id == exam["id"])).all()
                assert again.id == bulk.id and again.status == BulkStatus.done  # the same upload, resumed
                assert app.extensions["markq"].storage.size(again.archive_key) is None  # unpacked, removed
            listed = httpx.get(f"{api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
            assert sorted(p["student_ref"] for p in listed) == [f"S{n:02d}" for n in range(1, 7)]
            for paper in listed:
                wait_for(api, auth(), paper["id"], statuses={"failed", "graded", "needs_review"}, timeout=120)
            third = CliRunner().invoke(cli, command, env=env)  # sent again: nothing made twice
            assert json.loads(third.stdout) == {"created": 0, "existing": 6, "refused": 0}


def test_a_class_zip_joined_by_a_complete_whose_commit_was_lost_is_resumed_and_completed(live_api, auth, worker, app):
    """`complete` joined the parts in storage, then its commit was lost: asking for the upload
    again says every part is stored, and completing again queues the ZIP once."""
    exam = make_exam(live_api, auth(), title="lost commit")
    data = class_zip({f"S{n}/page1.jpg": noise_page(10 + n) for n in range(1, 4)})
    assert len(data) > PART_BYTES
    upload = start_class(live_api, auth(), exam["id"], data)
    for part in upload["upload"]["parts"]:
        chunk = data[part["offset"] : part["offset"] + part["size"]]
        assert httpx.put(part["url"], content=chunk).status_code == 200
    storage = app.extensions["markq"].storage
    with app.extensions["markq"].sessions() as session:
        bulk = session.get(BulkUpload, upload["bulk_id"])
        storage.finish_parts(bulk.archive_key, bulk.parts_id)  # as complete did, before its commit failed
    again = httpx.get(f"{live_api}/v1/bulk/{upload['bulk_id']}/upload", headers=auth())
    assert again.status_code == 200, again.text
    assert all(part["uploaded"] for part in again.json()["upload"]["parts"]) and again.json()["upload"]["uploaded"]
    completed = httpx.post(f"{live_api}{upload['complete_url']}", headers=auth())
    assert completed.status_code == 200 and completed.json()["status"] == "queued", completed.text
    state = wait_for_class(live_api, auth(), upload)
    assert sorted(p["student_ref"] for p in state["result"]["created"]) == ["S1", "S2", "S3"]
    for paper in state["result"]["created"]:
        wait_for(live_api, auth(), paper["paper_id"], statuses={"failed", "graded", "needs_review"})


def test_a_class_zip_whose_storage_fails_mid_unpacking_is_retried_and_made_once(live_api, auth, worker, app):
    """Storage away when the worker fetches the ZIP: the run lets go of it and its retry makes the
    papers (run here in this process, the retry applied at once)."""
    from worker.tasks import unpack_bulk

    exam = make_exam(live_api, auth(), title="storage blip")
    data = class_zip({"S1/page1.jpg": page_bytes("S1"), "S2/page1.jpg": page_bytes("S2")})
    upload = start_class(live_api, auth(), exam["id"], data)
    assert put(upload["upload"], data).status_code == 200
    res = app.extensions["markq"]
    with res.sessions() as session:  # completed as the API does, the unpacking left to this test
        bulk = session.get(BulkUpload, upload["bulk_id"])
        assert uploads.complete_bulk_upload(res.storage, bulk)
        session.commit()
    real, calls = res.storage.download, []

    def away_once(key, out):
        calls.append(key)
        if len(calls) == 1:
            raise StorageError(f"could not read {key}: connection refused")
        return real(key, out)

    res.storage.download = away_once
    try:
        with app.app_context():
            outcome = unpack_bulk.apply(args=(upload["bulk_id"],))
    finally:
        res.storage.download = real
    assert len(calls) == 2, outcome.state  # the first run failed and let go; its retry claimed it and ran
    state = httpx.get(f"{live_api}{upload['status_url']}", headers=auth()).json()
    assert state["status"] == "done" and sorted(p["student_ref"] for p in state["result"]["created"]) == ["S1", "S2"]
    listed = httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth()).json()
    assert sorted(p["student_ref"] for p in listed) == ["S1", "S2"]  # made once
    for paper in listed:
        wait_for(live_api, auth(), paper["id"], statuses={"failed", "graded", "needs_review"})
