"""Economy exams go through the Batch API (Files + Batches on the loopback server) at half price."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from shared.models import Usage
from shared.spending.costs import call_cost
from tests.helpers import loopback_call, make_exam, submit, wait_until

pytestmark = pytest.mark.integration


def run_beat(app, task: str) -> None:
    app.extensions["celery"].send_task(task)


@pytest.mark.parametrize("fault", [{"fail_lines": 1}, {"expire_after": 2}])
def test_an_economy_exam_completes_through_batches_priced_at_half(live_api, auth, idle, loopback, app, fault):
    headers = auth("A")
    exam = make_exam(live_api, headers, priority="economy")
    before = loopback_call(loopback, "/_loopback/stats")
    ids = [submit(live_api, headers, exam["id"], student=f"e{n}", pages=1)["id"] for n in range(3)]
    loopback_call(loopback, "/_loopback/batch-faults", fault)

    def papers():
        return {p["id"]: p for p in httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=headers).json()}

    # normalised and waiting for the batch, not called live
    wait_until(
        lambda: (
            all(p["status"] == "queued" for p in papers().values())
            and httpx.get(f"{live_api}/v1/papers/{ids[0]}", headers=headers).json()["pages"]
        ),
        every=0.5,
        what="every paper normalised and queued for a batch",
    )
    time.sleep(1.0)
    assert loopback_call(loopback, "/_loopback/stats")["completions"] == before["completions"]

    run_beat(app, "markq.send_batches")
    wait_until(
        lambda: all(p["status"] == "processing" for p in papers().values()), every=0.5, what="every paper processing"
    )
    # the first batch ends with one paper unanswered; it goes back to queued
    wait_until(
        lambda: (
            sum(p["status"] == "graded" for p in papers().values()) == 2
            and sum(p["status"] == "queued" for p in papers().values()) == 1
        ),
        every=0.5,
        poke=lambda: run_beat(app, "markq.poll_batches"),
        what="two papers graded and one queued again",
    )
    exam_now = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=headers).json()
    assert [(b["total"], b["completed"]) for b in exam_now["batches"]] == [(3, 2)]

    run_beat(app, "markq.send_batches")  # sent again in the next batch
    wait_until(
        lambda: all(p["status"] == "graded" for p in papers().values()),
        every=0.5,
        poke=lambda: run_beat(app, "markq.poll_batches"),
        what="every paper graded",
    )
    exam_now = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=headers).json()
    assert [(b["total"], b["completed"], b["finished_at"] is not None) for b in exam_now["batches"]] == [
        (3, 2, True),
        (1, 1, True),
    ]
    after = loopback_call(loopback, "/_loopback/stats")
    assert after["batches"] - before["batches"] == 2
    assert after["completions"] - before["completions"] == 3  # one answered line per paper, no live call

    with app.extensions["markq"].sessions() as session:
        rows = session.scalars(
            select(Usage).where(Usage.paper_id.in_([uuid.UUID(i) for i in ids]), Usage.outcome == "ok:batch")
        ).all()
    assert len(rows) == 3
    for row in rows:
        full = call_cost("gpt-4o", row.prompt_tokens, row.cached_tokens, row.completion_tokens)
        assert row.cost_usd == call_cost(
            "gpt-4o", row.prompt_tokens, row.cached_tokens, row.completion_tokens, batch=True
        )
        assert abs(float(row.cost_usd) - float(full) / 2) < 0.000002


def test_a_batch_takes_only_papers_whose_pages_are_checked_and_sized(live_api, auth, app):
    """A paper queued by URL upload, its files not yet checked, or not yet sized by the images
    worker (where a templated exam's crops are cut), waits for it: the batch never sends a page it
    has not seen decoded, nor pages where crops would have gone."""
    from shared.db import transaction
    from shared.grading.lane_batch import exams_with_waiting_papers
    from shared.models import Exam, Page, Paper, PaperStatus

    exam_id = uuid.UUID(make_exam(live_api, auth("A"), priority="economy")["id"])
    sessions = app.extensions["markq"].sessions
    with transaction(sessions) as session:
        exam = session.get_one(Exam, exam_id)
        paper = Paper(school_id=exam.school_id, exam_id=exam.id, student_ref="r", status=PaperStatus.queued)
        paper.pages = [
            Page(
                number=1,
                original_key="k",
                original_format="JPEG",
                original_bytes=1,
                width=1,
                height=1,
                sha256="0" * 64,
                verified=False,
            )
        ]
        session.add(paper)
        session.flush()
        paper_id = paper.id
    with sessions() as session:
        assert exam_id not in exams_with_waiting_papers(session)  # not checked yet
    with transaction(sessions) as session:
        session.get_one(Paper, paper_id).pages[0].verified = True
    with sessions() as session:
        assert exam_id not in exams_with_waiting_papers(session)  # checked, not sized
    with transaction(sessions) as session:
        page = session.get_one(Paper, paper_id).pages[0]
        page.normalised_key, page.sent_width, page.sent_height = "n", 100, 140
    with sessions() as session:
        assert exam_id in exams_with_waiting_papers(session)
    with transaction(sessions) as session:
        session.delete(session.get_one(Paper, paper_id))
