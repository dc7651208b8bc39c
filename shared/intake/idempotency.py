"""Idempotency-Key: the same key and the same request return the first response; the same key
with a different request is a conflict. A request that fails releases its key for a retry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.intake.submission import stream_digest
from shared.models import IdempotencyKey


class KeyConflict(Exception):
    pass


@dataclass(frozen=True)
class Replay:
    status_code: int
    response: dict[str, Any]


def fingerprint(path: str, fields: dict[str, str], files: list[tuple[str, str | None, BinaryIO]]) -> str:
    """A hash of the request: path, form fields, and each file's name and content hash."""
    digest = hashlib.sha256(path.encode())
    for name in sorted(fields):
        digest.update(f"\\0{name}={fields[name]}".encode())
    for field, filename, stream in files:
        digest.update(f"\\0{field}:{filename}:{stream_digest(stream)}".encode())
    return digest.hexdigest()


def begin(session: Session, school_id: int, key: str, request_hash: str) -> Replay | None:
    """Claim the key for this request (commits), or return the first response to replay.
    Raises KeyConflict for a different request under the same key, or one still running."""
    session.add(IdempotencyKey(school_id=school_id, key=key, request_hash=request_hash))
    try:
        session.commit()
        return None
    except IntegrityError:
        session.rollback()
    row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.school_id == school_id, IdempotencyKey.key == key))
    if row is None:  # released between our insert and this read
        raise KeyConflict("a request with this Idempotency-Key just failed; send it again")
    if row.request_hash != request_hash:
        raise KeyConflict("this Idempotency-Key was used for a different request")
    if row.status_code is None:
        raise KeyConflict("a request with this Idempotency-Key is still being processed")
    return Replay(row.status_code, row.response or {})


def finish(session: Session, school_id: int, key: str, status_code: int, response: dict[str, Any]) -> None:
    row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.school_id == school_id, IdempotencyKey.key == key))
    if row is not None:
        row.status_code, row.response = status_code, response
        session.commit()


def release(session: Session, school_id: int, key: str) -> None:
    session.rollback()
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.school_id == school_id, IdempotencyKey.key == key, IdempotencyKey.status_code.is_(None)
        )
    )
    session.commit()
