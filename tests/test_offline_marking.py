"""Offline marking (provider `local`) and the cascade (provider `cascade`): the OCR reader on the
demo's sample papers, the verdicts it gives, and the whole path through the API, a real Celery
worker (the OCR queue), PostgreSQL, the S3 server and, for the cascade, the loopback OpenAI server."""

from __future__ import annotations

import io
import secrets
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from client import samples
from shared.grading.answer_key import AnswerKey, KeyQuestion
from shared.grading.lanes import check_lane
from shared.grading.reader.layout import normalise_text
from shared.grading.reader.marking import mark_reading
from shared.grading.reader.reading import AnswerReading, read_paper
from shared.models import Paper, Priority, Reader
from tests.helpers import exam_body, loopback_call, page_bytes, wait_for, wait_until
from worker.celery_app import queue_keys

OCR_TIMEOUT = 120.0  # the first paper also loads the OCR engine


@pytest.fixture(scope="module")
def sample_papers(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return samples.write_samples(tmp_path_factory.mktemp("samples"))


def math_plan(sample_papers: dict) -> dict:
    return sample_papers["exams"][0]


def english_plan(sample_papers: dict) -> dict:
    return sample_papers["exams"][1]


def read(plan: dict, student: str) -> dict[str, AnswerReading]:
    key = AnswerKey.model_validate(plan["exam"]["answer_key"])
    return read_paper([path.read_bytes() for path in plan["papers"][student]], key)


def test_the_reader_reads_each_students_answers_on_the_sample_papers(sample_papers):
    readings = read(math_plan(sample_papers), "S02")  # wrote 54 for 7x8 and 12厘米 for the perimeter
    assert {qid: r.text for qid, r in readings.items()} == {
        "1": "54",
        "2": "0.75",
        "3": "12厘米",
        "4": "5……3",
        "5": "2000",
        "6": "500",
    }
    # the remainder's dots read poorly, so its two numbers are read again on their own
    assert readings["4"].confidence >= 0.9 and "apart from the dots" in readings["4"].note
    assert all(r.state == "read" and r.page in (1, 2) for r in readings.values())
    # S04's first page is a phone photo stored sideways with an EXIF turn: read upright
    assert read(math_plan(sample_papers), "S04")["3"].text == "32厘米"
    english = read(english_plan(sample_papers), "E03")
    assert normalised(english["1"].text) == "play" and normalised(english["2"].text) == "reading"


def normalised(text: str) -> str:
    return normalise_text(text)


def test_confident_verdicts_match_what_the_students_wrote(sample_papers):
    plan = math_plan(sample_papers)
    key = AnswerKey.model_validate(plan["exam"]["answer_key"])
    for student, wrong in samples.MATH_STUDENTS.items():
        readings = read(plan, student)
        for question in key.questions:
            mark = mark_reading(readings[question.id], question, "math", "zh")
            if mark.confidence >= 0.9:
                assert mark.is_correct == (question.id not in wrong), (student, question.id, mark)
                assert mark.knowledge_points == question.knowledge_points
                assert mark.score == (question.points if mark.is_correct else 0)


PAPER = (250, 249, 245)


def draw_scribble(draw: ImageDraw.ImageDraw, top: int) -> None:
    """A heavy scribble in blue ink from `top` down, under a question: writing, but not text."""
    for n in range(12):
        draw.line((160 + n * 9, top, 240 + n * 11, top + 60 - n * 3), fill=(25, 45, 150), width=5)


def scribbled(page: Path, top: int, folder: Path) -> Path:
    """The sample page with the answer under the question at `top` rubbed out and scribbled over:
    writing no reader can be sure of."""
    with Image.open(page) as image:
        image = image.convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, top + 45, 1150, top + 200), fill=PAPER)
    draw_scribble(draw, top + 80)
    out = folder / f"scribbled-{page.name}"
    image.save(out, "JPEG", quality=90)
    return out


