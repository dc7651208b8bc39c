"""A small Python client for the markq HTTP API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from client.uploads import Progress, UploadState, content_type, put_file, put_part, storage_client, with_tries

FINISHED = frozenset({"graded", "needs_review", "failed", "paused"})

# A moment's drop on the way to the API, or the API briefly unable to answer (502/503/504: its
# storage or database away, a proxy in between), is tried again where that is safe: reads, and
# completing an upload (completing twice queues once); up to API_ATTEMPTS tries, API_BACKOFF
# seconds apart and doubling. Creating is never tried again (a reply lost after the paper was made
# would make a second one): running the command again resumes instead.
API_ATTEMPTS = 3
API_BACKOFF = 1.0
API_TRIED_AGAIN = {502, 503, 504}


def _declared(student_ref: str, pages: Sequence[Path], class_label: str) -> dict[str, Any]:
    """One paper's upload as the API declares it: the student, the class, each file's name, size and type."""
    files = [{"name": p.name, "size": p.stat().st_size, "content_type": content_type(p)} for p in pages]
    return {"student_ref": student_ref, "class_label": class_label, "files": files}


class MarkqError(Exception):
    """An error reply from the API, in its one shape."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def _one_at_a_time(progress: Progress) -> Progress:
    """`progress` called by one thread at a time (files go up from several)."""
    lock = threading.Lock()

    def counted(size: int) -> None:
        with lock:
            progress(size)

    return counted


class MarkqClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}"},
        )
        self.storage = storage_client()

    def _call(self, method: str, path: str, *, again: bool = False, **kwargs: Any) -> Any:
        return self._request(method, path, again=again, **kwargs).json()

    def _request(self, method: str, path: str, *, again: bool = False, **kwargs: Any) -> httpx.Response:
        """One call to the API, checked; a GET, or a call marked `again` (safe to repeat), is
        tried again on a dropped connection or a 502/503/504."""
        attempts = API_ATTEMPTS if again or method == "GET" else 1
        reply = with_tries(lambda _: self.http.request(method, path, **kwargs), API_TRIED_AGAIN, attempts, API_BACKOFF)
        return self._checked(reply)

    def _every_page(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """A whole list, page after page, following each page's Link rel="next"."""
        items: list[Any] = []
        url: str | None = path
        while url is not None:
            reply = self._request("GET", url, params=params)
            items += reply.json()
            url, params = reply.links.get("next", {}).get("url"), None
        return items

    def _checked(self, reply: httpx.Response) -> httpx.Response:
        if reply.status_code >= 400:
            try:
                error = reply.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": reply.text[:500]}
            raise MarkqError(
                reply.status_code, error.get("code", "error"), error.get("message", ""), error.get("details")
            )
        return reply

    def create_exam(self, exam: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/exams", json=exam)

    def exam(self, exam_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/exams/{exam_id}")

    def papers(self, exam_id: str) -> list[dict[str, Any]]:
        return self._every_page(f"/v1/exams/{exam_id}/papers", {"page_size": 1000})

    def exams(self, **filters: Any) -> list[dict[str, Any]]:
        return self._every_page("/v1/exams", {"page_size": 100, **filters})

    def report(self, exam_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/exams/{exam_id}/report")

    def students(self, class_label: str | None = None) -> list[dict[str, Any]]:
        return self._every_page(
            "/v1/students", {"page_size": 1000, **({"class_label": class_label} if class_label else {})}
        )

    def student(self, student_ref: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/students/{quote(student_ref, safe='')}")

    def knowledge_points(self, **filters: Any) -> list[dict[str, Any]]:
        return self._every_page("/v1/knowledge-points", {"page_size": 1000, **filters})

    def add_knowledge_points(self, csv_file: Path, subject: str, grade: int) -> list[dict[str, Any]]:
        """The school's own points from a CSV file (header: id, name_zh, name_en, grade, aliases, refines)."""
        return self._call(
            "POST",
            "/v1/knowledge-points.csv",
            params={"subject": subject, "grade": grade},
            content=csv_file.read_bytes(),
            headers={"Content-Type": "text/csv"},
        )

    def school_weak_points(self, **window: Any) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/school/weak-points", params=window)

    def paper(self, paper_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/papers/{paper_id}")

    def submit_paper(
        self, exam_id: str, student_ref: str, pages: Sequence[Path], class_label: str = ""
    ) -> dict[str, Any]:
        """Upload one paper's page files, in order. Files are streamed, not read whole."""
        return self._upload(
            f"/v1/exams/{exam_id}/papers", pages, data={"student_ref": student_ref, "class_label": class_label}
        )

    def upload_paper(
        self,
        exam_id: str,
        student_ref: str,
        pages: Sequence[Path],
        class_label: str = "",
        *,
        state: UploadState | None = None,
        progress: Progress | None = None,
        streams: int = 3,
    ) -> dict[str, Any]:
        """Upload one paper's files straight to storage by URL, up to `streams` at once, then
        complete it. With `state`, a paper an earlier run started for the same files is resumed:
        only what is not stored yet is sent, and nothing is created twice (running it again after
        it completed returns the paper). `progress` is called with each chunk's bytes, one call at
        a time."""
        counted = _one_at_a_time(progress) if progress is not None else None
        signature, upload = self._earlier(exam_id, student_ref, pages, state)
        if upload is not None and upload.get("status") != "uploading":
            return upload  # completed by an earlier run: the paper as it is, nothing sent again
        if upload is None:
            upload = self._call("POST", f"/v1/exams/{exam_id}/uploads", json=_declared(student_ref, pages, class_label))
            if state:
                state.remember(signature, str(upload["paper_id"]))
        with ThreadPoolExecutor(max(1, streams)) as pool:
            for file in self._queue_files(pool, upload, pages, counted):
                file.result()  # the first file refused or cut (in order) is raised here
        return self._call("POST", upload["complete_url"], again=True)

    def _earlier(
        self, exam_id: str, student_ref: str, pages: Sequence[Path], state: UploadState | None
    ) -> tuple[str, dict[str, Any] | None]:
        """The files' signature, and what an earlier run started for them (see `_resumed`)."""
        signature = UploadState.signature(str(self.http.base_url), exam_id, student_ref, pages)
        earlier = state.get(signature) if state else None
        return signature, self._resumed(f"/v1/papers/{earlier}" if earlier else None)

    def _queue_files(
        self, pool: ThreadPoolExecutor, upload: dict[str, Any], pages: Sequence[Path], counted: Progress | None
    ) -> list[Future[None]]:
        """Queue a PUT in `pool` for each file of the upload not stored yet (in order)."""
        queued = []
        for target, page in zip(upload["files"], pages, strict=True):
            if not target["uploaded"]:
                queued.append(pool.submit(put_file, self.storage, target, page, counted))
            elif counted is not None:
                counted(page.stat().st_size)
        return queued

    def upload_papers(
        self,
        exam_id: str,
        papers: Sequence[tuple[str, Sequence[Path]]],
        class_label: str = "",
        *,
        state: UploadState | None = None,
        progress: Progress | None = None,
        streams: int = 4,
    ) -> list[dict[str, Any]]:
        """Upload many papers by URL, `(student_ref, pages)` each, with up to `streams` files going
        up at once, whichever papers they belong to. Papers go in groups of `streams`: one call
        starts a group's papers and one completes them (`/uploads/batch`, `/uploads/complete`),
        and a group's calls are made while the group before it has files going up, so the link
        never waits on the API. Returns each paper as completing it answered, in the order given;
        resumes as `upload_paper` does. A paper refused or cut off raises its error once the others
        have gone up and been completed: run it again with the same `state` and only what is
        missing is sent."""
        counted = _one_at_a_time(progress) if progress is not None else None
        size = max(1, streams)
        # the streams: files go up in the order their groups gave them, so a group finishes (and is
        # completed, and the next one started) while the group after it still has files to send
        with ThreadPoolExecutor(size) as streams_pool:
            run = _Batches(self, exam_id, papers, class_label, state, counted, streams_pool)
            # two groups under way: while one waits for the API, the other's files take the streams
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(run.group, (range(n, min(n + size, len(papers))) for n in range(0, len(papers), size))))
        if run.errors:
            raise run.errors[min(run.errors)]
        return [paper for paper in run.results if paper is not None]

    def _start_group(
        self,
        exam_id: str,
        papers: Sequence[tuple[str, Sequence[Path]]],
        class_label: str,
        numbers: list[int],
        errors: dict[int, Exception],
    ) -> dict[int, dict[str, Any]]:
        """Start these papers' uploads in one call; if the batch is refused (one paper's file, say),
        one call each, so only the refused paper fails (its error in `errors`)."""
        if not numbers:
            return {}
        declared = [_declared(*papers[n], class_label) for n in numbers]
        try:
            made = self._call("POST", f"/v1/exams/{exam_id}/uploads/batch", json={"papers": declared})
            return dict(zip(numbers, made["papers"], strict=True))
        except MarkqError as exc:
            if not 400 <= exc.status < 500 or len(numbers) == 1:
                errors.update(dict.fromkeys(numbers, exc))
                return {}
        except httpx.TransportError as exc:  # the link dropped: the group's error, raised at the end
            errors.update(dict.fromkeys(numbers, exc))
            return {}
        started = {}
        for n, body in zip(numbers, declared, strict=True):
            try:
                started[n] = self._call("POST", f"/v1/exams/{exam_id}/uploads", json=body)
            except (MarkqError, httpx.TransportError) as exc:
                errors[n] = exc
        return started

    def _resumed(self, path: str | None) -> dict[str, Any] | None:
        """What an earlier run started at `path` (a paper's or a class ZIP's): its upload again
        (fresh URLs, what is stored already), itself if it was completed, or None if it is gone."""
        if path is None:
            return None
        try:
            return self._call("GET", f"{path}/upload")
        except MarkqError as exc:
            if exc.status == 409:
                return self._call("GET", path)
            if exc.status == 404:
                return None
            raise

    def give_template(self, exam_id: str, pages: Sequence[Path]) -> dict[str, Any]:
        """Upload the exam's blank paper, its pages in order; it is read in the background."""
        return self._upload(f"/v1/exams/{exam_id}/template", pages)

    def derive_template(self, exam_id: str) -> dict[str, Any]:
        """Ask markq to derive the blank paper from the exam's first papers."""
        return self._call("POST", f"/v1/exams/{exam_id}/template/derive")

    def template(self, exam_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/exams/{exam_id}/template")

    def _upload(self, path: str, pages: Sequence[Path], data: dict[str, str] | None = None) -> Any:
        handles = [page.open("rb") for page in pages]
        try:
            files = [("pages", (page.name, handle)) for page, handle in zip(pages, handles, strict=True)]
            return self._call("POST", path, data=data or {}, files=files)
        finally:
            for handle in handles:
                handle.close()

    def upload_class(
        self,
        exam_id: str,
        archive: Path,
        name: str,
        class_label: str = "",
        roster: Path | None = None,
        *,
        state: UploadState | None = None,
        signature: str | None = None,
        progress: Progress | None = None,
        timeout: float = 3600.0,
    ) -> dict[str, Any]:
        """Upload one class's ZIP straight to storage by URL and wait while a worker unpacks it:
        `{"created", "existing", "refused"}`. A large ZIP goes in parts; with `state` and
        `signature` (the same class's files), a run cut short resumes from the parts stored and
        creates nothing twice. Sending the same class again creates no paper twice."""
        known = state.get(signature) if state and signature else None
        upload = self._resumed(f"/v1/bulk/{known}" if known else None)
        if upload is None:
            body: dict[str, Any] = {"name": name, "size": archive.stat().st_size, "class_label": class_label}
            if roster is not None:
                try:
                    body["roster"] = roster.read_text("utf-8-sig")
                except UnicodeDecodeError as exc:
                    raise MarkqError(422, "invalid_roster", f"{roster}: not UTF-8 text ({exc.reason})") from exc
            upload = self._call("POST", f"/v1/exams/{exam_id}/bulk/uploads", json=body)
            if state and signature:
                state.remember(signature, str(upload["bulk_id"]))
        if upload["upload"] is not None:  # still uploading
            self._send_archive(upload["upload"], archive, progress)
            state_now = self._call("POST", upload["complete_url"], again=True)
        else:
            state_now = self._call("GET", upload["status_url"])
        deadline = time.monotonic() + timeout
        while state_now["status"] not in {"done", "failed"}:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: not unpacked after {timeout:.0f}s (it is {state_now['status']})")
            time.sleep(1.0)
            state_now = self._call("GET", upload["status_url"])
        if state and signature:
            state.forget(signature)  # done: the same files sent again are a new run (nothing made twice)
        if state_now["status"] == "failed":
            code, _, message = (state_now["status_reason"] or "").partition(": ")
            raise MarkqError(422, code or "archive_refused", message or name)
        return state_now["result"]

    def _send_archive(self, target: dict[str, Any], archive: Path, progress: Progress | None) -> None:
        """What is not stored yet of a class ZIP: its missing parts, or the whole file."""
        pieces = target.get("parts") or [target]
        for piece in pieces:
            if piece["uploaded"]:
                if progress is not None:
                    progress(piece["size"])
            elif target.get("parts"):
                put_part(self.storage, piece, archive, progress)
            else:
                put_file(self.storage, piece, archive, progress)

    def submit_class(
        self, exam_id: str, archive: BinaryIO, filename: str, class_label: str = "", roster: Path | None = None
    ) -> dict[str, Any]:
        """Upload one class's ZIP to the bulk endpoint in the request (streamed from `archive`); for
        small classes and servers without upload URLs. `upload_class` sends it by URL."""
        files: list[tuple[str, tuple[str, Any]]] = [("archive", (filename, archive))]
        handle = roster.open("rb") if roster else None
        try:
            if handle is not None:
                files.append(("roster", (roster.name, handle)))  # type: ignore[union-attr]
            return self._call("POST", f"/v1/exams/{exam_id}/bulk", data={"class_label": class_label}, files=files)
        finally:
            if handle is not None:
                handle.close()

    def download(self, path: str) -> bytes:
        """A file the API serves (an image, a CSV), or the API's error."""
        return self._request("GET", path).content

    def report_csv(self, exam_id: str, table: str = "papers") -> bytes:
        return self._request("GET", f"/v1/exams/{exam_id}/report.csv", params={"table": table}).content

    def share(self, exam_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/exams/{exam_id}/share")

    def wait_for_exam(
        self, exam_id: str, timeout: float = 600.0, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Poll until every paper of the exam has finished (graded, needs review, failed or paused)."""
        deadline = time.monotonic() + timeout
        while True:
            exam = self.exam(exam_id)
            if on_progress:
                on_progress(exam)
            waiting = sum(n for status, n in exam["progress"].items() if status not in FINISHED)
            if waiting == 0:
                return exam
            if time.monotonic() > deadline:
                raise TimeoutError(f"exam {exam_id}: {waiting} papers still waiting after {timeout:.0f}s")
            time.sleep(1.0)


@dataclass
class _Batches:
    """One `upload_papers` run: its papers, what each came to, and each one's error."""

    client: MarkqClient
    exam_id: str
    papers: Sequence[tuple[str, Sequence[Path]]]
    class_label: str
    state: UploadState | None
    counted: Progress | None
    streams: ThreadPoolExecutor
    results: list[dict[str, Any] | None] = field(default_factory=list)
    errors: dict[int, Exception] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.papers)

    def group(self, numbers: range) -> None:
        """Start these papers (one call; resumed ones as they were), send their files, complete
        them (one call). Errors are kept by paper, for the caller to raise once all are done."""
        uploads = self._open(numbers)
        ready = []
        sending = {
            n: self.client._queue_files(self.streams, u, self.papers[n][1], self.counted) for n, u in uploads.items()
        }
        for n, files in sending.items():
            try:
                for file in files:
                    file.result()
                ready.append(n)
            except Exception as exc:  # noqa: BLE001 - this paper's error; the others go on
                self.errors[n] = exc
        if ready:
            self._complete({n: uploads[n] for n in ready})

    def _open(self, numbers: range) -> dict[int, dict[str, Any]]:
        uploads: dict[int, dict[str, Any]] = {}
        fresh: dict[int, str] = {}  # paper number: its files' signature
        for n in numbers:
            try:
                signature, upload = self.client._earlier(self.exam_id, *self.papers[n], self.state)
            except Exception as exc:  # noqa: BLE001 - raised once the others are done
                self.errors[n] = exc
                continue
            if upload is None:
                fresh[n] = signature
            elif upload.get("status") != "uploading":
                self.results[n] = upload  # completed by an earlier run
            else:
                uploads[n] = upload
        started = self.client._start_group(self.exam_id, self.papers, self.class_label, list(fresh), self.errors)
        for n, upload in started.items():
            uploads[n] = upload
            if self.state:
                self.state.remember(fresh[n], str(upload["paper_id"]))
        return uploads

    def _complete(self, uploads: dict[int, dict[str, Any]]) -> None:
        try:
            done = self.client._call(
                "POST",
                f"/v1/exams/{self.exam_id}/uploads/complete",
                json={"paper_ids": [upload["paper_id"] for upload in uploads.values()]},
                again=True,
            )
        except Exception as exc:  # noqa: BLE001 - the group stays uploading: running again resumes it
            self.errors.update(dict.fromkeys(uploads, exc))
            return
        by_id = {paper["id"]: paper for paper in done["papers"]}
        left = {item["paper_id"]: item["error"] for item in done["incomplete"]}
        for n, upload in uploads.items():
            paper_id = str(upload["paper_id"])
            if paper_id in by_id:
                self.results[n] = by_id[paper_id]
            else:
                error = left.get(paper_id, {"code": "upload_incomplete", "message": "not completed"})
                self.errors[n] = MarkqError(409, error["code"], error["message"], error.get("details"))
