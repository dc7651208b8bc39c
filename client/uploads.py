"""Uploading a paper by URL from the client: declare the files, PUT each straight to storage with
a byte progress callback, complete. What was started is remembered on disk, so a run cut short (a
dropped link, Ctrl-C) resumes on the next run: only the files not yet stored are sent again, and
no paper is created twice."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".pdf": "application/pdf",
}
CHUNK = 256 * 1024
Progress = Callable[[int], None]


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


class UploadState:
    """Which paper an earlier run started for the same files: a small JSON file per user."""

    def __init__(self, path: Path | None = None) -> None:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        self.path = path or cache / "markq" / "uploads.json"
        self._lock = threading.Lock()  # papers uploaded at once remember and forget in turn

    def _read(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _write(self, entries: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(entries, indent=1))
        partial.replace(self.path)

    @staticmethod
    def signature(api: str, exam_id: str, student_ref: str, pages: Sequence[Path]) -> str:
        """The same files (names, sizes, times) for the same student and exam on the same server."""
        parts = [api, exam_id, student_ref] + [
            f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in pages
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def get(self, signature: str) -> str | None:
        return self._read().get(signature)

    def remember(self, signature: str, paper_id: str) -> None:
        with self._lock:
            self._write({**self._read(), signature: paper_id})

    def forget(self, signature: str) -> None:
        with self._lock:
            entries = self._read()
            if entries.pop(signature, None) is not None:
                self._write(entries)


def _chunks(path: Path, progress: Progress | None) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk
            if progress is not None:
                progress(len(chunk))


def _range(path: Path, offset: int, size: int, progress: Progress | None) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(offset)
        left = size
        while left > 0 and (chunk := handle.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk
            if progress is not None:
                progress(len(chunk))


def put_part(http: httpx.Client, part: dict[str, Any], path: Path, progress: Progress | None = None) -> None:
    """PUT one part of a large file (its bytes from `offset`) to its upload URL, tried again as
    `with_tries` says."""
    reply = with_tries(
        lambda counted: http.put(
            part["url"],
            content=_range(path, part["offset"], part["size"], counted),
            headers={"Content-Length": str(part["size"])},
        ),
        TRIED_AGAIN,
        PUT_ATTEMPTS,
        PUT_BACKOFF,
        progress,
    )
    _refused(reply, f"part {part['number']} of {path.name}")


# A link that drops for a moment, or storage briefly away (a 5xx, S3's 503 SlowDown), costs one
# file's bytes again, not the run: each PUT is tried up to PUT_ATTEMPTS times, PUT_BACKOFF seconds
# apart and doubling. A PUT replaces its object whole, so a try again never stores a file twice.
# Past the last try the error goes up, and running the command again resumes (`UploadState`).
PUT_ATTEMPTS = 3
PUT_BACKOFF = 1.0
TRIED_AGAIN = {408, 429, 500, 502, 503, 504}


def with_tries(
    send: Callable[[Progress], httpx.Response],
    statuses: set[int],
    attempts: int,
    backoff: float,
    progress: Progress | None = None,
) -> httpx.Response:
    """`send` (given a progress callback for the bytes it streams) until a reply whose status is
    not in `statuses`, or `attempts` tries, `backoff` seconds apart and doubling; a dropped
    connection is tried again too, the last one raised. A try that fails takes the bytes it
    counted back off `progress`. The last reply, whatever its status."""
    for attempt in range(1, attempts + 1):
        sent = 0

        def counted(size: int) -> None:
            nonlocal sent
            sent += size
            if progress is not None:
                progress(size)

        try:
            reply = send(counted)
        except httpx.TransportError:
            if attempt == attempts:
                raise
        else:
            if reply.status_code not in statuses or attempt == attempts:
                return reply
        if progress is not None and sent:
            progress(-sent)  # the bar shows what is stored, not what was sent
        time.sleep(backoff * 2 ** (attempt - 1))
    raise ValueError("attempts must be at least 1")


def _refused(reply: httpx.Response, what: str) -> None:
    if reply.status_code >= 300:
        raise httpx.HTTPStatusError(
            f"storage refused {what}: {reply.status_code} {reply.text[:300]}", request=reply.request, response=reply
        )


def storage_client() -> httpx.Client:
    """For PUTs to upload URLs: no API key (the URL carries its own authority: a presigned
    signature or a token), connections kept open between files, no write timeout (a slow link
    may take long; a dead one still times out reading)."""
    return httpx.Client(timeout=httpx.Timeout(60.0, write=None))


def put_file(http: httpx.Client, target: dict[str, Any], path: Path, progress: Progress | None = None) -> None:
    """PUT one file to its upload URL, streamed from disk, tried again as `with_tries` says."""
    headers = {**target["headers"], "Content-Length": str(path.stat().st_size)}
    reply = with_tries(
        lambda counted: http.put(target["url"], content=_chunks(path, counted), headers=headers),
        TRIED_AGAIN,
        PUT_ATTEMPTS,
        PUT_BACKOFF,
        progress,
    )
    _refused(reply, f"file {target['number']} ({path.name})")
