"""Every list pages the same way (page, page_size, X-Total-Count, Link rel="next"), and refuses a
query parameter it does not know."""

from __future__ import annotations

import io
import secrets
from typing import Any

import httpx
import pytest

from tests.helpers import ANSWERS, KEY, create_exam, loopback_call, make_exam, page_bytes, submit, verdict, wait_for


def every_page(get: Any, url: str, **params: Any) -> tuple[list[dict[str, Any]], int, int]:
    """Follow rel="next" from the first page: all items, the total the server gave, and pages read."""
    items: list[dict[str, Any]] = []
    pages, total = 0, -1
    next_url: str | None = url
    query: dict[str, Any] | None = params
    while next_url is not None:
        status, reply_headers, page = get(next_url, query)
        assert status == 200, page
        total = int(reply_headers["X-Total-Count"])
        items += page
        pages += 1
        links = httpx.Response(200, headers={"Link": reply_headers["Link"]}).links
        next_url, query = (links["next"]["url"], None) if "next" in links else (None, None)
        assert pages <= 50, "the pages never end"
    return items, total, pages


def flask_get(client, headers):  # the test client wants a path, the Link header gives a whole URL
    def get(url: str, query: dict[str, Any] | None) -> Any:
        reply = client.get(url.replace("http://localhost", ""), headers=headers, query_string=query)
        return reply.status_code, reply.headers, reply.json

    return get


def test_exams_papers_and_knowledge_points_page_by_the_next_link(client, auth):
    headers = auth("B")
    get = flask_get(client, headers)
    made = {create_exam(client, headers, title=f"单元测试 {n}", grade=4)["id"] for n in range(3)}
    exams, total, pages = every_page(get, "/v1/exams", page_size=2, grade=4)
    assert {e["id"] for e in exams} >= made and len(exams) == total == len({e["id"] for e in exams})
    assert pages == -(-total // 2)

    exam = sorted(made)[0]
    label = f"4({secrets.token_hex(3)})"
    for n in range(5):
        data = {"student_ref": f"p{n}", "class_label": label, "pages": [(io.BytesIO(page_bytes()), "p1.jpg")]}
        assert client.post(f"/v1/exams/{exam}/papers", headers=headers, data=data).status_code == 202
    papers, total, pages = every_page(get, f"/v1/exams/{exam}/papers", page_size=2)
    assert (total, pages) == (5, 3) and sorted(p["student_ref"] for p in papers) == [f"p{n}" for n in range(5)]

    students, total, pages = every_page(get, "/v1/students", page_size=2, class_label=label)
    assert (total, pages) == (5, 3) and [s["student_ref"] for s in students] == [f"p{n}" for n in range(5)]
    assert all((s["class_label"], s["papers"], s["exams"]) == (label, 1, 1) for s in students)

    points, total, pages = every_page(get, "/v1/knowledge-points", page_size=40, subject="math")
    assert total >= 150 and pages == -(-total // 40) and len({p["id"] for p in points}) == total

    beyond = client.get(f"/v1/exams/{exam}/papers", headers=headers, query_string={"page": 9, "page_size": 2})
    assert beyond.status_code == 200 and beyond.json == [] and 'rel="next"' not in beyond.headers["Link"]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/exams", {"subjet": "math"}),  # misspelt: never "every exam"
        ("/v1/knowledge-points", {"grades": "3"}),
        ("/v1/exams", {"page_size": "0"}),
        ("/v1/knowledge-points", {"page_size": "100000"}),
        ("/v1/students/S1", {"sinse": "2026-01-01T00:00:00"}),  # a report's window, misspelt
        ("/v1/classes/3A", {"untill": "2026-01-01T00:00:00"}),
        ("/v1/students/S1/practice", {"lang": "zh"}),
        ("/v1/students/S1/mistakes.csv", {"exam_id": "x"}),
        ("/v1/school/weak-points", {"grade": "3"}),
        ("/v1/students", {"class": "3A"}),
    ],
)
def test_an_unknown_or_bad_list_parameter_is_refused(client, auth, path, query):
    reply = client.get(path, headers=auth("A"), query_string=query)
    assert reply.status_code == 422 and reply.json["error"]["code"] == "invalid_request", reply.json
    assert next(iter(query)) in str(reply.json["error"]["details"])


def test_the_review_queue_pages_too(live_api, auth, idle, loopback):
    headers = auth("A")
    exam = make_exam(live_api, headers, answer_key=KEY)
    reply = {q: verdict(q, True, student_answer="", error_type="illegible", confidence=0.2) for q in ANSWERS}
    loopback_call(loopback, "/_loopback/replies", {"replies": [{"questions": reply}]})
    wait_for(live_api, headers, submit(live_api, headers, exam["id"], pages=1)["id"])

    def get(url: str, query: dict[str, Any] | None) -> Any:
        reply = httpx.get(url, headers=headers, params=query)
        return reply.status_code, reply.headers, reply.json()

    items, total, pages = every_page(get, f"{live_api}/v1/exams/{exam['id']}/review", page_size=1)
    assert total == len(ANSWERS) == pages and sorted(i["question_id"] for i in items) == sorted(ANSWERS)
