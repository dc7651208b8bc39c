"""The exam's blank paper through the API: stored, read on the OCR queue by a real worker, its
regions served and corrected, and a paper read with it."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.school_papers import SchoolPaper, make_school_paper
from client.cli import main
from shared.models import Paper
from tests.helpers import loopback_call, wait_for, wait_until

pytestmark = pytest.mark.integration
OCR_TIMEOUT = 180


def _files(pages: list[bytes], stem: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    kinds = [
        ("image/webp", "webp")
        if page[8:12] == b"WEBP"
        else ("image/jpeg", "jpg")
        if page[:2] == b"\xff\xd8"
        else ("image/png", "png")
        for page in pages
    ]
    return [("pages", (f"{stem}-{n}.{ext}", page, mime)) for n, (page, (mime, ext)) in enumerate(zip(pages, kinds), 1)]


def local_exam(api: str, headers: dict[str, str], paper: SchoolPaper, title: str) -> dict:
    """An offline-marked exam with the generated paper's answer key."""
    body = {
        "title": title,
        "subject": "math",
        "grade": paper.grade,
        "language": "zh",
        "provider": "local",
        "answer_key": paper.answer_key,
    }
    created = httpx.post(f"{api}/v1/exams", headers=headers, json=body)
    assert created.status_code == 201, created.text
    return created.json()


def mark_offline(api: str, headers: dict[str, str], exam: dict, paper: SchoolPaper, student: str) -> dict:
    """Submit the generated paper's pages as a student's and wait for the offline worker's marks."""
    submitted = httpx.post(
        f"{api}/v1/exams/{exam['id']}/papers",
        headers=headers,
        data={"student_ref": student, "class_label": "4(1)"},
        files=_files(paper.pages, "p"),
    )
    assert submitted.status_code == 202, submitted.text
    return wait_for(api, headers, submitted.json()["id"], timeout=OCR_TIMEOUT)


