"""Known verdicts for a class, through the real worker: the reports count exactly, a teacher's
override moves every count, and the deterministic check and illegible answers go to review."""

from __future__ import annotations

import csv
import io
import secrets

import httpx
import pytest

from tests.helpers import ANSWERS, KEY, loopback_call, make_exam, page_bytes, submit, verdict, wait_for

pytestmark = pytest.mark.integration

# student -> (class, questions answered wrong)
CLASS = {
    "A1": ("3A", {"1"}),
    "A2": ("3A", {"1", "3"}),
    "A3": ("3A", set()),
    "B1": ("3B", {"2"}),
    "B2": ("3B", {"1", "2", "3"}),
}


def test_report_counts_per_point_class_and_student_are_exact_and_follow_an_override(live_api, auth, idle, loopback):
    headers = auth("A")
    exam = make_exam(live_api, headers, answer_key=KEY)
    papers = {}
    replies = [{"questions": {q: verdict(q, q in wrong) for q in ANSWERS}} for _label, wrong in CLASS.values()]
    loopback_call(loopback, "/_loopback/replies", {"replies": replies})
    for student, (label, _wrong) in CLASS.items():  # one at a time: scripted replies go in order
        files = [("pages", ("p1.jpg", page_bytes(), "image/jpeg"))]
        reply = httpx.post(
            f"{live_api}/v1/exams/{exam['id']}/papers",
            headers=headers,
            data={"student_ref": student, "class_label": label},
            files=files,
        )
        papers[student] = wait_for(live_api, headers, reply.json()["id"])
        assert papers[student]["status"] == "graded", papers[student]

    report = httpx.get(f"{live_api}/v1/exams/{exam['id']}/report", headers=headers).json()
    missed = {r["id"]: (r["missed"], r["attempted"]) for r in report["missed_knowledge_points"]}
    assert missed == {"math.g2.times-tables": (3, 5), "math.g3.perimeter": (2, 5), "math.g3.fractions-intro": (2, 5)}
    assert report["missed_knowledge_points"][0]["id"] == "math.g2.times-tables"
    by_class = {
        c["class_label"]: {r["id"]: (r["missed"], r["attempted"]) for r in c["missed_knowledge_points"]}
        for c in report["classes"]
    }
    assert by_class["3A"] == {
        "math.g2.times-tables": (2, 3),
        "math.g3.perimeter": (1, 3),
        "math.g3.fractions-intro": (0, 3),
    }
    assert by_class["3B"] == {
        "math.g2.times-tables": (1, 2),
        "math.g3.perimeter": (1, 2),
        "math.g3.fractions-intro": (2, 2),
    }
    assert {q["question_id"]: (q["correct"], q["attempted"]) for q in report["questions"]} == {
        "1": (2, 5),
        "2": (3, 5),
        "3": (3, 5),
    }
    # scores: A1 5/7, A2 2/7, A3 7/7, B1 5/7, B2 0/7 -> percent 71, 29, 100, 71, 0
    assert {b["range"]: b["papers"] for b in report["score_distribution"]} == {
        "0-59%": 2,
        "60-69%": 0,
        "70-79%": 2,
        "80-89%": 0,
        "90-100%": 1,
        "pending review": 0,
    }
    student = httpx.get(f"{live_api}/v1/students/B2", headers=headers, params={"exam": exam["id"]}).json()
    assert {w["id"]: (w["missed"], w["attempted"]) for w in student["weak_points"]} == {
        "math.g2.times-tables": (1, 1),
        "math.g3.fractions-intro": (1, 1),
        "math.g3.perimeter": (1, 1),
    }
    notebook = {g["knowledge_point"]: g["mistakes"] for g in student["mistake_notebook"]}
    assert notebook["math.g3.perimeter"][0]["correction"] == "= 24厘米"
    assert notebook["math.g3.perimeter"][0]["student_answer"] == "12厘米"

    # The teacher decides A2's answer to question 3 was right after all.
    overridden = httpx.patch(
        f"{live_api}/v1/papers/{papers['A2']['id']}/questions/3", headers=headers, json={"is_correct": True}
    )
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["score"] == 2 + 3
    report = httpx.get(f"{live_api}/v1/exams/{exam['id']}/report", headers=headers).json()
    missed = {r["id"]: (r["missed"], r["attempted"]) for r in report["missed_knowledge_points"]}
    assert missed["math.g3.perimeter"] == (1, 5)
    by_class = {
        c["class_label"]: {r["id"]: r["missed"] for r in c["missed_knowledge_points"]} for c in report["classes"]
    }
    assert by_class["3A"]["math.g3.perimeter"] == 0
    assert report["review"] == {"needing_review": 0, "reviewed": 1, "model_teacher_agreement": 0.0}
    rows = list(
        csv.DictReader(
            io.StringIO(
                httpx.get(
                    f"{live_api}/v1/exams/{exam['id']}/report.csv",
                    headers=headers,
                    params={"table": "knowledge_points"},
                ).text.lstrip("\ufeff")
            )
        )
    )
    assert {r["id"]: (int(r["missed"]), int(r["attempted"])) for r in rows}["math.g3.perimeter"] == (1, 5)


