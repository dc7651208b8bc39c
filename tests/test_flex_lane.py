"""The Flex lane end to end: a real worker, the official SDK and the loopback server's Flex tier."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from shared.models import Usage
from shared.spending.costs import call_cost
from tests.helpers import exam_body, loopback_call, make_exam, submit, wait_for

pytestmark = pytest.mark.integration

FLEX_MODEL = "gpt-5-mini"


def usage_rows(app, paper_id: str) -> list[Usage]:
    with app.extensions["markq"].sessions() as session:
        return list(session.scalars(select(Usage).where(Usage.paper_id == uuid.UUID(paper_id)).order_by(Usage.id)))


def tiers_asked(loopback, count: int) -> list[str | None]:
    return [seen["service_tier"] for seen in loopback_call(loopback, "/_loopback/requests")[-count:]]


def test_a_flex_exam_is_called_at_the_flex_tier_and_priced_at_the_batch_rate(live_api, auth, idle, loopback, app):
    exam = make_exam(live_api, auth("A"), model=FLEX_MODEL, priority="flex")
    assert exam["priority"] == "flex" and exam["flex_fallback"] == "wait"
    before = loopback_call(loopback, "/_loopback/stats")
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    after = loopback_call(loopback, "/_loopback/stats")
    assert paper["status"] in {"graded", "needs_review"}
    assert after["flex_completions"] - before["flex_completions"] == 1
    assert tiers_asked(loopback, 1) == ["flex"]

    [row] = usage_rows(app, paper["id"])
    assert row.outcome == "ok:flex"
    standard = call_cost(FLEX_MODEL, row.prompt_tokens, row.cached_tokens, row.completion_tokens)
    batch = call_cost(FLEX_MODEL, row.prompt_tokens, row.cached_tokens, row.completion_tokens, batch=True)
    assert row.cost_usd == batch and batch < standard
    # the provider's own bill for the call says the same
    assert Decimal(after["cost_usd"]) - Decimal(before["cost_usd"]) == row.cost_usd


def test_resource_unavailable_waits_and_asks_again_without_a_second_charge(live_api, auth, idle, loopback, app):
    exam = make_exam(live_api, auth("A"), model=FLEX_MODEL, priority="flex")
    loopback_call(loopback, "/_loopback/config", {"flex_unavailable": 2})
    before = loopback_call(loopback, "/_loopback/stats")
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    after = loopback_call(loopback, "/_loopback/stats")
    assert paper["status"] in {"graded", "needs_review"}
    assert after["flex_unavailable"] - before["flex_unavailable"] == 2
    assert after["completions"] - before["completions"] == 1
    rows = usage_rows(app, paper["id"])
    assert [r.outcome for r in rows] == ["flex_unavailable", "flex_unavailable", "ok:flex"]
    assert [r.cost_usd for r in rows[:2]] == [0, 0]  # refused calls cost nothing and hold nothing
    assert paper["attempts"] <= 1  # a refusal is a wait, not an attempt
    spent = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=auth("A")).json()["usage"]
    assert Decimal(str(spent["cost_usd"])) == rows[2].cost_usd
    assert Decimal(after["cost_usd"]) - Decimal(before["cost_usd"]) == rows[2].cost_usd


def test_a_teacher_who_allows_it_gets_the_standard_tier_after_three_refusals(live_api, auth, idle, loopback, app):
    exam = make_exam(live_api, auth("A"), model=FLEX_MODEL, priority="flex", flex_fallback="standard")
    loopback_call(loopback, "/_loopback/config", {"flex_unavailable": 5})
    try:
        paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    finally:
        loopback_call(loopback, "/_loopback/config", {"flex_unavailable": 0})
    assert paper["status"] in {"graded", "needs_review"}
    rows = usage_rows(app, paper["id"])
    assert [r.outcome for r in rows] == ["flex_unavailable"] * 3 + ["ok"]
    assert tiers_asked(loopback, 1) == [None]  # the last call asked for no tier: the standard one
    last = rows[-1]
    assert last.cost_usd == call_cost(FLEX_MODEL, last.prompt_tokens, last.cached_tokens, last.completion_tokens)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"model": "gpt-4o", "priority": "flex"}, "has no Flex tier"),
        ({"model": FLEX_MODEL, "priority": "flex", "provider": "local"}, "provider 'local' makes none"),
        ({"model": FLEX_MODEL, "priority": "flex", "flex_fallback": "never"}, "flex_fallback"),
    ],
)
def test_an_exam_that_cannot_take_the_flex_tier_is_refused_with_the_reason(client, auth, overrides, says):
    reply = client.post("/v1/exams", headers=auth("A"), json=exam_body(**overrides))
    assert reply.status_code == 422, reply.json
    assert reply.json["error"]["code"] in {"invalid_exam", "invalid_request"}
    assert says in str(reply.json["error"])


def test_an_exams_estimate_moves_toward_what_it_really_costs_after_its_first_papers(live_api, auth, idle):
    exam = make_exam(live_api, auth("B"), model="gpt-4o", trial_papers=2)
    before = httpx.post(
        f"{live_api}/v1/estimate",
        headers=auth("B"),
        json={"exam_id": exam["id"], "sizes": [{"width": 1240, "height": 1754}], "class_size": 6},
    )
    assert before.status_code == 200, before.text
    estimated_first = before.json()["models"]["gpt-4o"]["lanes"]["vision"]["class_usd"]
    ids = [submit(live_api, auth("B"), exam["id"], student=f"e{n}", pages=1)["id"] for n in range(6)]
    for paper_id in ids[:2]:
        wait_for(live_api, auth("B"), paper_id)
    trial = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=auth("B")).json()["cost"]
    assert trial["papers"] == 6 and trial["papers_finished"] == 2 and trial["lane"] == "vision"
    assert trial["measured"]["output_per_question"] == "this exam"

    assert httpx.post(f"{live_api}/v1/exams/{exam['id']}/release", headers=auth("B")).status_code == 200
    for paper_id in ids[2:]:
        wait_for(live_api, auth("B"), paper_id)
    done = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=auth("B")).json()
    actual = done["cost"]["actual_usd"]
    assert actual == pytest.approx(done["usage"]["cost_usd"], abs=1e-6) and actual > 0
    assert done["cost"]["estimated_usd"] == pytest.approx(actual, abs=1e-6)  # every paper finished
    # after two papers the estimate is nearer the bill than before any
    assert abs(trial["estimated_usd"] - actual) < abs(estimated_first - actual)
    assert abs(trial["estimated_usd"] - actual) / actual < 0.25
