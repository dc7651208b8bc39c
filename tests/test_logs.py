"""Log lines name the paper (and exam) being handled, as text or as JSON objects."""

from __future__ import annotations

import json
import logging

from shared import logs


def test_json_lines_carry_the_paper_and_exam_ids_and_text_lines_do_too(capsys):
    log = logging.getLogger("markq.test")
    try:
        logs.configure("json")
        with logs.bound(paper_id="p-1", exam_id="e-9"):
            log.warning("reading page %d", 2)
        log.warning("no paper here")
        first, second = (json.loads(line) for line in capsys.readouterr().err.strip().splitlines()[-2:])
        assert (first["message"], first["paper_id"], first["exam_id"], first["level"]) == (
            "reading page 2",
            "p-1",
            "e-9",
            "WARNING",
        )
        assert second["message"] == "no paper here" and second["paper_id"] is None
        logs.configure("text")
        with logs.bound(paper_id="p-2"):
            log.warning("text too")
        assert "[paper p-2]: text too" in capsys.readouterr().err
        assert len([h for h in logging.getLogger().handlers if getattr(h, "_markq", False)]) == 1  # never twice
    finally:
        logs.configure("text")
