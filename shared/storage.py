"""One storage interface for page images and raw replies: a local folder or S3 (MinIO in compose).

Keys are built by `page_key` and friends from ids only, never from a client's file name.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote

import boto3
import botocore.session
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.client import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.utils import parse_timestamp

from shared.settings import Settings


class StorageError(Exception):
    """The storage could not do what was asked."""


class ObjectNotFound(StorageError):
    pass


class Storage(Protocol):
    def put(self, key: str, stream: BinaryIO, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def download(self, key: str, out: BinaryIO) -> None:
        """Stream the object into `out` (a class ZIP is too big to hold in memory)."""
        ...

    def presign_get(self, key: str, expires_seconds: int) -> str | None:
        """A URL the provider can fetch, or None when the storage is not reachable from outside."""
        ...

    def presign_put(self, key: str, content_type: str, expires_seconds: int) -> str | None:
        """A URL a client PUTs the object to, or None when the storage has none (the API's own
        upload endpoint stands in)."""
        ...

    def size(self, key: str) -> int | None:
        """The stored object's size in bytes, or None when there is no such object."""
        ...

    # A large upload in parts, each PUT to its own presigned URL, so a dropped link resumes from
    # the last part stored (S3 only: the local folder takes one streamed PUT).
    def start_parts(self, key: str, content_type: str) -> str | None:
        """The id of a new multipart upload, or None when the storage has no URLs for parts."""
        ...

    def presign_part(self, key: str, upload_id: str, number: int, expires_seconds: int) -> str: ...
    def stored_parts(self, key: str, upload_id: str) -> dict[int, int]:
        """The parts stored so far, by number, with their sizes."""
        ...

    def finish_parts(self, key: str, upload_id: str) -> None:
        """Join the stored parts into the object."""
        ...

    def abort_parts(self, key: str, upload_id: str) -> None: ...

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every object under `prefix` with its size: one listing, not a request per object."""
        ...

    def delete(self, key: str) -> None: ...
    def check(self) -> None:
        """Raise StorageError unless the storage answers."""
        ...


def paper_prefix(school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID) -> str:
    return f"{school_id}/{exam_id}/{paper_id}"


def original_page_key(school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID, number: int) -> str:
    return f"{paper_prefix(school_id, exam_id, paper_id)}/page-{number}.orig"


def template_page_key(school_id: int, exam_id: uuid.UUID, number: int) -> str:
    return f"{school_id}/{exam_id}/template/page-{number}.orig"


def question_crop_key(school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID, question_id: str) -> str:
    return f"{paper_prefix(school_id, exam_id, paper_id)}/crops/question-{question_id}.jpg"


def normalised_page_key(school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID, number: int) -> str:
    return f"{paper_prefix(school_id, exam_id, paper_id)}/page-{number}.jpg"


def vision_crops_key(school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID) -> str:
    """A vision-lane paper's questions cut from its pages aligned to the exam's blank paper."""
    return f"{paper_prefix(school_id, exam_id, paper_id)}/vision-crops.jpg"


def crop_sheet_key(school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID) -> str:
    """The cascade's crops of the questions the offline reader was unsure of (read once a paper)."""
    return f"{paper_prefix(school_id, exam_id, paper_id)}/crops.jpg"


def reply_key(school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID, attempt: int) -> str:
    return f"{paper_prefix(school_id, exam_id, paper_id)}/reply-{attempt}.json"


class LocalStorage:
    """A folder on disk: the embedded default. It has no URL a remote provider could fetch."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"key escapes the storage folder: {key!r}")
        return path

    def put(self, key: str, stream: BinaryIO, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as out:
                shutil.copyfileobj(stream, out, length=1024 * 1024)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def download(self, key: str, out: BinaryIO) -> None:
        try:
            with self._path(key).open("rb") as source:
                shutil.copyfileobj(source, out, length=1024 * 1024)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def presign_get(self, key: str, expires_seconds: int) -> str | None:
        return None

    def presign_put(self, key: str, content_type: str, expires_seconds: int) -> str | None:
        return None

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def start_parts(self, key: str, content_type: str) -> str | None:
        return None

    def presign_part(self, key: str, upload_id: str, number: int, expires_seconds: int) -> str:
        raise StorageError("a storage folder takes no uploads in parts")

    def stored_parts(self, key: str, upload_id: str) -> dict[int, int]:
        raise StorageError("a storage folder takes no uploads in parts")

    def finish_parts(self, key: str, upload_id: str) -> None:
        raise StorageError("a storage folder takes no uploads in parts")

    def abort_parts(self, key: str, upload_id: str) -> None:
        return None

    def sizes(self, prefix: str) -> dict[str, int]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return {}
        return {
            path.relative_to(self.root).as_posix(): path.stat().st_size
            for path in folder.rglob("*")
            if path.is_file() and not path.name.endswith(".partial")
        }

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"storage folder {self.root} is missing")


# Every S3 call gives up in bounded time: a storage server that hangs must not hold a worker (or
# an API request) for boto's default minute per try. The read timeout is between two socket
# reads or writes, not for a whole object; two tries of (3 + 8) s keep an intake request that
# meets a hanging store well inside gunicorn's 30 s, answering 503 (bench.faults measured 124 s
# with 30 s and three tries). Workers retry a failed step with backoff on their own.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 8.0
ATTEMPTS = 2


def _timestamp(value: str) -> datetime:
    """S3's ISO 8601 times (`2026-12-02T16:30:53.000Z`) parsed by the standard library: botocore's
    default hands each to dateutil, half the CPU of listing a paper's files at `complete`.
    Anything else goes to botocore's own parser."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)


