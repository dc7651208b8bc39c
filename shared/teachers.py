"""Teachers: accounts in a school, argon2 passwords, slowed-down wrong guesses, server-side sessions.

A browser's cookie holds a random session token; the server keeps only its SHA-256 (as for API
keys), with the CSRF token the session's forms must echo and when the session ends.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.models import School, Teacher, WebSession, utcnow

SESSION_HOURS = 12
FREE_GUESSES = 5  # wrong passwords in a row before each further try must wait
MAX_WAIT_SECONDS = 15 * 60
MIN_PASSWORD = 10
LANGUAGES = ("zh", "en")

_hasher = PasswordHasher()
# Checked when no account has the email, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("markq: no such teacher")


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class SignInRefused(Exception):
    """A wrong email or password (`slowed` False), or a try too soon after too many of them, not
    checked at all (`slowed` True); either way `wait_seconds` before the next try is checked."""

    wait_seconds: int = 0
    slowed: bool = False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normal_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise AccountError("give an email address such as li.hua@school.cn")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")


def create_teacher(
    session: Session,
    school: School,
    email: str,
    name: str,
    password: str,
    *,
    is_admin: bool = False,
    language: str = "zh",
) -> Teacher:
    email = normal_email(email)
    check_password(password)
    if language not in LANGUAGES:
        raise AccountError(f"language must be one of {', '.join(LANGUAGES)}")
    if not name.strip():
        raise AccountError("a teacher needs a name")
    if session.scalar(select(Teacher.id).where(Teacher.email == email)) is not None:
        raise AccountError(f"a teacher with the email {email} already exists")
    teacher = Teacher(
        school_id=school.id,
        email=email,
        name=name.strip(),
        password_hash=_hasher.hash(password),
        is_admin=is_admin,
        language=language,
    )
    session.add(teacher)
    session.flush()
    return teacher


def wait_before_next_try(teacher: Teacher, now: datetime | None = None) -> int:
    """Seconds this account must wait before a password is checked again: none for the first
    FREE_GUESSES wrong ones, then doubling from 2 s up to 15 minutes."""
    extra = teacher.failed_sign_ins - FREE_GUESSES
    if extra < 0 or teacher.last_failed_at is None:
        return 0
    wait = min(MAX_WAIT_SECONDS, 2 ** (extra + 1))
    elapsed = ((now or utcnow()) - teacher.last_failed_at).total_seconds()
    return max(0, int(wait - elapsed + 0.999))


def sign_in(session: Session, email: str, password: str) -> Teacher:
    """The teacher whose email and password these are (caller commits, also on refusal: the
    failure count must stick). Raises SignInRefused, with the wait when the account is slowed."""
    try:
        email = normal_email(email)
    except AccountError:
        email = ""
    teacher = session.scalar(select(Teacher).where(Teacher.email == email, Teacher.disabled_at.is_(None)))
    if teacher is None:
        _verify(_DUMMY_HASH, password)
        raise SignInRefused()
    wait = wait_before_next_try(teacher)
    if wait:
        raise SignInRefused(wait, slowed=True)
    if not _verify(teacher.password_hash, password):
        teacher.failed_sign_ins += 1
        teacher.last_failed_at = utcnow()
        raise SignInRefused(wait_before_next_try(teacher))
    teacher.failed_sign_ins = 0
    teacher.last_failed_at = None
    if _hasher.check_needs_rehash(teacher.password_hash):
        teacher.password_hash = _hasher.hash(password)
    return teacher


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def set_password(teacher: Teacher, password: str) -> None:
    check_password(password)
    teacher.password_hash = _hasher.hash(password)
    teacher.failed_sign_ins = 0
    teacher.last_failed_at = None


@dataclass(frozen=True)
class OpenedSession:
    token: str  # for the cookie; never stored
    row: WebSession


def open_session(session: Session, teacher: Teacher) -> OpenedSession:
    token = secrets.token_urlsafe(32)
    row = WebSession(
        teacher_id=teacher.id,
        token_hash=_digest(token),
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + timedelta(hours=SESSION_HOURS),
    )
    session.add(row)
    session.flush()
    return OpenedSession(token, row)


def session_for(session: Session, token: str) -> WebSession | None:
    """The live session this cookie token opens, with its teacher, or None."""
    if not token:
        return None
    row = session.scalar(select(WebSession).where(WebSession.token_hash == _digest(token)))
    if row is None or row.expires_at <= utcnow() or row.teacher.disabled_at is not None:
        return None
    return row


def close_session(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))


def drop_expired_sessions(session: Session) -> int:
    return session.execute(delete(WebSession).where(WebSession.expires_at <= utcnow())).rowcount or 0


def school_teachers(session: Session, school_id: int) -> list[Teacher]:
    return list(session.scalars(select(Teacher).where(Teacher.school_id == school_id).order_by(Teacher.name)))
