"""Per-request access to the process resources, the database session and the caller's school."""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable, TypeVar

from flask import current_app, g, request
from sqlalchemy.orm import Session

from api.errors import ApiError
from shared.models import School
from shared.resources import Resources
from shared.schools import school_for_key

F = TypeVar("F", bound=Callable[..., Any])


def resources() -> Resources:
    return current_app.extensions["markq"]


def db() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = resources().sessions()
    return g.db


def current_school() -> School:
    return g.school


def bearer_token() -> str | None:
    """The token of this request's `Authorization: Bearer <token>` header, if it has one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_school(view: F) -> F:
    """`Authorization: Bearer <key>`; the key's school becomes `current_school()`."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        key = bearer_token()
        if key is None:
            raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <api key>'")
        school = school_for_key(db(), key)
        if school is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        g.school = school
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