def test_the_check_sends_3_4_marked_wrong_against_0_75_to_review(live_api, auth, idle, loopback):
    headers = auth("A")
    exam = make_exam(live_api, headers, answer_key=KEY)
    reply = {q: verdict(q, False) for q in ANSWERS}
    reply["2"] = verdict("2", True, student_answer="3/4", error_type="concept")
    loopback_call(loopback, "/_loopback/replies", {"replies": [{"questions": reply}]})
    paper = wait_for(live_api, headers, submit(live_api, headers, exam["id"], pages=1)["id"])
    question = next(q for q in paper["questions"] if q["question_id"] == "2")
    assert paper["status"] == "needs_review"
    assert question["needs_review"] and question["is_correct"] is False
    queue = httpx.get(f"{live_api}/v1/exams/{exam['id']}/review", headers=headers).json()
    assert [(i["question_id"], i["check_equivalent"]) for i in queue] == [("2", True)]
    assert "equivalent" in queue[0]["review_reason"]
    # not counted as missed while it waits for the teacher
    report = httpx.get(f"{live_api}/v1/exams/{exam['id']}/report", headers=headers).json()
    assert {r["id"]: r["attempted"] for r in report["missed_knowledge_points"]}.get("math.g3.fractions-intro") is None


def test_an_illegible_answer_goes_to_review_and_is_not_scored_zero(live_api, auth, idle, loopback):
    headers = auth("A")
    exam = make_exam(live_api, headers, answer_key=KEY)
    reply = {q: verdict(q, False) for q in ANSWERS}
    reply["3"] = verdict("3", True, student_answer="", error_type="illegible", confidence=0.2)
    loopback_call(loopback, "/_loopback/replies", {"replies": [{"questions": reply}]})
    paper = wait_for(live_api, headers, submit(live_api, headers, exam["id"], pages=1)["id"])
    question = next(q for q in paper["questions"] if q["question_id"] == "3")
    assert question["needs_review"] and question["score"] is None
    assert "illegible" in question["review_reason"]
    assert paper["status"] == "needs_review" and paper["score"] == 4  # 2 + 2 scored, 3 pending
    assert paper["pending_points"] == 3 and paper["provisional"] is True and paper["max_score"] == 7
    report = httpx.get(f"{live_api}/v1/exams/{exam['id']}/report", headers=headers).json()
    row = next(p for p in report["papers"] if p["id"] == paper["id"])
    assert (row["score"], row["pending_points"], row["max_score"]) == (4, 3, 7)
    # placed by its decided points (4 of 4), counted as provisional, never as 4 of 7
    buckets = {b["range"]: (b["papers"], b["provisional"]) for b in report["score_distribution"]}
    assert buckets["90-100%"] == (1, 1) and buckets["0-59%"] == (0, 0)
    # the teacher reads it: 24 cm, right
    after = httpx.patch(
        f"{live_api}/v1/papers/{paper['id']}/questions/3", headers=headers, json={"is_correct": True}
    ).json()
    assert after["status"] == "graded" and after["score"] == 7
    assert after["pending_points"] == 0 and after["provisional"] is False


def test_a_trial_run_grades_the_first_papers_and_holds_the_rest_until_released(live_api, auth, idle):
    headers = auth("A")
    exam = make_exam(live_api, headers, answer_key=KEY, trial_papers=2)
    ids = [submit(live_api, headers, exam["id"], student=f"t{n}", pages=1)["id"] for n in range(4)]
    first = [wait_for(live_api, headers, paper_id) for paper_id in ids[:2]]
    assert all(p["status"] in ("graded", "needs_review") for p in first)
    held = [httpx.get(f"{live_api}/v1/papers/{paper_id}", headers=headers).json() for paper_id in ids[2:]]
    assert [p["status"] for p in held] == ["paused", "paused"] and "trial run" in held[0]["status_reason"]
    released = httpx.post(f"{live_api}/v1/exams/{exam['id']}/release", headers=headers).json()
    assert released["trial_released"] is True
    assert all(wait_for(live_api, headers, paper_id)["status"] in ("graded", "needs_review") for paper_id in ids[2:])