class S3Storage:
    """S3 or any S3-compatible server (MinIO) through boto3, streaming uploads."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        upload_endpoint_url: str | None = None,
    ) -> None:
        self.bucket, self.region = bucket, region
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
        session = boto3.session.Session(botocore_session=core)
        self.credentials = session.get_credentials()  # refreshed where they expire (a role's)
        config = BotoConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"max_attempts": ATTEMPTS, "mode": "standard"},
        )
        self.client = session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        # Presigned URLs are signed for the host the provider will use, which may differ from
        # the host the workers use (e.g. minio:9000 inside compose, a public name outside).
        self.public_endpoint_url = public_endpoint_url
        # Upload URLs are signed for the host clients PUT to: a school's server name, say.
        self.upload_endpoint_url = upload_endpoint_url or public_endpoint_url

    def put(self, key: str, stream: BinaryIO, content_type: str) -> None:
        try:
            self.client.upload_fileobj(stream, self.bucket, key, ExtraArgs={"ContentType": content_type})
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"could not store {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise ObjectNotFound(key) from exc
            raise StorageError(f"could not read {key}: {exc}") from exc
        except BotoCoreError as exc:  # refused, reset, timed out: the server is away, not the object
            raise StorageError(f"could not read {key}: {exc}") from exc

    def download(self, key: str, out: BinaryIO) -> None:
        try:
            self.client.download_fileobj(self.bucket, key, out)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise ObjectNotFound(key) from exc
            raise StorageError(f"could not read {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc

    def presign_get(self, key: str, expires_seconds: int) -> str | None:
        if self.public_endpoint_url is None:
            return None
        return self._presign(self.public_endpoint_url, "GET", key, expires_seconds)

    def presign_put(self, key: str, content_type: str, expires_seconds: int) -> str | None:
        """Signed for the endpoint clients reach; None without one (the API's endpoint stands in)."""
        if self.upload_endpoint_url is None:
            return None
        return self._presign(self.upload_endpoint_url, "PUT", key, expires_seconds, content_type)

    def _presign(
        self, endpoint: str, method: str, key: str, expires_seconds: int, content_type: str = "", query: str = ""
    ) -> str:
        """A path-style URL signed by botocore's own SigV4 query signer: the URL a client's
        generate_presigned_url gives, without a client call's event hooks and endpoint rules
        (two fifths of its CPU; the API signs one for every page it takes)."""
        if self.credentials is None:
            raise NoCredentialsError()
        url = f"{endpoint.rstrip('/')}/{self.bucket}/{quote(key, safe='/~')}" + (f"?{query}" if query else "")
        request = AWSRequest(method=method, url=url, headers={"Content-Type": content_type} if content_type else {})
        signer = S3SigV4QueryAuth(self.credentials.get_frozen_credentials(), "s3", self.region, expires=expires_seconds)
        signer.add_auth(request)
        return request.url

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise StorageError(f"could not look up {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not look up {key}: {exc}") from exc

    def start_parts(self, key: str, content_type: str) -> str | None:
        if self.upload_endpoint_url is None:
            return None
        try:
            return str(
                self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type)["UploadId"]
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"could not start an upload in parts of {key}: {exc}") from exc

    def presign_part(self, key: str, upload_id: str, number: int, expires_seconds: int) -> str:
        if self.upload_endpoint_url is None:
            raise StorageError("no endpoint for clients to upload to")
        query = f"partNumber={number}&uploadId={quote(upload_id, safe='')}"
        return self._presign(self.upload_endpoint_url, "PUT", key, expires_seconds, query=query)

    def _parts(self, key: str, upload_id: str) -> list[dict[str, Any]]:
        """Every part stored so far, as S3 lists them (number, size, ETag)."""
        parts: list[dict[str, Any]] = []
        try:
            pages = self.client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key, UploadId=upload_id)
            for page in pages:
                parts += page.get("Parts", [])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchUpload", "404"}:
                raise ObjectNotFound(f"{key} (upload {upload_id})") from exc
            raise StorageError(f"could not list the parts of {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not list the parts of {key}: {exc}") from exc
        return parts

    def stored_parts(self, key: str, upload_id: str) -> dict[int, int]:
        return {int(part["PartNumber"]): int(part["Size"]) for part in self._parts(key, upload_id)}

    def finish_parts(self, key: str, upload_id: str) -> None:
        parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in self._parts(key, upload_id)]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"could not join the parts of {key}: {exc}") from exc

    def abort_parts(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"NoSuchUpload", "404"}:
                raise StorageError(f"could not abort the upload of {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not abort the upload of {key}: {exc}") from exc

    def sizes(self, prefix: str) -> dict[str, int]:
        found: dict[str, int] = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.update({item["Key"]: int(item["Size"]) for item in page.get("Contents", [])})
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"could not list {prefix}: {exc}") from exc
        return found

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"could not delete {key}: {exc}") from exc

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # any failure means "not ready"
            raise StorageError(f"bucket {self.bucket} does not answer: {exc}") from exc


def make_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            upload_endpoint_url=settings.s3_upload_endpoint_url,
        )
    return LocalStorage(settings.storage_dir)
