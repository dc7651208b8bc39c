import json

import jsonschema
import pytest

from shared.grading.answer_key import AnswerKey
from shared.grading.marks import InvalidMarks, marks_schema, parse_marks
from tests.helpers import MATH_KEY

VOCAB = ["math.g3.fractions-intro", "math.g3.multi-digit-multiplication", "math.g3.perimeter"]


def mark(**overrides):
    return {
        "student_answer": "56",
        "is_correct": True,
        "score": 2,
        "knowledge_points": [VOCAB[1]],
        "error_type": "none",
        "explanation": "",
        "correction": "",
        "confidence": 0.9,
        **overrides,
    }


def reply(**per_question):
    return json.dumps({"questions": {q["id"]: per_question.get(q["id"], mark()) for q in MATH_KEY["questions"]}})


def test_schema_is_strict_with_every_question_required_and_points_as_an_enum():
    schema = marks_schema(AnswerKey.model_validate(MATH_KEY), VOCAB)
    questions = schema["properties"]["questions"]
    assert questions["required"] == ["1", "2", "3", "4"]
    assert questions["additionalProperties"] is False
    assert questions["properties"]["1"] == {"$ref": "#/$defs/question_mark"}
    mark_schema = schema["$defs"]["question_mark"]
    assert mark_schema["properties"]["knowledge_points"]["items"] == {"$ref": "#/$defs/knowledge_point"}
    assert schema["$defs"]["knowledge_point"]["enum"] == VOCAB
    assert set(mark_schema["required"]) == set(mark_schema["properties"])
    assert mark_schema["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(schema)


def test_a_valid_reply_parses_in_answer_key_order():
    marks = parse_marks(reply(), AnswerKey.model_validate(MATH_KEY), set(VOCAB))
    assert list(marks) == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    "bad",
    [
        json.dumps({"questions": {"1": mark()}}),
        reply(**{"2": mark(knowledge_points=["math.g9.made-up"])}),
        reply(**{"1": mark(score=-1)}),
        "not json",
    ],
)
def test_replies_that_do_not_fit_the_exam_are_refused(bad):
    with pytest.raises(InvalidMarks):
        parse_marks(bad, AnswerKey.model_validate(MATH_KEY), set(VOCAB))


def test_answer_key_question_ids_must_be_unique():
    with pytest.raises(ValueError, match="repeat"):
        AnswerKey.model_validate({"questions": [{"id": "1", "answer": "a", "points": 1}] * 2})


def test_the_schema_does_not_grow_with_each_question_beyond_a_reference():
    small = AnswerKey.model_validate(MATH_KEY)
    large = AnswerKey.model_validate({"questions": [{"id": str(n), "answer": "1", "points": 1} for n in range(1, 41)]})
    grow = len(json.dumps(marks_schema(large, VOCAB))) - len(json.dumps(marks_schema(small, VOCAB)))
    assert grow / 36 < 60  # characters per extra question: one "$ref" and the id


def test_a_score_above_the_points_is_sent_to_review():
    from shared.grading.marks import QuestionMark
    from shared.grading.review import review_reason

    assert "5 of 2" in review_reason(QuestionMark.model_validate(mark(score=5)), 2, None, "56")
    assert review_reason(QuestionMark.model_validate(mark(score=2)), 2, None, "56") is None


def test_the_check_disagreeing_with_the_model_sends_the_question_to_review():
    from shared.grading.marks import QuestionMark
    from shared.grading.review import review_reason

    wrong = QuestionMark.model_validate(mark(student_answer="3/4", is_correct=False, score=0, error_type="concept"))
    assert "equivalent" in review_reason(wrong, 2, True, "0.75")
    assert review_reason(wrong, 2, False, "0.75") is None