def new_page() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    page = Image.new("RGB", samples.A4_150_DPI, PAPER)
    return page, ImageDraw.Draw(page)


def jpeg(page: Image.Image) -> bytes:
    out = io.BytesIO()
    page.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_blank_answer_is_marked_blank_and_a_scribble_goes_to_review():
    key = AnswerKey.model_validate(
        {
            "questions": [
                {"id": "1", "prompt": "7 × 8 =", "answer": "56", "points": 2},
                {"id": "2", "prompt": "125 × 4 =", "answer": "500", "points": 2},
            ]
        }
    )
    page, draw = new_page()
    printed = samples._font(samples.PRINT_FONTS, 34)
    draw.text((90, 240), "1. 7 × 8 =", font=printed, fill=(15, 15, 15))
    draw.text((90, 600), "2. 125 × 4 =", font=printed, fill=(15, 15, 15))
    draw_scribble(draw, 680)  # under question 2
    readings = read_paper([jpeg(page)], key)
    assert readings["1"].state == "blank"
    blank = mark_reading(readings["1"], key.questions[0], "math", "zh")
    assert (blank.is_correct, blank.error_type, blank.score) == (False, "blank", 0)
    scribble = mark_reading(readings["2"], key.questions[1], "math", "zh")
    assert scribble.confidence < 0.9, readings["2"]


def question(answer: str | None, accepted: tuple[str, ...] = ()) -> KeyQuestion:
    return KeyQuestion(id="1", answer=answer, points=3, accepted=list(accepted), knowledge_points=["math.g3.perimeter"])


def reading(text: str, confidence: float = 0.99, state: str = "read") -> AnswerReading:
    return AnswerReading("1", state, text, confidence)  # type: ignore[arg-type]


def test_verdicts_compare_values_units_and_text():
    assert mark_reading(reading("3/4"), question("0.75"), "math", "zh").is_correct
    assert mark_reading(reading("5余3"), question("5……3"), "math", "zh").is_correct
    unit = mark_reading(reading("24"), question("24厘米"), "math", "zh")
    assert (unit.is_correct, unit.error_type) == (False, "unit")
    assert "24厘米" in unit.correction
    assert mark_reading(reading("ARE READING"), question("are reading"), "english", "en").is_correct
    assert not mark_reading(reading("childs"), question("children"), "english", "en").is_correct


def test_unsure_readings_give_unsure_verdicts():
    # one character from the key: as likely a misreading as a mistake, however sure one reading
    # is ("27人" read "7人" three times at 0.99); every reading agreeing is a mistake, unless the
    # one digit that differs is one the reader takes for the key's (8 for 6: 374 read for 324)
    assert mark_reading(reading("58", 0.95), question("56"), "math", "zh").confidence < 0.9
    assert mark_reading(reading("58", 0.999), question("56"), "math", "zh").confidence < 0.9
    agreed = AnswerReading("1", "read", "52", 0.97, agreeing=4)
    assert mark_reading(agreed, question("56"), "math", "zh").confidence >= 0.9
    confusable = AnswerReading("1", "read", "58", 0.97, agreeing=4)
    assert mark_reading(confusable, question("56"), "math", "zh").confidence < 0.9
    # the key is a number and the reading is not: probably misread
    assert mark_reading(reading("5k", 0.99), question("56"), "math", "zh").confidence < 0.9
    # letters that look like digits are taken as digits where the key has no letter: right when
    # that lands on the key, and unsure when it still misses it
    lookalike = mark_reading(reading("18C元", 0.95), question("180元"), "math", "zh")
    assert lookalike.is_correct and lookalike.confidence >= 0.9
    assert mark_reading(reading("Cl", 0.99), question("60"), "math", "zh").confidence < 0.9
    assert not mark_reading(reading("5b", 0.99), question("5b"), "math", "zh").confidence < 0.9  # a letter is kept
    # a gap inside a value is closed; a raised 2 the reader lost is a power, and never confidently wrong
    assert mark_reading(reading("1.4 4", 0.97), question("1.44"), "math", "zh").is_correct
    lost = mark_reading(reading("X2-81", 0.97), question("x²-81"), "math", "zh")
    assert lost.is_correct or lost.confidence < 0.9
    illegible = mark_reading(reading("", 0.0, "illegible"), question("56"), "math", "zh")
    assert (illegible.error_type, illegible.confidence) == ("illegible", 0.0)
    no_answer = mark_reading(reading("56"), question(None), "math", "en")
    assert no_answer.confidence == 0.0 and "no answer" in no_answer.explanation


