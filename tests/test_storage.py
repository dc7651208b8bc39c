import io

import httpx
import pytest

from shared.storage import LocalStorage, ObjectNotFound, S3Storage, StorageError


def test_local_storage_round_trip_and_no_escape(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    storage.put("1/e/p/page-1.orig", io.BytesIO(b"abc"), "image/jpeg")
    assert storage.get("1/e/p/page-1.orig") == b"abc"
    assert storage.presign_get("1/e/p/page-1.orig", 60) is None
    storage.delete("1/e/p/page-1.orig")
    with pytest.raises(ObjectNotFound):
        storage.get("1/e/p/page-1.orig")
    with pytest.raises(StorageError):
        storage.put("../outside", io.BytesIO(b"x"), "text/plain")


def test_s3_storage_streams_presigns_and_deletes(s3_url):
    storage = S3Storage("markq-test", endpoint_url=s3_url, public_endpoint_url=s3_url)
    storage.check()
    body = b"x" * (9 * 1024 * 1024)  # above boto3's multipart threshold
    storage.put("t/big.bin", io.BytesIO(body), "application/octet-stream")
    assert storage.get("t/big.bin") == body
    url = storage.presign_get("t/big.bin", 60)
    assert url and "X-Amz-Signature" in url
    assert httpx.get(url).content == body
    storage.delete("t/big.bin")
    with pytest.raises(ObjectNotFound):
        storage.get("t/big.bin")


def test_s3_storage_without_public_endpoint_does_not_presign(s3_url):
    assert S3Storage("markq-test", endpoint_url=s3_url).presign_get("k", 60) is None


def test_a_missing_bucket_is_not_ready(s3_url):
    with pytest.raises(StorageError):
        S3Storage("no-such-bucket", endpoint_url=s3_url).check()
