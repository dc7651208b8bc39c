import io
import secrets

import httpx
import pytest
from botocore.utils import parse_timestamp

from shared.storage import LocalStorage, ObjectNotFound, S3Storage, StorageError, _timestamp


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


def test_listing_sizes_and_times_read_as_botocore_reads_them(s3_url):
    """The listing's times are parsed by the standard library, not dateutil: the same datetimes."""
    storage = S3Storage("markq-test", endpoint_url=s3_url)
    prefix = f"t/{secrets.token_hex(4)}/"
    for n, size in enumerate((3, 5)):
        storage.put(f"{prefix}file-{n}", io.BytesIO(b"y" * size), "image/jpeg")
    assert storage.sizes(prefix) == {f"{prefix}file-0": 3, f"{prefix}file-1": 5}
    listed = storage.client.list_objects_v2(Bucket="markq-test", Prefix=prefix)["Contents"][0]["LastModified"]
    assert listed.tzinfo is not None and abs((listed - parse_timestamp(listed.isoformat())).total_seconds()) == 0
    for text in (
        "2026-12-02T16:30:53.000Z",
        "Wed, 02 Dec 2026 16:30:53 GMT",
        "1796229053",
        "2026-12-02T16:30:53+08:00",
    ):
        assert _timestamp(text) == parse_timestamp(text), text


def test_presigned_urls_are_the_ones_boto3_signs_and_the_server_honours(s3_url):
    """markq signs with botocore's own signer, not through a client call: the same URLs as a
    client's generate_presigned_url (a key that needs quoting too), and a PUT to one stores the
    object under its key (moto does not check signatures: the equality is the check)."""
    import boto3
    from botocore.client import Config

    storage = S3Storage("markq-test", endpoint_url=s3_url, public_endpoint_url=s3_url)
    client = boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    key = f"uploads/{secrets.token_hex(4)}/a b+c~é.jpg"
    put = storage.presign_put(key, "image/jpeg", 600)
    get = storage.presign_get(key, 60)
    # the two sign in the same second, or the test signs again
    for _ in range(3):
        theirs_put = client.generate_presigned_url(
            "put_object", Params={"Bucket": "markq-test", "Key": key, "ContentType": "image/jpeg"}, ExpiresIn=600
        )
        theirs_get = client.generate_presigned_url(
            "get_object", Params={"Bucket": "markq-test", "Key": key}, ExpiresIn=60
        )
        if (put, get) == (theirs_put, theirs_get):
            break
        put, get = storage.presign_put(key, "image/jpeg", 600), storage.presign_get(key, 60)
    assert (put, get) == (theirs_put, theirs_get)
    assert httpx.put(put, content=b"page", headers={"Content-Type": "image/jpeg"}).status_code == 200
    assert storage.get(key) == b"page"
    assert httpx.get(get).content == b"page"
    storage.delete(key)


def test_s3_storage_without_public_endpoint_does_not_presign(s3_url):
    assert S3Storage("markq-test", endpoint_url=s3_url).presign_get("k", 60) is None


def test_a_missing_bucket_is_not_ready(s3_url):
    with pytest.raises(StorageError):
        S3Storage("no-such-bucket", endpoint_url=s3_url).check()


def test_objects_storage_would_not_delete_are_noted_and_a_later_sweep_deletes_them(s3_url, app):
    """Intake cut off while storage is away leaves objects no row names: they are noted, and the
    sweep deletes them once storage answers again (not before, and never twice)."""
    from urllib.parse import urlsplit

    from sqlalchemy import select

    from loopback.proxy import FaultProxy
    from shared.intake.submission import delete_objects, delete_stale_objects
    from shared.models import StaleObject

    upstream = urlsplit(s3_url)
    keys = [f"stale/{secrets.token_hex(4)}/page-{n}.orig" for n in (1, 2)]
    with FaultProxy(upstream.hostname, upstream.port) as proxy:
        storage = S3Storage("markq-test", endpoint_url=f"http://127.0.0.1:{proxy.port}")
        for key in keys:
            storage.put(key, io.BytesIO(b"page"), "image/jpeg")
        sessions = app.extensions["markq"].sessions
        proxy.refuse()
        with sessions() as session:
            assert delete_objects(storage, keys, session) == keys
        with sessions() as session:
            noted = set(session.scalars(select(StaleObject.key).where(StaleObject.key.in_(keys))))
            assert noted == set(keys)
            assert delete_stale_objects(session, storage) == 0  # still away: nothing deleted, nothing lost
            session.commit()
        proxy.restore()
        with sessions() as session:
            assert delete_stale_objects(session, storage) >= 2
            session.commit()
            assert not list(session.scalars(select(StaleObject.key).where(StaleObject.key.in_(keys))))
        for key in keys:
            with pytest.raises(ObjectNotFound):
                storage.get(key)