def test_the_key_lends_confidence_only_to_a_right_answer_no_misreading_could_make():
    # three readings giving the key's answer are trusted though the engine scores them low
    assert (
        mark_reading(AnswerReading("1", "read", "56", 0.6, agreeing=3), question("56"), "math", "zh").confidence >= 0.9
    )
    assert (
        mark_reading(AnswerReading("1", "read", "56", 0.6, agreeing=2), question("56"), "math", "zh").confidence < 0.9
    )
    # a wrong answer is never lifted so: it may be the right one misread
    assert (
        mark_reading(AnswerReading("1", "read", "58", 0.6, agreeing=3), question("56"), "math", "zh").confidence < 0.9
    )
    # the 0s of 7000 lost: a misreading, not a confident mistake
    assert mark_reading(reading("700", 0.99), question("7000"), "math", "zh").confidence < 0.9
    # a lone choice letter no other option is mistaken for; B among B and D is not lifted
    options = {"A": "41", "B": "4000", "C": "4", "D": "40"}
    choice_a = KeyQuestion(id="1", type="choice", answer="A", options=options, points=2, knowledge_points=[])
    choice_b = KeyQuestion(id="1", type="choice", answer="B", options=options, points=2, knowledge_points=[])
    assert mark_reading(reading("A", 0.6), choice_a, "math", "zh").confidence >= 0.9
    assert mark_reading(reading("B", 0.6), choice_b, "math", "zh").confidence < 0.9


def test_letters_read_for_digits_are_trusted_where_the_recogniser_weighs_the_key():
    # "Z" for 2, read three times of four: discounted, unless the recogniser itself gave "2" a real chance
    weighed = AnswerReading("1", "read", "Z", 0.54, agreeing=3, key_likelihood=0.42)
    unweighed = AnswerReading("1", "read", "Z", 0.54, agreeing=3, key_likelihood=0.004)
    assert mark_reading(weighed, question("2"), "math", "zh").confidence >= 0.9
    assert mark_reading(unweighed, question("2"), "math", "zh").confidence < 0.9
    # a handwritten 9 read "a", a 0 read "℃": digits where the key has no letter, and not where it has
    assert mark_reading(reading("a", 0.97), question("9"), "math", "zh").is_correct
    assert mark_reading(reading("18℃元", 0.95), question("180元"), "math", "zh").is_correct
    assert not mark_reading(reading("3℃", 0.95), question("30℃"), "math", "zh").is_correct
    # a times sign read as x is notation, not a letter taken for a digit: no discount
    blanks = KeyQuestion.model_validate(
        {"id": "1", "type": "blanks", "blanks": [{"answer": "7×9", "points": 1}, {"answer": "63", "points": 1}]}
    )
    assert mark_reading(reading("7x9；63", 0.85), blanks, "math", "zh").confidence >= 0.9


def test_a_word_problems_answer_with_a_digit_glued_to_the_words_before_it_is_never_a_sure_mistake():
    word = KeyQuestion.model_validate({"id": "12", "type": "word", "answer": "327.5千米", "points": 3})
    # 行驶了327.5千米 with its 了 read as 7, four readings alike: the key's answer after a digit
    misread = AnswerReading("12", "read", "行驶7327.5千米。", 0.99, agreeing=4)
    assert not mark_reading(misread, word, "math", "zh").is_correct
    assert mark_reading(misread, word, "math", "zh").confidence < 0.9
    # the same digits without words before them are no surer (a struck 7 read on into the answer);
    # another number after words stays sure
    assert mark_reading(replace(misread, text="7327.5千米"), word, "math", "zh").confidence < 0.9
    assert mark_reading(replace(misread, text="行驶了328.5千米。"), word, "math", "zh").confidence >= 0.9


