"""The reply the model must give: a strict JSON schema built from the exam, and its validation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.grading.answer_key import AnswerKey

ErrorType = Literal["none", "calculation", "concept", "misread_question", "unit", "incomplete", "blank", "illegible"]
ERROR_TYPES: tuple[str, ...] = ErrorType.__args__  # type: ignore[attr-defined]
SCHEMA_NAME = "paper_marks"


class QuestionMark(BaseModel):
    model_config = ConfigDict(extra="forbid")

    student_answer: str
    is_correct: bool
    score: float = Field(ge=0)
    knowledge_points: list[str]
    error_type: ErrorType
    explanation: str
    correction: str
    confidence: float = Field(ge=0, le=1)


class InvalidMarks(ValueError):
    """The model's reply does not fit the exam."""


def marks_schema(answer_key: AnswerKey, vocabulary: list[str]) -> dict[str, Any]:
    """A strict JSON schema with one required property per question, so none is skipped or
    invented, and knowledge points as an enum of the exam's vocabulary, so tags never drift.

    The question object and the enum are defined once under $defs and referenced: repeating them
    per question cost about 270 prompt tokens per question on every paper. A question's maximum
    score is in the answer key the model reads; a score above it is clamped and sent to review.
    The fields carry no descriptions: the instructions say each once (they cost about 55 prompt
    tokens on every call, the cascade's included).
    """
    question_mark = {
        "type": "object",
        "properties": {
            "student_answer": {"type": "string"},
            "is_correct": {"type": "boolean"},
            "score": {"type": "number", "minimum": 0},
            "knowledge_points": {"type": "array", "items": {"$ref": "#/$defs/knowledge_point"}},
            "error_type": {"type": "string", "enum": list(ERROR_TYPES)},
            "explanation": {"type": "string"},
            "correction": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": list(QuestionMark.model_fields),
        "additionalProperties": False,
    }
    ids = [q.id for q in answer_key.questions]
    return {
        "$defs": {
            "knowledge_point": {"type": "string", "enum": vocabulary},
            "question_mark": question_mark,
        },
        "type": "object",
        "properties": {
            "questions": {
                "type": "object",
                "properties": {qid: {"$ref": "#/$defs/question_mark"} for qid in ids},
                "required": ids,
                "additionalProperties": False,
            }
        },
        "required": ["questions"],
        "additionalProperties": False,
    }


def parse_marks(content: str, answer_key: AnswerKey, vocabulary: set[str]) -> dict[str, QuestionMark]:
    """Validate the model's JSON against the exam; raise InvalidMarks with the reason."""
    try:
        raw = _PaperMarks.model_validate_json(content)
    except ValidationError as exc:
        raise InvalidMarks(f"reply does not match the schema: {exc.errors()[0]['msg']}") from exc
    expected = [q.id for q in answer_key.questions]
    if set(raw.questions) != set(expected):
        raise InvalidMarks(f"reply covers questions {sorted(raw.questions)}, expected {expected}")
    for question in answer_key.questions:
        mark = raw.questions[question.id]
        stray = set(mark.knowledge_points) - vocabulary
        if stray:
            raise InvalidMarks(f"question {question.id}: unknown knowledge points {sorted(stray)}")
    return {qid: raw.questions[qid] for qid in expected}


class _PaperMarks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    questions: dict[str, QuestionMark]
