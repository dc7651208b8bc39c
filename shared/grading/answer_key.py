"""An exam's answer key: the questions, their types, answers, points and knowledge points.

The format is documented in docs/answer-keys.md, with its JSON Schema (docs/answer-key.schema.json,
generated from these models and checked by a test) and an example exam (shared/data/exam-example.json, written out by `markq exams example`).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CHOICE_LETTERS = "ABCDEFGH"


class QuestionType(enum.StrEnum):
    """How a question's answer is written and compared."""

    number = "number"  # a value: numbers, fractions, percentages, units, remainders (5……3)
    text = "text"  # words, compared as normalised text
    choice = "choice"  # one or more option letters, written in the brackets （ ）
    blanks = "blanks"  # several blanks in one question, each with its own answer and points
    expression = "expression"  # an algebraic expression, compared by its value (sympy)
    word = "word"  # a word problem: the final answer after 答：, units compared; the working is kept


class Blank(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(min_length=1, max_length=500)
    points: float = Field(gt=0, le=1000)
    accepted: list[str] = Field(default_factory=list, max_length=20)


class KeyQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,50}$", description="Question number as printed, e.g. '3' or '2b'.")
    type: QuestionType | None = Field(
        None, description="How the answer is written; unset: a value for mathematics, text otherwise."
    )
    section: str = Field("", max_length=200, description="The section it is printed under, e.g. '二、填空题'.")
    prompt: str = Field("", max_length=2000, description="The question text, if the teacher gives it.")
    answer: str | None = Field(
        None,
        max_length=2000,
        description="None: the model solves the question itself (lower confidence). For a choice question "
        "the right letter or letters ('B', 'AC'); for blanks it is filled in from the blanks.",
    )
    options: dict[str, str] = Field(
        default_factory=dict, description="A choice question's options by letter: {'A': '41', 'B': '4000'}."
    )
    blanks: list[Blank] = Field(
        default_factory=list, max_length=20, description="A blanks question's blanks, in the order printed."
    )
    # Required, except for a blanks question, whose points default to its blanks' sum (checked below).
    points: float = Field(  # type: ignore[assignment]
        None,
        gt=0,
        le=1000,
        description="The question's points; for blanks, the sum of the blanks' (may be left out).",
        json_schema_extra=lambda schema: schema.pop("default", None),  # no default: required but for blanks
    )
    knowledge_points: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Knowledge points, each by its id, Chinese or English name or an alias "
        "(GET /v1/knowledge-points); resolved to ids when the exam is created.",
    )
    accepted: list[str] = Field(default_factory=list, max_length=20, description="Equivalent forms also accepted.")
    notes: str = Field("", max_length=2000, description="Partial-credit notes.")

    @model_validator(mode="before")
    @classmethod
    def _blank_points(cls, data: Any) -> Any:
        """A blanks question's points default to the sum of its blanks' points."""
        if isinstance(data, dict) and data.get("type") == QuestionType.blanks and "points" not in data:
            blanks = data.get("blanks") or []
            if all(isinstance(b, dict) and isinstance(b.get("points"), int | float) for b in blanks):
                data = {**data, "points": sum(b["points"] for b in blanks) or None}
        return data

    @model_validator(mode="after")
    def _fits_its_type(self) -> KeyQuestion:
        if self.points is None:
            raise ValueError("every question needs its points")
        if self.options and self.type != QuestionType.choice:
            raise ValueError("options belong to a choice question (type 'choice')")
        if self.blanks and self.type != QuestionType.blanks:
            raise ValueError("blanks belong to a blanks question (type 'blanks')")
        if self.type == QuestionType.choice:
            self._check_choice()
        if self.type == QuestionType.blanks:
            self._check_blanks()
        return self

    def _check_choice(self) -> None:
        unknown = [letter for letter in self.options if letter not in CHOICE_LETTERS]
        if unknown:
            raise ValueError(f"option letters are A to H; not {', '.join(unknown)}")
        if self.answer is None:
            return
        letters = choice_letters(self.answer)
        if not letters or len(letters) != len(re.sub(r"[\s,，、]", "", self.answer)):
            raise ValueError(f"a choice answer is one or more option letters, not {self.answer!r}")
        if self.options and (missing := [letter for letter in letters if letter not in self.options]):
            raise ValueError(f"the answer names option(s) {', '.join(missing)}, which the options do not have")
        self.answer = letters

    def _check_blanks(self) -> None:
        if not self.blanks:
            raise ValueError("a blanks question lists its blanks, each with its answer and points")
        total = sum(blank.points for blank in self.blanks)
        if abs(total - self.points) > 1e-9:
            raise ValueError(f"the question's points ({self.points:g}) are not the sum of its blanks' ({total:g})")
        if self.answer is None:
            self.answer = "；".join(blank.answer for blank in self.blanks)


def choice_letters(text: str) -> str:
    """The option letters in what was written or keyed, in order, once each: '（b）' -> 'B'."""
    letters = [ch for ch in unicodedata.normalize("NFKC", text).upper() if ch in CHOICE_LETTERS]
    return "".join(sorted(set(letters)))


class AnswerKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    questions: list[KeyQuestion] = Field(min_length=1, max_length=200)

    @field_validator("questions")
    @classmethod
    def _unique_ids(cls, questions: list[KeyQuestion]) -> list[KeyQuestion]:
        ids = [q.id for q in questions]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"question ids repeat: {', '.join(duplicates)}")
        return questions

    @property
    def max_score(self) -> float:
        return sum(q.points for q in self.questions)

    def knowledge_point_ids(self) -> set[str]:
        return {kp for q in self.questions for kp in q.knowledge_points}