def test_a_word_problem_whose_working_gives_its_answer_is_a_sure_mistake_however_near_the_key():
    word = KeyQuestion(id="1", type="word", answer="168元", points=3, knowledge_points=[])
    # 178 in the working and on the 答 line: two writings misread alike is unlikely, so it is what was written
    twice = mark_reading(reading("74×70%=178（元） 答：178元", 0.85), word, "math", "zh")
    assert not twice.is_correct and twice.confidence >= 0.9
    once = mark_reading(reading("答：178元", 0.85), word, "math", "zh")
    assert not once.is_correct and once.confidence < 0.9  # a digit from the key, read once: perhaps misread


def test_a_word_problem_read_as_its_printed_answer_mark_alone_is_blank():
    word = KeyQuestion(id="1", type="word", answer="90元", points=3, knowledge_points=[])
    alone = AnswerReading("1", "read", "答：", 1.0, agreeing=4)  # every reading: the print, nothing after it
    mark = mark_reading(alone, word, "math", "zh")
    assert (mark.is_correct, mark.score, mark.error_type, mark.student_answer) == (False, 0, "blank", "")
    assert mark.confidence >= 0.9 and mark.explanation == "没有作答。"
    # read so by two of four readings: something else may be written there, a teacher looks
    assert mark_reading(replace(alone, agreeing=2, confidence=0.95), word, "math", "zh").confidence < 0.9
    # working above it is no blank answer
    assert mark_reading(replace(alone, text="5×18=90（元） 答："), word, "math", "zh").error_type != "blank"


def test_local_marking_needs_an_answer_for_every_question_and_vision_needs_a_key():
    unanswered = ["2"]  # question 1 has an answer in the key, question 2 none
    assert "no answer for question(s) 2" in check_lane(Reader.local, Priority.standard, unanswered, True)
    assert "no OPENAI_API_KEY" in check_lane(Reader.cascade, Priority.standard, unanswered, False)
    assert "economy" in check_lane(Reader.cascade, Priority.economy, unanswered, True)
    assert check_lane(Reader.cascade, Priority.standard, unanswered, True) is None  # the model solves 2


def test_a_local_exam_without_answers_is_refused_in_the_error_shape(client, auth):
    body = {
        "title": "t",
        "subject": "math",
        "grade": 3,
        "provider": "local",
        "answer_key": {"questions": [{"id": "1", "points": 2}]},
    }
    reply = client.post("/v1/exams", headers=auth("A"), json=body)
    assert reply.status_code == 422
    assert reply.json["error"]["code"] == "invalid_exam"
    assert "question(s) 1" in reply.json["error"]["message"]


def create_exam(api: str, headers: dict, plan: dict, provider: str, **fields: object) -> dict:
    reply = httpx.post(f"{api}/v1/exams", headers=headers, json={**plan["exam"], "provider": provider, **fields})
    assert reply.status_code == 201, reply.text
    assert reply.json()["provider"] == provider
    return reply.json()


def submit(api: str, headers: dict, exam_id: str, student: str, pages: list[Path]) -> dict:
    files = [("pages", (path.name, path.read_bytes(), "image/jpeg")) for path in pages]
    reply = httpx.post(
        f"{api}/v1/exams/{exam_id}/papers",
        headers=headers,
        data={"student_ref": student, "class_label": "3(2)"},
        files=files,
    )
    assert reply.status_code == 202, reply.text
    return reply.json()


