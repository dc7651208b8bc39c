import json

import jsonschema
import pytest

from shared.grading.answer_key import AnswerKey
from shared.grading.marks import InvalidMarks, marks_schema, parse_marks
from tests.conftest import MATH_KEY

VOCAB = ["math.g3.fractions-intro", "math.g3.multi-digit-multiplication", "math.g3.perimeter"]


def mark(**overrides):
    return {"student_answer": "56", "is_correct": True, "score": 2, "knowledge_points": [VOCAB[1]],
            "error_type": "none", "explanation": "", "correction": "", "confidence": 0.9, **overrides}


def reply(**per_question):
    return json.dumps({"questions": {q["id"]: per_question.get(q["id"], mark()) for q in MATH_KEY["questions"]}})


def test_schema_is_strict_with_every_question_required_and_points_as_an_enum():
    schema = marks_schema(AnswerKey.model_validate(MATH_KEY), VOCAB)
    questions = schema["properties"]["questions"]
    assert questions["required"] == ["1", "2", "3", "4"]
    assert questions["additionalProperties"] is False
    q1 = questions["properties"]["1"]
    assert q1["properties"]["knowledge_points"]["items"] == {"$ref": "#/$defs/knowledge_point"}
    assert schema["$defs"]["knowledge_point"]["enum"] == VOCAB
    assert set(q1["required"]) == set(q1["properties"])
    jsonschema.Draft202012Validator.check_schema(schema)


def test_a_valid_reply_parses_in_answer_key_order():
    marks = parse_marks(reply(), AnswerKey.model_validate(MATH_KEY), set(VOCAB))
    assert list(marks) == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    "bad",
    [
        json.dumps({"questions": {"1": mark()}}),
        reply(**{"2": mark(knowledge_points=["math.g9.made-up"])}),
        reply(**{"1": mark(score=5)}),
        "not json",
    ],
)
def test_replies_that_do_not_fit_the_exam_are_refused(bad):
    with pytest.raises(InvalidMarks):
        parse_marks(bad, AnswerKey.model_validate(MATH_KEY), set(VOCAB))


def test_answer_key_question_ids_must_be_unique():
    with pytest.raises(ValueError, match="repeat"):
        AnswerKey.model_validate({"questions": [{"id": "1", "answer": "a", "points": 1}] * 2})