def test_a_paper_is_read_with_its_exams_blank_paper(live_api, auth, idle, app, tmp_path):
    headers = auth("A")
    paper = make_school_paper(20006)
    exam = local_exam(live_api, headers, paper, "期末测试")
    base = f"{live_api}/v1/exams/{exam['id']}/template"
    assert httpx.get(base, headers=headers).status_code == 404  # no blank paper given yet

    given = httpx.post(base, headers=headers, files=_files(paper.template_pages, "blank"))
    assert given.status_code == 202, given.text
    assert given.json()["status"] == "reading" and len(given.json()["pages"]) == len(paper.template_pages)
    template = wait_until(
        lambda: (t := httpx.get(base, headers=headers).json())["status"] != "reading" and t,
        timeout=OCR_TIMEOUT,
        what="the blank paper read",
    )
    assert template["status"] == "ready", template
    assert set(template["regions"]) == {q["id"] for q in paper.answer_key["questions"]}

    # each page's preview: the page as read, with every region on it drawn in red
    first_page = template["pages"][0]
    preview = httpx.get(f"{live_api}{first_page['preview_url']}", headers=headers)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    drawn = Image.open(io.BytesIO(preview.content)).convert("RGB")
    assert list(drawn.size) == first_page["read_size"]
    for region in (r for r in template["regions"].values() if r["page"] == 1):
        x0, y0, x1, y1 = region["box"]
        assert drawn.getpixel((x1 - 1, (y0 + y1) // 2)) == (220, 30, 30), region  # its right edge
    assert httpx.get(f"{base}/pages/9/preview", headers=headers).status_code == 404
    # and the command line saves them for the teacher to look at
    key = headers["Authorization"].removeprefix("Bearer ")
    saved = CliRunner().invoke(
        main,
        ["--json", "exams", "template", exam["id"], "--preview", str(tmp_path / "preview")],
        env={"MARKQ_API_URL": live_api, "MARKQ_API_KEY": key},
    )
    assert saved.exit_code == 0, saved.output
    pngs = sorted((tmp_path / "preview").glob("template-page-*.png"))
    assert len(pngs) == len(paper.template_pages) and Image.open(pngs[0]).size == tuple(first_page["read_size"])
    assert httpx.get(f"{live_api}{first_page['preview_url']}", headers=auth("B")).status_code == 404

    refused = httpx.patch(base, headers=headers, json={"regions": {"99": {"page": 1, "box": [0, 0, 10, 10]}}})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_regions"
    first = next(iter(template["regions"].items()))
    kept = httpx.patch(base, headers=headers, json={"regions": {first[0]: first[1]}})
    assert kept.status_code == 200 and kept.json()["regions"][first[0]] == first[1]

    marked = mark_offline(live_api, headers, exam, paper, "S01")
    assert marked["status"] in ("graded", "needs_review")
    with app.extensions["markq"].sessions() as session:
        reading = session.get_one(Paper, marked["id"]).local_reading
    assert reading["template"] is True  # every page aligned to the blank paper
    results = {q["question_id"]: q for q in marked["questions"]}
    for truth in paper.truth:  # nothing marked confidently wrong
        result = results[truth.question_id]
        if not result["needs_review"]:
            assert result["is_correct"] == truth.correct, (truth, result)


def test_a_review_items_crop_url_returns_the_answers_image(live_api, auth, idle, app):
    headers = auth("A")
    paper = make_school_paper(20011)
    exam = local_exam(live_api, headers, paper, "单元测试")
    marked = mark_offline(live_api, headers, exam, paper, "S02")
    queue = httpx.get(f"{live_api}/v1/exams/{exam['id']}/review", headers=headers).json()
    with_crops = [item for item in queue if item["crop_url"]]
    assert marked["status"] == "needs_review" and with_crops, queue
    image = httpx.get(f"{live_api}{with_crops[0]['crop_url']}", headers=headers)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    crop = Image.open(io.BytesIO(image.content))
    assert 20 <= crop.height <= 1200 and crop.width >= 20  # one answer, not a page
    # another school cannot see it
    assert httpx.get(f"{live_api}{with_crops[0]['crop_url']}", headers=auth("B")).status_code == 404


def test_a_choice_a_two_blank_question_and_a_word_problem_are_marked_right(live_api, auth, idle):
    """Read by a real worker with the exam's blank paper: the letter in the brackets, each of two
    blanks, and the answer after 答： under its working, each marked right and sure of it."""
    headers = auth("A")
    paper = make_school_paper(20004)  # a WebP phone upload of a grade-1 paper
    kinds = {q["id"]: q.get("type") for q in paper.answer_key["questions"]}
    assert (kinds["3.1"], kinds["2.3"], kinds["4.2"]) == ("choice", "blanks", "word")
    exam = local_exam(live_api, headers, paper, "一年级期末")
    base = f"{live_api}/v1/exams/{exam['id']}/template"
    assert httpx.post(base, headers=headers, files=_files(paper.template_pages, "blank")).status_code == 202
    wait_until(
        lambda: httpx.get(base, headers=headers).json()["status"] == "ready", timeout=OCR_TIMEOUT, what="template"
    )
    marked = mark_offline(live_api, headers, exam, paper, "S03")
    results = {q["question_id"]: q for q in marked["questions"]}
    choice, blanks, word = results["3.1"], results["2.3"], results["4.2"]
    assert choice["student_answer"] == "C" and choice["is_correct"] and not choice["needs_review"], choice
    assert blanks["is_correct"] and blanks["score"] == 2 and not blanks["needs_review"], blanks
    assert [p.strip() for p in blanks["student_answer"].split("；")] == ["17", "19"], blanks
    assert word["is_correct"] and word["score"] == 4 and not word["needs_review"], word
    assert "64" in word["student_answer"] and "支" in word["student_answer"], word


def test_a_vision_paper_with_a_blank_paper_sends_its_questions_crops_when_cheaper(live_api, auth, idle, app, loopback):
    """The vision lane reads every question: with the exam's blank paper, the images worker cuts
    each question's region from the aligned pages into one labelled image, sent instead of the
    pages because it costs fewer image tokens; a paper of an exam without one sends its pages."""
    headers = auth("A")
    paper = make_school_paper(20006)
    body = {"title": "裁切", "subject": "math", "grade": paper.grade, "language": "zh", "provider": "vision"}
    exam = httpx.post(f"{live_api}/v1/exams", headers=headers, json={**body, "answer_key": paper.answer_key}).json()
    base = f"{live_api}/v1/exams/{exam['id']}/template"
    assert httpx.post(base, headers=headers, files=_files(paper.template_pages, "blank")).status_code == 202
    wait_until(
        lambda: httpx.get(base, headers=headers).json()["status"] == "ready", timeout=OCR_TIMEOUT, what="template"
    )
    plain = httpx.post(f"{live_api}/v1/exams", headers=headers, json={**body, "answer_key": paper.answer_key}).json()

    loopback_call(loopback, "/_loopback/reset", {})
    sent = {}
    for label, target in (("crops", exam), ("pages", plain)):
        submitted = httpx.post(
            f"{live_api}/v1/exams/{target['id']}/papers",
            headers=headers,
            data={"student_ref": f"V-{label}"},
            files=_files(paper.pages, "p"),
        )
        assert submitted.status_code == 202, submitted.text
        sent[label] = wait_for(live_api, headers, submitted.json()["id"], timeout=OCR_TIMEOUT)
    seen = loopback_call(loopback, "/_loopback/requests")
    assert len(seen) == 2
    with_crops, with_pages = seen
    assert len(with_pages["images"]) == len(paper.pages) == 2
    [sheet] = with_crops["images"]  # one image of every question's crop
    with app.extensions["markq"].sessions() as session:
        crops = session.get_one(Paper, sent["crops"]["id"]).crops
    assert crops["questions"] == [q["id"] for q in paper.answer_key["questions"]]
    assert sheet == [crops["width"], crops["height"]]
    assert with_crops["questions"] == with_pages["questions"]  # every question asked, either way
    assert with_crops["prompt_tokens"] < with_pages["prompt_tokens"]  # the reason it was sent
    assert sent["crops"]["status"] == sent["pages"]["status"] == "graded"
    assert len(sent["crops"]["questions"]) == len(paper.answer_key["questions"])
    assert sent["crops"]["usage"]["prompt_tokens"] == with_crops["prompt_tokens"]
    # each question's crop is kept for a teacher's review, as the offline reader's are
    first = paper.answer_key["questions"][0]["id"]
    image = httpx.get(f"{live_api}/v1/papers/{sent['crops']['id']}/questions/{first}/crop", headers=headers)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).height < 400  # one question, not a page
    missing = httpx.get(f"{live_api}/v1/papers/{sent['pages']['id']}/questions/{first}/crop", headers=headers)
    assert missing.status_code == 404  # no blank paper: no crops


def test_a_blank_paper_is_derived_from_the_exams_first_papers(live_api, auth, idle, tmp_path):
    headers = auth("A")
    pupils = [make_school_paper(20011, student) for student in range(1, 6)]
    exam = local_exam(live_api, headers, pupils[0], "期末测试（没有空白卷）")
    base = f"{live_api}/v1/exams/{exam['id']}/template"
    early = httpx.post(f"{base}/derive", headers=headers)
    assert early.status_code == 409 and early.json()["error"]["code"] == "too_few_papers", early.text
    assert "at least 5" in early.json()["error"]["message"]

    submitted = []
    for n, paper in enumerate(pupils, start=1):
        sent = httpx.post(
            f"{live_api}/v1/exams/{exam['id']}/papers",
            headers=headers,
            data={"student_ref": f"S{n:02d}", "class_label": "7(2)"},
            files=_files(paper.pages, "p"),
        )
        assert sent.status_code == 202, sent.text
        submitted.append(sent.json()["id"])
    key = headers["Authorization"].removeprefix("Bearer ")
    asked = CliRunner().invoke(
        main,
        ["--json", "exams", "template", exam["id"], "--derive"],
        env={"MARKQ_API_URL": live_api, "MARKQ_API_KEY": key},
    )
    assert asked.exit_code == 0, asked.output
    assert sorted(json.loads(asked.output)["derived_from"]) == sorted(submitted)

    template = wait_until(
        lambda: (t := httpx.get(base, headers=headers).json())["status"] != "reading" and t,
        timeout=OCR_TIMEOUT,
        what="the blank paper derived and read",
    )
    assert template["status"] == "ready" and template["reason"] is None, template
    assert set(template["regions"]) == {q["id"] for q in pupils[0].answer_key["questions"]}
    assert len(template["pages"]) == len(pupils[0].pages)
    preview = httpx.get(f"{live_api}{template['pages'][0]['preview_url']}", headers=headers)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    assert httpx.post(f"{base}/derive", headers=auth("B")).status_code == 404  # another school's exam