@pytest.mark.integration
def test_a_local_exam_is_marked_offline_with_no_provider_call(live_api, auth, idle, loopback, sample_papers):
    plan = math_plan(sample_papers)
    exam = create_exam(live_api, auth("A"), plan, "local")
    before = loopback_call(loopback, "/_loopback/stats")["requests"]
    submitted = submit(live_api, auth("A"), exam["id"], "S02", plan["papers"]["S02"])
    paper = wait_for(live_api, auth("A"), submitted["id"], timeout=OCR_TIMEOUT)

    assert loopback_call(loopback, "/_loopback/stats")["requests"] == before  # nothing reached it
    assert paper["status"] == "graded" and paper["score"] == 10
    by_id = {q["question_id"]: q for q in paper["questions"]}
    assert all(q["marked_by"] == "local" for q in paper["questions"])
    assert (by_id["1"]["student_answer"], by_id["1"]["is_correct"], by_id["1"]["needs_review"]) == ("54", False, False)
    assert by_id["1"]["knowledge_points"] == ["math.g2.times-tables"]
    assert by_id["3"]["is_correct"] is False and by_id["2"]["is_correct"] is True
    assert by_id["4"]["student_answer"] == "5……3" and by_id["4"]["is_correct"] is True
    assert paper["usage"]["calls"] == 0 and paper["usage"]["cost_usd"] == 0
    report = httpx.get(f"{live_api}/v1/exams/{exam['id']}/report", headers=auth("A")).json()
    missed = {row["id"]: row["missed"] for row in report["missed_knowledge_points"]}
    assert missed["math.g2.times-tables"] == 1 and missed["math.g3.perimeter"] == 1


@pytest.mark.integration
def test_the_cascade_sends_only_the_unsure_questions_to_the_vision_model(
    live_api, auth, idle, loopback, sample_papers, tmp_path
):
    plan = math_plan(sample_papers)
    exam = create_exam(live_api, auth("A"), plan, "cascade")
    loopback_call(loopback, "/_loopback/reset", {})
    first, second = plan["papers"]["S01"]
    pages = [first, scribbled(second, 240, tmp_path)]  # question 4's answer made unreadable
    submitted = submit(live_api, auth("A"), exam["id"], "S01", pages)
    paper = wait_for(live_api, auth("A"), submitted["id"], timeout=OCR_TIMEOUT)

    seen = loopback_call(loopback, "/_loopback/requests")
    assert len(seen) == 1
    assert seen[0]["questions"] == ["4"]  # only the question the reader could not read
    asked = next(q for q in plan["exam"]["answer_key"]["questions"] if q["id"] == "4")
    assert seen[0]["knowledge_points"] == sorted(asked["knowledge_points"])  # not the exam's whole list
    [crop] = seen[0]["images"]  # one image of the crops, not the two pages
    assert crop[0] * crop[1] < 0.25 * samples.A4_150_DPI[0] * samples.A4_150_DPI[1]
    # within the low-detail square: sent at low detail, every pixel for 85 tokens instead of 255 or more
    assert max(crop) <= 512 and seen[0]["details"] == ["low"]
    by_id = {q["question_id"]: q for q in paper["questions"]}
    assert by_id["4"]["marked_by"] == "vision"
    assert {q["marked_by"] for qid, q in by_id.items() if qid != "4"} == {"local"}
    assert all(by_id[qid]["is_correct"] for qid in ("1", "2", "3", "5", "6"))  # S01 got them right
    assert paper["usage"]["calls"] == 1 and paper["usage"]["prompt_tokens"] == seen[0]["prompt_tokens"]


