"""Schools (tenants) and their API keys. Keys look like `mq_<prefix>_<secret>`; only a hash is kept."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from shared.models import ApiKey, School, utcnow


class SchoolExists(ValueError):
    pass


class SchoolNotFound(LookupError):
    pass


class KeyNotFound(LookupError):
    pass


def _hash(secret: str) -> str:
    # Keys carry 192 random bits, so a plain SHA-256 is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_school(session: Session, name: str) -> School:
    name = name.strip()
    if not name:
        raise ValueError("a school needs a name")
    if session.scalar(select(School).where(School.name == name)) is not None:
        raise SchoolExists(f"a school named {name!r} already exists")
    school = School(name=name)
    session.add(school)
    session.flush()
    return school


def find_school(session: Session, name_or_id: str) -> School:
    query = select(School).where(School.name == name_or_id)
    if name_or_id.isdigit():
        query = select(School).where((School.id == int(name_or_id)) | (School.name == name_or_id))
    school = session.scalar(query)
    if school is None:
        raise SchoolNotFound(f"no school {name_or_id!r}")
    return school


@dataclass(frozen=True)
class NewKey:
    school: School
    key: str  # shown once, never stored


def create_key(session: Session, school: School) -> NewKey:
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    key = f"mq_{prefix}_{secret}"
    session.add(ApiKey(school_id=school.id, prefix=prefix, key_hash=_hash(key)))
    session.flush()
    return NewKey(school, key)


def school_for_key(session: Session, key: str) -> School | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "mq":
        return None
    row = session.scalar(
        select(ApiKey)
        .options(joinedload(ApiKey.school))  # one query for the key and its school, every request
        .where(ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None))
    )
    if row is None or not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return row.school


def key_prefix(key_or_prefix: str) -> str:
    """The prefix that names a key: given as is, or taken from the whole key `mq_<prefix>_<secret>`."""
    parts = key_or_prefix.strip().split("_", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "mq" else key_or_prefix.strip()


def list_keys(session: Session, school: School) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.school_id == school.id).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_or_prefix: str) -> ApiKey:
    """Revoke a key (by its prefix, or the whole key): it stops working at once, for good."""
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == key_prefix(key_or_prefix)))
    if row is None:
        raise KeyNotFound(f"no API key with prefix {key_prefix(key_or_prefix)!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