def test_a_school_point_used_in_three_exams_adds_up_for_the_student_and_the_class(live_api, auth, idle, loopback):
    headers = auth("A")
    own = [{"id": "cube-counting", "name_zh": "数小正方体", "name_en": "Counting small cubes", "aliases": ["数方块"]}]
    named = ["cube-counting", "数小正方体", "Counting small cubes"]  # its id, its Chinese name, its English name
    student, label = f"K{secrets.token_hex(3)}", f"3({secrets.token_hex(2)})"
    point = None
    for n, name in enumerate(named):
        key = {"questions": [{"id": "1", "answer": "8", "points": 1, "knowledge_points": [name]}]}
        exam = make_exam(live_api, headers, answer_key=key, title=f"正方体 {n}", knowledge_points=own if n == 0 else [])
        resolved = exam["answer_key"]["questions"][0]["knowledge_points"]
        assert len(resolved) == 1 and resolved[0].startswith("school-") and resolved[0].endswith(".cube-counting")
        assert point in (None, resolved[0])  # the same point in every exam
        point = resolved[0]
        loopback_call(loopback, "/_loopback/replies", {"replies": [{"questions": {"1": verdict("1", True)}}]})
        paper = submit(live_api, headers, exam["id"], student=student, pages=1, class_label=label)
        wait_for(live_api, headers, paper["id"])
    report = httpx.get(f"{live_api}/v1/students/{student}", headers=headers).json()
    assert [(w["id"], w["missed"], w["attempted"]) for w in report["weak_points"]] == [(point, 3, 3)]
    trend = report["weak_points"][0]["trend"]  # exam by exam, in date order
    assert [(t["missed"], t["attempted"]) for t in trend] == [(1, 1)] * 3
    assert [t["date"] for t in trend] == sorted(t["date"] for t in trend) and len({t["exam_id"] for t in trend}) == 3
    klass = httpx.get(f"{live_api}/v1/classes/{label}", headers=headers).json()
    assert [(w["id"], w["missed"], w["attempted"]) for w in klass["weak_points"]] == [(point, 3, 3)]
    assert klass["papers"] == 3 and klass["students"] == 1
    # the school's vocabulary lists it; another school neither sees nor uses it
    listed = httpx.get(f"{live_api}/v1/knowledge-points", headers=headers, params={"subject": "math"}).json()
    assert point in {p["id"] for p in listed}
    elsewhere = httpx.get(f"{live_api}/v1/knowledge-points", headers=auth("B"), params={"subject": "math"}).json()
    assert point not in {p["id"] for p in elsewhere}
    for name in (point, "cube-counting", "数小正方体"):
        refused = httpx.post(
            f"{live_api}/v1/exams",
            headers=auth("B"),
            json={
                "title": "t",
                "subject": "math",
                "grade": 3,
                "answer_key": {"questions": [{"id": "1", "answer": "1", "points": 1, "knowledge_points": [name]}]},
            },
        )
        assert refused.status_code == 422 and "unknown knowledge points" in refused.json()["error"]["message"]
    assert httpx.get(f"{live_api}/v1/classes/no-such-class", headers=headers).status_code == 404
    assert httpx.get(f"{live_api}/v1/students/no-such-student", headers=headers).status_code == 404


def test_the_vocabulary_lists_at_least_150_mathematics_points_for_grades_1_to_9(client, auth):
    points = client.get("/v1/knowledge-points", headers=auth("A"), query_string={"subject": "math"}).json
    assert len(points) >= 150
    assert {p["grade"] for p in points} == set(range(1, 10))
    assert all(p["name_zh"] and p["name_en"] and p["strand"] for p in points)
    grade3 = client.get("/v1/knowledge-points", headers=auth("A"), query_string={"subject": "math", "grade": 3}).json
    assert {p["grade"] for p in grade3} == {3} and any("乘法口诀" in p["aliases"] for p in points)
    for subject in ("chinese", "english"):
        assert len(client.get("/v1/knowledge-points", headers=auth("A"), query_string={"subject": subject}).json) >= 10


def test_a_question_the_key_leaves_open_is_solved_by_the_model_with_lower_confidence(live_api, auth, idle, loopback):
    headers = auth("A")
    key = {"questions": [{"id": "1", "answer": "56", "points": 2}, {"id": "2", "points": 2, "prompt": "12 × 12 = ?"}]}
    exam = make_exam(live_api, headers, answer_key=key)
    loopback_call(
        loopback,
        "/_loopback/replies",
        {"replies": [{"questions": {"1": verdict("1", False), "2": {**verdict("1", False), "student_answer": "144"}}}]},
    )
    paper = wait_for(live_api, headers, submit(live_api, headers, exam["id"], pages=1)["id"])
    by_id = {q["question_id"]: q for q in paper["questions"]}
    assert by_id["1"]["from_key"] is True and by_id["1"]["confidence"] == 0.95
    assert by_id["2"]["from_key"] is False and by_id["2"]["confidence"] <= 0.6
    assert by_id["2"]["correct_answer"] == "" and by_id["2"]["check_equivalent"] is None