@pytest.mark.integration
def test_a_cascade_trial_reads_the_held_papers_offline_and_prices_their_calls_before_release(
    live_api, auth, idle, loopback, app, sample_papers, tmp_path
):
    plan = math_plan(sample_papers)
    exam = create_exam(live_api, auth("A"), plan, "cascade", trial_papers=1)
    loopback_call(loopback, "/_loopback/reset", {})
    students = ("S01", "S02", "S03")
    ids = []
    for student in students:  # each with question 4 made unreadable: one call each, asking it alone
        first, second = plan["papers"][student]
        unread = scribbled(second, 240, tmp_path)
        with Image.open(unread) as image:  # a speck in the margin: pages no other test sent (none reused)
            ImageDraw.Draw(image).point((secrets.randbelow(40) + 5, secrets.randbelow(40) + 5), fill=(90, 90, 90))
            image.save(unread, "JPEG", quality=90)
        ids.append(submit(live_api, auth("A"), exam["id"], student, [first, unread])["id"])
    wait_for(live_api, auth("A"), ids[0], timeout=OCR_TIMEOUT)

    def held() -> list[dict]:
        views = [httpx.get(f"{live_api}/v1/papers/{pid}", headers=auth("A")).json() for pid in ids[1:]]
        return views if all(v["status"] == "paused" for v in views) else []

    # past the trial, each paper is read offline (free) and waits: no call before the release
    views = wait_until(held, timeout=2 * OCR_TIMEOUT)
    assert all("wait for the exam's release" in view["status_reason"] for view in views)
    assert len(loopback_call(loopback, "/_loopback/requests")) == 1
    with app.extensions["markq"].sessions() as session:
        readings = [session.get(Paper, uuid.UUID(pid)).local_reading for pid in ids[1:]]
    assert [reading["unsure"] for reading in readings] == [["4"], ["4"]]
    cost = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=auth("A")).json()["cost"]
    assert (cost["papers_finished"], cost["papers_read_offline"]) == (1, 2)
    estimated = cost["estimated_usd"]

    assert httpx.post(f"{live_api}/v1/exams/{exam['id']}/release", headers=auth("A")).status_code == 200
    papers = [wait_for(live_api, auth("A"), pid, timeout=OCR_TIMEOUT) for pid in ids[1:]]
    assert [p["usage"]["calls"] for p in papers] == [1, 1]  # read once: the call asks question 4 alone
    assert [r["questions"] for r in loopback_call(loopback, "/_loopback/requests")] == [["4"]] * 3
    actual = httpx.get(f"{live_api}/v1/exams/{exam['id']}", headers=auth("A")).json()["cost"]["actual_usd"]
    # counted from the readings, the held papers' calls were priced before they were made
    assert estimated == pytest.approx(actual, rel=0.05)


@pytest.mark.integration
def test_a_cascade_paper_the_reader_is_sure_of_makes_no_call(live_api, auth, idle, loopback, sample_papers):
    plan = english_plan(sample_papers)
    exam = create_exam(live_api, auth("A"), plan, "cascade")
    loopback_call(loopback, "/_loopback/reset", {})
    submitted = submit(live_api, auth("A"), exam["id"], "E01", plan["papers"]["E01"])
    paper = wait_for(live_api, auth("A"), submitted["id"], timeout=OCR_TIMEOUT)
    assert loopback_call(loopback, "/_loopback/requests") == []
    assert paper["status"] == "graded"
    assert [q["is_correct"] for q in paper["questions"]] == [True, True, False, True]  # wrote "childs"


@pytest.mark.integration
def test_a_failed_cascade_call_is_retried_for_the_same_unsure_questions(
    live_api, auth, idle, loopback, app, sample_papers, tmp_path
):
    plan = math_plan(sample_papers)
    exam = create_exam(live_api, auth("A"), plan, "cascade")
    loopback_call(loopback, "/_loopback/reset", {})
    loopback_call(loopback, "/_loopback/faults", {"faults": [{"status": 503, "message": "overloaded"}]})
    first, second = plan["papers"]["S04"]
    submitted = submit(live_api, auth("A"), exam["id"], "S04", [first, scribbled(second, 240, tmp_path)])
    paper = wait_for(live_api, auth("A"), submitted["id"], timeout=OCR_TIMEOUT)

    assert loopback_call(loopback, "/_loopback/stats")["faults"] == 1  # the first call: 503
    seen = loopback_call(loopback, "/_loopback/requests")  # the retry, asking the same question
    assert [r["questions"] for r in seen] == [["4"]]
    assert paper["status"] in {"graded", "needs_review"} and paper["usage"]["calls"] == 2
    assert {q["question_id"]: q["marked_by"] for q in paper["questions"]}["4"] == "vision"
    with app.extensions["markq"].sessions() as session:
        stored = session.get(Paper, uuid.UUID(submitted["id"])).local_reading
    assert stored["engine"].startswith("rapidocr") and set(stored["questions"]) == {"1", "2", "3", "4", "5", "6"}


