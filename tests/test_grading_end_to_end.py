"""One paper from upload to graded result: HTTP API, real Celery worker on Redis, PostgreSQL,
the S3 server, and the loopback OpenAI server through the official SDK."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from shared.models import Paper, Usage
from tests.helpers import (
    exam_school,
    loopback_call,
    make_exam,
    pause_consuming,
    queued_messages,
    resume_consuming,
    start_celery,
    stop_process,
    submit,
    wait_for,
    wait_until,
)

pytestmark = pytest.mark.integration


def completions(loopback):
    return loopback_call(loopback, "/_loopback/stats")["completions"]


def test_a_two_page_paper_is_graded_by_a_real_worker(live_api, auth, idle, loopback, settings, app):
    exam = make_exam(live_api, auth("A"))
    before = loopback_call(loopback, "/_loopback/stats")
    submitted = submit(live_api, auth("A"), exam["id"], pages=2)
    assert submitted["status"] == "queued" and len(submitted["pages"]) == 2
    paper = wait_for(live_api, auth("A"), submitted["id"])
    after = loopback_call(loopback, "/_loopback/stats")

    assert paper["status"] in {"graded", "needs_review"}
    assert [q["question_id"] for q in paper["questions"]] == ["1", "2", "3", "4"]
    vocabulary = {kp.id for kp in _exam_vocabulary(app, exam["id"])}
    for question in paper["questions"]:
        assert question["knowledge_points"], question
        assert set(question["knowledge_points"]) <= vocabulary
    # the key's own points are always kept
    assert "math.g3.fractions-intro" in paper["questions"][1]["knowledge_points"]
    assert paper["score"] == sum(q["score"] for q in paper["questions"])
    assert paper["usage"]["calls"] == 1
    assert paper["usage"]["prompt_tokens"] > 2 * 85 and paper["usage"]["completion_tokens"] > 0
    assert paper["usage"]["cost_usd"] > 0
    # both pages went as image parts, by presigned URL (the storage has a public endpoint here)
    assert after["image_parts_url"] - before["image_parts_url"] == 2
    assert after["image_parts_data"] == before["image_parts_data"]
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
    with app.extensions["markq"].sessions() as session:
        row = session.get(Paper, uuid.UUID(paper["id"]))
        keys = [p.original_key for p in row.pages] + [p.normalised_key for p in row.pages] + [row.reply_key]
        usage = session.scalars(select(Usage).where(Usage.paper_id == row.id)).all()
    assert len(usage) == 1 and usage[0].outcome == "ok" and usage[0].prompt_tokens > 0
    for key in keys:
        assert s3.head_object(Bucket=settings.s3_bucket, Key=key)["ContentLength"] > 0
    exam_now = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=auth("A")).json()
    assert exam_now["papers"] == 1 and exam_now["usage"]["cost_usd"] == pytest.approx(paper["usage"]["cost_usd"])


def test_the_same_task_delivered_twice_calls_the_provider_once(live_api, auth, idle, worker, loopback, app, settings):
    from worker.tasks import grade_paper

    exam = make_exam(live_api, auth("A"))
    pause_consuming(app, settings, worker)
    try:
        before = completions(loopback)
        submitted = submit(live_api, auth("A"), exam["id"], student="twice", pages=1)
        grade_paper.delay(submitted["id"])  # the duplicate
        grade_paper.delay(submitted["id"])  # and another
        assert queued_messages(settings) == 3
    finally:
        resume_consuming(app, settings, worker)
    paper = wait_for(live_api, auth("A"), submitted["id"])
    _wait_queue_empty(settings)
    assert completions(loopback) - before == 1
    assert paper["attempts"] == 1 and paper["usage"]["calls"] == 1


def test_a_paper_whose_message_is_lost_is_graded_after_the_sweep(
    live_api, auth, worker, loopback, app, settings, service_env, tmp_path
):
    exam = make_exam(live_api, auth("A"))
    broker = redis.Redis.from_url(settings.redis_url)
    pause_consuming(app, settings, worker)
    try:
        submitted = submit(live_api, auth("A"), exam["id"], student="lost", pages=1)
        assert queued_messages(settings) == 1
        broker.delete(settings.queue_name, settings.image_queue_name)  # gone, as after a Redis restart
        assert queued_messages(settings) == 0
    finally:
        resume_consuming(app, settings, worker)
    time.sleep(1.0)
    assert httpx.get(f"{live_api}/v1/papers/{submitted['id']}", headers=auth("A")).json()["status"] == "queued"
    beat = start_celery(
        service_env, "beat", "--loglevel=INFO", "-s", str(tmp_path / "beat-schedule"), log=tmp_path / "beat.log"
    )
    try:
        paper = wait_for(live_api, auth("A"), submitted["id"], timeout=60)
    finally:
        stop_process(beat)
    assert paper["status"] in {"graded", "needs_review"}


def test_a_rate_limited_call_is_retried_once_and_completes(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"))
    loopback_call(
        loopback,
        "/_loopback/faults",
        {
            "faults": [
                {
                    "status": 429,
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                    "message": "slow down",
                    "headers": {"retry-after-ms": "300"},
                }
            ]
        },
    )
    before = loopback_call(loopback, "/_loopback/stats")
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    after = loopback_call(loopback, "/_loopback/stats")
    assert paper["status"] in {"graded", "needs_review"}
    assert after["requests"] - before["requests"] == 2
    assert after["completions"] - before["completions"] == 1
    assert paper["attempts"] == 1  # waiting for the provider is not an attempt


def test_exhausted_quota_pauses_the_exam_with_the_providers_message(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"))
    loopback_call(
        loopback,
        "/_loopback/faults",
        {
            "faults": [
                {
                    "status": 429,
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                    "message": "You exceeded your current quota.",
                }
            ]
        },
    )
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    assert paper["status"] == "paused"
    assert "quota" in paper["status_reason"]
    exam_now = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=auth("A")).json()
    assert exam_now["progress"]["paused"] == 1 and "quota" in exam_now["status_reason"]
    # no further call for this exam: a paper submitted now pauses without one
    before = loopback_call(loopback, "/_loopback/stats")["requests"]
    later = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    assert later["status"] == "paused" and "quota" in later["status_reason"]
    assert loopback_call(loopback, "/_loopback/stats")["requests"] == before
    # after topping up, resuming grades both
    httpx.post(f"{live_api}/v1/exams/{exam['id']}/resume", headers=auth("A")).raise_for_status()
    assert wait_for(live_api, auth("A"), later["id"])["status"] in {"graded", "needs_review"}
    assert wait_for(live_api, auth("A"), paper["id"])["status"] in {"graded", "needs_review"}


def test_a_refused_provider_key_pauses_the_exam_and_never_shows_the_key(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"))
    fragment = "sk-canar***eb42"  # what a 401 quotes of the key it refused
    fault = {
        "status": 401,
        "type": "invalid_request_error",
        "code": "invalid_api_key",
        "message": f"Incorrect API key provided: {fragment}.",
    }
    loopback_call(loopback, "/_loopback/faults", {"faults": [fault]})
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    assert paper["status"] == "paused" and "provider key was refused" in paper["status_reason"]
    shown = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=auth("A")).text + json.dumps(paper)
    assert fragment not in shown and "sk-" not in shown
    # no further call for the exam until it is resumed; then it is graded
    before = loopback_call(loopback, "/_loopback/stats")["requests"]
    later = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    assert later["status"] == "paused" and loopback_call(loopback, "/_loopback/stats")["requests"] == before
    httpx.post(f"{live_api}/v1/exams/{exam['id']}/resume", headers=auth("A")).raise_for_status()
    assert wait_for(live_api, auth("A"), paper["id"])["status"] in {"graded", "needs_review"}
    assert wait_for(live_api, auth("A"), later["id"])["status"] in {"graded", "needs_review"}


def test_an_unusable_reply_is_asked_for_once_more(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"))
    before = completions(loopback)
    loopback_call(loopback, "/_loopback/replies", {"replies": ['{"questions": {"1": {"student_answer": "2']})
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    assert paper["status"] in {"graded", "needs_review"} and paper["questions"], paper
    assert completions(loopback) - before == 2 and paper["usage"]["calls"] == 2  # the cut reply, and one more


def test_twice_unusable_replies_send_the_answers_to_a_teacher_with_the_reason(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"))
    before = completions(loopback)
    truncated, off_schema = '{"questions": {', json.dumps({"questions": {"1": {"answer": 3}}})
    loopback_call(loopback, "/_loopback/replies", {"replies": [truncated, off_schema]})
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    assert paper["status"] == "needs_review", paper
    assert all(q["needs_review"] and "unusable" in q["review_reason"] for q in paper["questions"])
    assert all(q["score"] is None for q in paper["questions"]) and paper["pending_points"] == paper["max_score"]
    assert completions(loopback) - before == 2  # never a third call


def test_a_refused_request_fails_the_paper_with_the_reason(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"))
    loopback_call(
        loopback,
        "/_loopback/faults",
        {
            "faults": [
                {
                    "status": 400,
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                    "message": "Request too large for gpt-4o",
                }
            ]
        },
    )
    before = completions(loopback)
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    assert paper["status"] == "failed" and "Request too large" in paper["status_reason"]
    assert completions(loopback) == before

    # the teacher marks it again once the cause is gone, and only a failed paper can be
    retried = httpx.post(f"{live_api}/v1/papers/{paper['id']}/retry", headers=auth("A"))
    assert retried.status_code == 200 and retried.json()["attempts"] == 0, retried.text
    again = wait_for(live_api, auth("A"), paper["id"])
    assert again["status"] in {"graded", "needs_review"} and completions(loopback) == before + 1
    twice = httpx.post(f"{live_api}/v1/papers/{paper['id']}/retry", headers=auth("A"))
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "not_failed"
    assert httpx.post(f"{live_api}/v1/papers/{paper['id']}/retry", headers=auth("B")).status_code == 404


def test_resubmitting_a_failed_students_pages_replaces_the_failed_paper(live_api, auth, idle, loopback, app, settings):
    exam = make_exam(live_api, auth("A"))
    fault = {"status": 400, "type": "invalid_request_error", "code": "bad", "message": "Request too large"}
    loopback_call(loopback, "/_loopback/faults", {"faults": [fault]})
    failed = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], student="S9", pages=1)["id"])
    assert failed["status"] == "failed"
    again = submit(live_api, auth("A"), exam["id"], student="S9", pages=1)
    assert again["replaced"] == [failed["id"]]
    assert httpx.get(f"{live_api}/v1/papers/{failed['id']}", headers=auth("A")).status_code == 404
    listed = httpx.get(f"{live_api}/v1/exams/{exam['id']}/papers", headers=auth("A")).json()
    assert [p["id"] for p in listed if p["student_ref"] == "S9"] == [again["id"]]  # one row, not two
    assert wait_for(live_api, auth("A"), again["id"])["status"] in {"graded", "needs_review"}
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
    prefix = f"{exam_school(app, exam)}/{exam['id']}/{failed['id']}/"
    assert s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix)["KeyCount"] == 0  # its pages went too


def test_the_exam_report_counts_missed_points_from_sql(live_api, auth, idle, loopback):
    # idle: scripted replies go to whichever call comes next
    exam = make_exam(live_api, auth("A"))
    right = {
        "student_answer": "56",
        "is_correct": True,
        "score": 2,
        "knowledge_points": [],
        "error_type": "none",
        "explanation": "",
        "correction": "",
        "confidence": 0.95,
    }
    wrong = {
        **right,
        "student_answer": "54",
        "is_correct": False,
        "score": 0,
        "error_type": "calculation",
        "explanation": "7 x 8 is 56",
        "correction": "7 x 8 = 56",
    }
    q2 = {**right, "student_answer": "0.75"}
    q3 = {**right, "student_answer": "24厘米", "score": 3}
    q4_right = {**right, "student_answer": "7……2", "score": 3}
    q4_wrong = {**wrong, "student_answer": "7……1", "score": 0}
    replies = [
        {"questions": {"1": wrong, "2": q2, "3": q3, "4": q4_wrong}},
        {"questions": {"1": wrong, "2": q2, "3": q3, "4": q4_right}},
    ]
    loopback_call(loopback, "/_loopback/replies", {"replies": replies})
    ids = [submit(live_api, auth("A"), exam["id"], student=f"r{n}", pages=1)["id"] for n in range(2)]
    for paper_id in ids:
        wait_for(live_api, auth("A"), paper_id)
    report = httpx.get(f"{live_api}/v1/exams/{exam['id']}/report", headers=auth("A")).json()
    missed = {row["id"]: (row["missed"], row["attempted"]) for row in report["missed_knowledge_points"]}
    assert missed["math.g3.multi-digit-multiplication"] == (2, 2)
    assert missed["math.g3.fractions-intro"] == (0, 2)
    assert report["missed_knowledge_points"][0]["id"] == "math.g3.multi-digit-multiplication"
    assert sorted(p["score"] for p in report["papers"]) == [5, 8]


def _wait_queue_empty(settings, timeout=10.0):
    # a queue still not empty after `timeout` is no failure: the test goes on
    wait_until(lambda: not queued_messages(settings), timeout=timeout, every=0.1, fail=False)
    time.sleep(1.0)  # let the worker finish the delivery it took


def _exam_vocabulary(app, exam_id):
    from shared.grading.vocabulary import exam_vocabulary
    from shared.models import Exam

    with app.extensions["markq"].sessions() as session:
        return exam_vocabulary(session, session.get(Exam, uuid.UUID(exam_id)))


def test_simulated_correct_answers_score_full_points(live_api, auth, worker):
    exam = make_exam(live_api, auth("A"))
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    for question in paper["questions"]:
        if question["is_correct"]:
            assert question["score"] == question["max_score"]
        else:
            assert question["score"] == 0


def test_a_server_error_is_retried_with_backoff_and_counted_in_sql(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"))
    loopback_call(loopback, "/_loopback/faults", {"faults": [{"status": 503, "message": "overloaded"}]})
    before = loopback_call(loopback, "/_loopback/stats")
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"], timeout=90)
    after = loopback_call(loopback, "/_loopback/stats")
    assert paper["status"] in {"graded", "needs_review"}
    assert paper["attempts"] == 2  # the failed call was an attempt
    assert after["requests"] - before["requests"] == 2 and after["completions"] - before["completions"] == 1
    assert paper["usage"]["calls"] == 2 and paper["usage"]["cost_usd"] > 0


def test_server_errors_past_the_attempt_limit_fail_the_paper_with_the_reason(live_api, auth, idle, loopback, settings):
    exam = make_exam(live_api, auth("A"))
    faults = [{"status": 500, "message": "still broken"}] * settings.max_attempts
    loopback_call(loopback, "/_loopback/faults", {"faults": faults})
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"], timeout=120)
    assert paper["status"] == "failed"
    assert f"gave up after {settings.max_attempts} attempts" in paper["status_reason"]
    assert "still broken" in paper["status_reason"]


def test_metrics_show_the_graded_paper_and_its_call_to_the_token_holder_only(live_api, auth, idle, loopback):
    exam = make_exam(live_api, auth("A"))
    paper = wait_for(live_api, auth("A"), submit(live_api, auth("A"), exam["id"], pages=1)["id"])
    assert paper["status"] in {"graded", "needs_review"}
    assert httpx.get(f"{live_api}/metrics").status_code == 401
    assert httpx.get(f"{live_api}/metrics", headers=auth("A")).status_code == 401  # a school's key is not it
    scraped = httpx.get(f"{live_api}/metrics", headers={"Authorization": "Bearer metrics-token-for-tests"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    assert samples[("markq_papers", (("status", paper["status"]),))] >= 1
    calls = sum(
        v
        for (name, labels), v in samples.items()
        if name == "markq_provider_calls_total" and ("outcome", "ok") in labels
    )
    assert calls >= 1
    assert sum(v for (name, _l), v in samples.items() if name == "markq_spent_usd_total") > 0
    assert any(name == "markq_queue_depth" for name, _l in samples)
    # how long calls took: the loopback server answers in its configured latency, never in 0 s
    answered = sum(v for (name, _l), v in samples.items() if name == "markq_provider_call_seconds_count")
    took = sum(v for (name, _l), v in samples.items() if name == "markq_provider_call_seconds_sum")
    assert answered >= 1 and took > 0
    assert (
        sum(
            v
            for (n, labels), v in samples.items()
            if n == "markq_provider_call_seconds_bucket" and ("le", "+Inf") in labels
        )
        == answered
    )
    assert any(
        name == "markq_http_requests_total" and ("route", "/v1/papers/<uuid:paper_id>") in labels
        for name, labels in samples
    )
