"""Typed answer keys: choice, blanks, word problems, and what the offline marker makes of each."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pydantic
import pytest

from shared.grading.answer_key import AnswerKey, KeyQuestion
from shared.grading.reader.marking import final_answer, mark_reading
from shared.grading.reader.reading import AnswerReading

DOCS = Path(__file__).resolve().parent.parent / "docs"


def question(**fields) -> KeyQuestion:
    fields.setdefault("points", 2)
    if fields["points"] is None:
        del fields["points"]  # a blanks question's points come from its blanks
    return AnswerKey.model_validate({"questions": [{"id": "1", **fields}]}).questions[0]


def reading(text: str, confidence: float = 0.97) -> AnswerReading:
    return AnswerReading(question_id="1", state="read", text=text, confidence=confidence)


def test_a_choice_question_is_marked_by_its_letter_however_it_is_written():
    q = question(type="choice", options={"A": "41", "B": "4000", "C": "4", "D": "40"}, answer="B")
    for written in ("B", "（B）", "b", "( B )"):
        mark = mark_reading(reading(written), q, "math", "zh")
        assert mark.is_correct and mark.score == 2, written
    wrong = mark_reading(reading("A"), q, "math", "zh")
    assert not wrong.is_correct and wrong.score == 0
    # the options line read instead of the letter is not the letter
    assert not mark_reading(reading("A.41 B.4000 C.4 D.40"), q, "math", "zh").is_correct


def test_two_blanks_are_marked_apart_with_their_own_points():
    q = question(type="blanks", points=None, blanks=[{"answer": "±13", "points": 1}, {"answer": "13", "points": 1}])
    assert q.points == 2 and q.answer == "±13；13"
    both = mark_reading(reading("±13，13"), q, "math", "zh")
    assert both.is_correct and both.score == 2
    one = mark_reading(reading("13，13"), q, "math", "zh")
    assert not one.is_correct and one.score == 1 and "第 1 空" in one.explanation
    # one string where two blanks were expected: a guess at the split, never confident
    run_together = mark_reading(reading("±1313"), q, "math", "zh")
    assert run_together.confidence < 0.6


def test_a_word_problem_is_marked_on_the_answer_after_its_answer_line():
    q = question(type="word", answer="26本", points=4)
    assert final_answer("48-22=26（本）\n答：26本。") == "26本"
    right = mark_reading(reading("答：26本"), q, "math", "zh")
    assert right.is_correct and right.score == 4
    assert mark_reading(reading("48-22=26\n答：26本"), q, "math", "zh").is_correct
    unit = mark_reading(reading("答：26"), q, "math", "zh")
    assert not unit.is_correct and unit.error_type == "unit"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "choice", "options": {"A": "1", "B": "2"}, "answer": "C"}, "do not have"),
        ({"type": "choice", "answer": "B2"}, "option letters"),
        ({"type": "blanks", "blanks": [{"answer": "1", "points": 1}], "points": 3}, "sum of its blanks"),
        ({"type": "blanks"}, "lists its blanks"),
        ({"options": {"A": "x"}, "answer": "A"}, "choice question"),
    ],
)
def test_a_key_that_does_not_fit_its_type_is_refused_with_the_reason(fields, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        AnswerKey.model_validate({"questions": [{"id": "1", "points": 2, **fields}]})


def test_the_shipped_schema_is_the_models_schema_and_the_example_exam_fits_it():
    shipped = json.loads((DOCS / "answer-key.schema.json").read_text())
    assert shipped == AnswerKey.model_json_schema(), "regenerate docs/answer-key.schema.json (docs/answer-keys.md)"
    example = json.loads((DOCS.parent / "shared" / "data" / "exam-example.json").read_text())
    jsonschema.validate(example["answer_key"], shipped)
    key = AnswerKey.model_validate(example["answer_key"])
    assert {q.type for q in key.questions} >= {"number", "choice", "blanks", "word", "expression", "text"}
