"""An exam's answer key: the questions, their answers, points and knowledge points."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class KeyQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,50}$", description="Question number as printed, e.g. '3' or '2b'.")
    prompt: str = Field("", max_length=2000, description="The question text, if the teacher gives it.")
    answer: str | None = Field(
        None, max_length=2000, description="None: the model solves the question itself (lower confidence)."
    )
    points: float = Field(gt=0, le=1000)
    knowledge_points: list[str] = Field(default_factory=list, max_length=10)
    accepted: list[str] = Field(default_factory=list, max_length=20, description="Equivalent forms also accepted.")
    notes: str = Field("", max_length=2000, description="Partial-credit notes.")


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