@pytest.mark.integration
def test_offline_reading_waits_on_its_own_queue_and_never_holds_up_provider_calls(
    live_api, auth, idle, app, settings, sample_papers
):
    import redis

    celery = app.extensions["celery"]
    broker = redis.Redis.from_url(settings.redis_url)
    celery.control.cancel_consumer(settings.ocr_queue_name, destination=[idle], reply=True)
    try:
        plan = math_plan(sample_papers)
        offline = create_exam(live_api, auth("A"), plan, "local")
        waiting = submit(live_api, auth("A"), offline["id"], "S01", plan["papers"]["S01"])

        def on_ocr_queue() -> int:
            return sum(broker.llen(key) for key in queue_keys(settings.ocr_queue_name))

        wait_until(lambda: on_ocr_queue() >= 1, timeout=30, what="a message on the OCR queue")
        assert on_ocr_queue() == 1  # normalised? no: routed to the OCR queue

        vision = httpx.post(f"{live_api}/v1/exams", headers=auth("A"), json=exam_body()).json()
        reply = httpx.post(
            f"{live_api}/v1/exams/{vision['id']}/papers",
            headers=auth("A"),
            data={"student_ref": "v1"},
            files=[("pages", ("p.jpg", page_bytes(), "image/jpeg"))],
        )
        graded = wait_for(live_api, auth("A"), reply.json()["id"])
        assert graded["status"] in {"graded", "needs_review"}  # the provider call went ahead
        still = httpx.get(f"{live_api}/v1/papers/{waiting['id']}", headers=auth("A")).json()
        assert still["status"] == "queued"
    finally:
        celery.control.add_consumer(settings.ocr_queue_name, destination=[idle], reply=True)
    assert wait_for(live_api, auth("A"), waiting["id"], timeout=OCR_TIMEOUT)["status"] == "graded"


def test_a_section_heading_between_questions_is_not_read_as_an_answer():
    key = AnswerKey.model_validate(
        {
            "questions": [
                {"id": "1", "prompt": "7 × 8 =", "answer": "56", "points": 2},
                {"id": "2", "prompt": "2 千克 = ____ 克", "answer": "2000", "points": 2},
            ]
        }
    )
    page, draw = new_page()
    printed, hand = samples._font(samples.PRINT_FONTS, 34), samples._font(samples.HAND_ZH_FONTS, 46)
    draw.text((90, 240), "1. 7 × 8 =", font=printed, fill=(15, 15, 15))
    draw.text((150, 300), "56", font=hand, fill=(25, 45, 150))
    draw.text((90, 420), "二、填空题（每空2分）", font=printed, fill=(15, 15, 15))
    draw.text((90, 520), "2. 2 千克 = ____ 克", font=printed, fill=(15, 15, 15))
    draw.text((150, 580), "2000", font=hand, fill=(25, 45, 150))
    readings = read_paper([jpeg(page)], key)
    assert (readings["1"].text, readings["2"].text) == ("56", "2000")
    assert readings["1"].confidence >= 0.9 and readings["1"].region[3] <= 425  # the area ends at the heading


