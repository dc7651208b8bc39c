"""Page files from a request, checked once the same way for papers, class archives and blank papers."""

from __future__ import annotations

from flask import request

from api.context import resources
from api.errors import ApiError, refusal_status
from shared.images import PageHeader
from shared.intake.submission import PageError, UploadedPage, check_within
from shared.intake.uploads import REFUSAL_CODES
from shared.refusals import has_control_characters


def check_uploads(uploads: list[UploadedPage]) -> tuple[list[UploadedPage], list[PageHeader]]:
    """Every file checked within this installation's limits; raises PageError at the first refused."""
    return check_within(uploads, resources().settings)


def request_pages(missing: str, max_files: int | None = None) -> tuple[list[UploadedPage], list[PageHeader]]:
    """The request's `pages` files, in order, each checked; `missing` says what to send when
    there are none, and more than `max_files` files is refused before any is read."""
    files = request.files.getlist("pages")
    if not files:
        raise ApiError(422, "invalid_request", missing)
    if max_files is not None and len(files) > max_files:
        raise ApiError(413, "too_many_pages", f"at most {max_files} pages per paper")
    uploads = [UploadedPage(f.stream, f.filename or f"page-{n}") for n, f in enumerate(files, start=1)]
    try:
        return check_uploads(uploads)
    except PageError as exc:
        raise page_refused(exc) from exc


def page_refused(exc: PageError) -> ApiError:
    """A refused page in the error shape, naming the file and the page."""
    return ApiError(
        refusal_status(exc.kind),
        REFUSAL_CODES.get(exc.kind, "invalid_page"),
        str(exc),
        {"file": exc.filename, "page": exc.number},
    )


def form_text(name: str, *, required: bool, max_length: int = 100) -> str:
    value = request.form.get(name, "").strip()
    if required and not value:
        raise ApiError(422, "invalid_request", f"form field {name!r} is required")
    if len(value) > max_length:
        raise ApiError(422, "invalid_request", f"form field {name!r} is longer than {max_length}")
    if has_control_characters(value):
        raise ApiError(422, "invalid_request", f"form field {name!r} holds a control character (NUL, a line break)")
    return value
