"""Caps, reuse and prompt caching, end to end with a real worker and the loopback server."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from shared.models import School, Usage
from shared.spending.costs import call_cost
from tests.helpers import loopback_call, make_exam, page_bytes, submit, wait_for, wait_until

pytestmark = pytest.mark.integration


def exam_papers(api, headers, exam_id):
    return httpx.get(f"{api}/v1/exams/{exam_id}/papers", headers=headers).json()


def wait_exam(api, headers, exam_id, done, timeout=60.0):
    seen = {}

    def finished():
        exam = httpx.get(f"{api}/v1/exams/{exam_id}", headers=headers).json()
        seen["progress"] = exam["progress"]
        return exam if done(exam["progress"]) else None

    return wait_until(finished, timeout=timeout, what=lambda: f"exam {exam_id} done (stuck at {seen.get('progress')})")


def test_the_exam_budget_stops_calls_and_raising_it_finishes_the_exam(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"), budget_usd="0.0001")
    before = loopback_call(loopback, "/_loopback/stats")["completions"]
    ids = [submit(live_api, auth("A"), exam["id"], student=f"b{n}", pages=1)["id"] for n in range(6)]
    state = wait_exam(live_api, auth("A"), exam["id"], lambda p: p["paused"] == 6)
    assert loopback_call(loopback, "/_loopback/stats")["completions"] == before  # not one call
    assert "budget" in state["status_reason"]
    reason = httpx.get(f"{live_api}/v1/papers/{ids[0]}", headers=auth("A")).json()["status_reason"]
    worst = Decimal(re.search(r"may cost up to \$([0-9.]+)", reason).group(1))

    cap = worst * Decimal("2.5")  # room for two papers' worst case, not for three
    patched = httpx.patch(f"{live_api}/v1/exams/{exam['id']}", headers=auth("A"), json={"budget_usd": str(cap)})
    assert patched.status_code == 200, patched.text
    state = wait_exam(
        live_api, auth("A"), exam["id"], lambda p: p["queued"] == p["processing"] == 0 and p["paused"] < 6
    )
    graded = state["progress"]["graded"] + state["progress"]["needs_review"]
    calls = loopback_call(loopback, "/_loopback/stats")["completions"] - before
    assert 2 <= graded < 6 and state["progress"]["paused"] == 6 - graded
    assert calls == graded
    assert state["usage"]["cost_usd"] <= float(cap)
    assert state["usage"]["in_flight"] == 0
    paused = [p for p in exam_papers(live_api, auth("A"), exam["id"]) if p["status"] == "paused"]
    assert all("exam budget" in p["status_reason"] for p in paused)

    httpx.patch(f"{live_api}/v1/exams/{exam['id']}", headers=auth("A"), json={"budget_usd": None})
    state = wait_exam(live_api, auth("A"), exam["id"], lambda p: p["graded"] + p["needs_review"] == 6)
    assert loopback_call(loopback, "/_loopback/stats")["completions"] - before == 6
    assert state["status_reason"] is None


def test_the_school_daily_budget_pauses_and_the_sweep_resumes(live_api, auth, worker, app, settings):
    exam = make_exam(live_api, auth("B"))
    school_id = httpx.get(f"{live_api}/v1/school", headers=auth("B")).json()["id"]
    sessions = app.extensions["markq"].sessions
    with sessions.begin() as session:
        session.get(School, school_id).daily_budget_usd = Decimal("0.0001")
    try:
        paper = wait_for(live_api, auth("B"), submit(live_api, auth("B"), exam["id"], pages=1)["id"])
        assert paper["status"] == "paused" and "school daily budget" in paper["status_reason"]
        assert httpx.get(f"{live_api}/v1/school", headers=auth("B")).json()["daily_budget_usd"] == 0.0001
    finally:
        with sessions.begin() as session:
            session.get(School, school_id).daily_budget_usd = None
    app.extensions["celery"].send_task("markq.sweep_stuck_papers")
    assert wait_for(live_api, auth("B"), paper["id"], {"graded", "needs_review"})["status"] != "paused"


def test_resubmitting_identical_pages_makes_no_provider_call(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"))
    pages = [page_bytes(), page_bytes()]

    def send(student):
        files = [("pages", (f"p{n}.jpg", data, "image/jpeg")) for n, data in enumerate(pages)]
        reply = httpx.post(
            f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth("A"), data={"student_ref": student}, files=files
        )
        assert reply.status_code == 202
        return wait_for(live_api, auth("A"), reply.json()["id"])

    first = send("again")
    before = loopback_call(loopback, "/_loopback/stats")["completions"]
    second = send("again")
    assert loopback_call(loopback, "/_loopback/stats")["completions"] == before
    assert second["reused_from"] == first["id"]
    assert second["score"] == first["score"]
    assert [q["student_answer"] for q in second["questions"]] == [q["student_answer"] for q in first["questions"]]
    assert second["usage"] == {**second["usage"], "calls": 0, "cost_usd": 0.0, "reused": 1}


def test_second_and_later_papers_of_an_exam_report_cached_tokens(live_api, auth, worker, app):
    questions = [
        {
            "id": str(n),
            "prompt": f"{n} × 7 = ?",
            "answer": str(7 * n),
            "points": 1,
            "knowledge_points": ["math.g2.times-tables"],
        }
        for n in range(1, 21)
    ]
    exam = make_exam(live_api, auth("A"), answer_key={"questions": questions})
    papers = [
        wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], student=f"c{n}", pages=1)["id"])
        for n in range(3)
    ]
    cached = [p["usage"]["cached_tokens"] for p in papers]
    assert cached[0] == 0 and cached[1] >= 1024 and cached[2] == cached[1]
    with app.extensions["markq"].sessions() as session:
        usage = session.scalars(select(Usage).where(Usage.paper_id == uuid.UUID(papers[1]["id"]))).one()
    assert usage.cost_usd == call_cost("gpt-4o", usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)
    assert usage.cost_usd < call_cost("gpt-4o", usage.prompt_tokens, 0, usage.completion_tokens)
    ledger = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=auth("A")).json()["usage"]
    assert ledger["estimated_prompt_tokens"] == ledger["prompt_tokens"]  # same rules on both sides here
    assert ledger["estimated_cost_usd"] > 0 and ledger["calls"] == 3