def test_a_rubric_the_offline_reader_cannot_apply_is_a_warning_on_the_exam(client, auth):
    body = {
        "title": "t",
        "subject": "math",
        "grade": 3,
        "provider": "local",
        "rubric": "Deduct 1 point for a missing unit.",
        "answer_key": {"questions": [{"id": "1", "answer": "24厘米", "points": 3}]},
    }
    created = client.post("/v1/exams", headers=auth("A"), json=body)
    assert created.status_code == 201, created.json
    assert len(created.json["warnings"]) == 1 and "cannot apply the rubric" in created.json["warnings"][0]
    shown = client.get(f"/v1/exams/{created.json['id']}", headers=auth("A")).json
    assert shown["warnings"] == created.json["warnings"]
    plain = client.post("/v1/exams", headers=auth("A"), json={**body, "rubric": ""})
    assert plain.json["warnings"] == []


def test_a_paper_read_as_its_exam_is_released_goes_on_and_the_sweep_takes_back_one_held_too_late(
    live_api, auth, app, sample_papers
):
    from datetime import UTC, datetime

    from shared.db import transaction
    from shared.grading import papers
    from shared.models import Exam, PaperStatus, PauseCause

    exam_id = uuid.UUID(create_exam(live_api, auth("A"), math_plan(sample_papers), "cascade", trial_papers=1)["id"])
    sessions = app.extensions["markq"].sessions
    with transaction(sessions) as session:
        exam = session.get_one(Exam, exam_id)
        held = [
            Paper(
                school_id=exam.school_id,
                exam_id=exam.id,
                student_ref=f"h{n}",
                status=PaperStatus.processing,
                paused_for=PauseCause.trial,
            )
            for n in range(2)
        ]
        session.add_all(held)
        session.flush()
        first, second = (paper.id for paper in held)
    with transaction(sessions) as session:  # read before the release: it waits
        assert papers.hold(session, first, reason="held") is True
    with transaction(sessions) as session:
        session.get_one(Exam, exam_id).trial_released = True
    with transaction(sessions) as session:  # read after it: not held (the reader releases it instead)
        assert papers.hold(session, second, reason="held") is False
        assert session.get_one(Paper, second).status == PaperStatus.processing
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    with transaction(sessions) as session:  # the first, held as the release committed
        taken = papers.sweep(session, queued_before=long_ago, lease_expired_before=long_ago)
    assert first in taken and second not in taken
    with transaction(sessions) as session:
        back = session.get_one(Paper, first)
        assert (back.status, back.paused_for) == (PaperStatus.queued, None)
        for paper_id in (first, second):  # rows without pages: never left in flight for other tests
            session.delete(session.get_one(Paper, paper_id))


def test_an_answer_read_in_its_line_and_alike_three_ways_more_in_its_place_is_sure():
    key = AnswerKey.model_validate(
        {
            "questions": [
                {"id": "1", "prompt": "3 千克 = ____ 克", "answer": "3000", "points": 2},
                {"id": "2", "prompt": "比 12 多 8 的数是 ____ 。", "answer": "20", "points": 2},
            ]
        }
    )
    page, draw = new_page()
    printed, hand = samples._font(samples.PRINT_FONTS, 34), samples._font(samples.HAND_ZH_FONTS, 40)
    draw.text((90, 240), "1. 3 千克 =", font=printed, fill=(15, 15, 15))
    draw.text((300, 236), "3000", font=hand, fill=(25, 45, 150))  # written on the blank, in the line
    draw.text((420, 240), "克", font=printed, fill=(15, 15, 15))
    draw.text((90, 400), "2. 比 12 多 8 的数是", font=printed, fill=(15, 15, 15))
    draw.text((420, 396), "24", font=hand, fill=(25, 45, 150))
    draw.text((500, 400), "。", font=printed, fill=(15, 15, 15))
    readings = read_paper([jpeg(page)], key)
    for qid, written in (("1", "3000"), ("2", "24")):
        reading = readings[qid]
        assert reading.text == written and "read four times alike" in reading.note, reading
        assert reading.confidence >= 0.92 and reading.agreeing == 4
    # four readings alike make a wrong answer far from the key a sure mistake
    mark = mark_reading(readings["2"], key.questions[1], "math", "zh")
    assert not mark.is_correct and mark.confidence >= 0.9
