"""Logs every process writes the same way: text for a person at a terminal, or one JSON object a
line (MARKQ_LOG_FORMAT=json, python-json-logger) for the admin's log store. Either way a line
written while a paper is handled carries its paper (and exam) id, so one paper can be followed
through the API and every worker.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# The ids of what is being handled now (a paper, its exam); each task and request sets its own.
_ids: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("markq_log_ids", default={})
FIELDS = ("paper_id", "exam_id")
TEXT = "%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s"


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Every log line inside the block carries these ids (None values are left out)."""
    token = push(**ids)
    try:
        yield
    finally:
        pop(token)


def push(**ids: Any) -> contextvars.Token[dict[str, str]]:
    """`bound` for code that cannot hold a block open (a web request): undo it with `pop`."""
    return _ids.set({**_ids.get(), **{k: str(v) for k, v in ids.items() if v is not None}})


def pop(token: contextvars.Token[dict[str, str]]) -> None:
    _ids.reset(token)


class _WithIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ids = _ids.get()
        for name in FIELDS:
            setattr(record, name, ids.get(name))
        record.ids = "".join(f" [{name[:-3]} {ids[name]}]" for name in FIELDS if ids.get(name))
        return True


def configure(log_format: str, level: int = logging.INFO) -> None:
    """The root logger's one handler, in the format asked for; safe to call more than once."""
    handler = logging.StreamHandler()
    handler.addFilter(_WithIds())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(paper_id)s %(exam_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_markq", False)]:
        root.removeHandler(old)
    handler._markq = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
