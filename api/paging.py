"""Every list pages the same way: `?page=N&page_size=M` (from 1; at most MAX_PAGE_SIZE), the body a
JSON array of that page, and the headers `X-Total-Count` and `Link` (RFC 8288: rel="next",
"prev", "first", "last") with the URLs to follow. A query parameter a list does not know is
refused with 422 rather than silently ignored (a misspelt filter would otherwise return all).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import request
from marshmallow import RAISE, Schema, fields, validate
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

DEFAULT_PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000
# For @blp.arguments(..., location="query", **STRICT): unknown parameters answer 422.
STRICT = {"unknown": RAISE}


class PageArgs(Schema):
    """The paging parameters every list takes; a list's own filters extend it."""

    page = fields.Integer(load_default=1, validate=validate.Range(min=1), metadata={"description": "From 1."})
    page_size = fields.Integer(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Items a page, 1 to {MAX_PAGE_SIZE}."},
    )


PAGE_HEADERS = {
    "X-Total-Count": {"description": "Items in the whole list.", "schema": {"type": "integer"}},
    "Link": {
        "description": 'URLs of the next, prev, first and last pages (rel="next", ...).',
        "schema": {"type": "string"},
    },
}


def _link(page: int, rel: str) -> str:
    args = request.args.to_dict(flat=False)
    args["page"] = [str(page)]
    return f'<{request.base_url}?{urlencode(args, doseq=True)}>; rel="{rel}"'


def page_of(items: list[Any], total: int, args: dict[str, Any]) -> tuple[list[Any], int, dict[str, str]]:
    """A view's return value: the page's items, 200, and the paging headers."""
    page, size = args["page"], args["page_size"]
    last = max(1, -(-total // size))
    links = [_link(1, "first"), _link(last, "last")]
    if page < last:
        links.append(_link(page + 1, "next"))
    if 1 < page <= last:
        links.append(_link(page - 1, "prev"))
    return items, 200, {"X-Total-Count": str(total), "Link": ", ".join(links)}


def paged_list(items: list[Any], args: dict[str, Any]) -> tuple[list[Any], int, dict[str, str]]:
    """A list built in Python, cut to the requested page."""
    first = (args["page"] - 1) * args["page_size"]
    return page_of(items[first : first + args["page_size"]], len(items), args)


def paged_select(
    session: Session, query: Select[Any], args: dict[str, Any], rows: bool = False
) -> tuple[list[Any], int, dict[str, str]]:
    """An ordered SQL query, counted and cut to the requested page in the database: its objects,
    or with `rows`, each row as a mapping of its labelled columns."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    cut = query.offset((args["page"] - 1) * args["page_size"]).limit(args["page_size"])
    items = list(session.execute(cut).mappings()) if rows else list(session.scalars(cut))
    return page_of(items, total, args)
