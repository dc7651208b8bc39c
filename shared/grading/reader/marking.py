"""Marking: the verdict on each reading against the answer key, with a confidence per answer.

Mathematics is compared through the equivalence check (numbers, fractions, units, remainders),
other subjects by normalised text; knowledge points come from the answer key. A misreading that
lands exactly on the key is far less likely than one that misses it, so a right answer is trusted
more than the reading, and a wrong one less when it is a character or two from the key and was
read unsurely, or is not even a value where the key is one. Without an answer in the key nothing
can be marked.

Where the confidence is below the exam's threshold the answer goes to a teacher (provider `local`)
or to the vision model (provider `cascade`).
"""

from __future__ import annotations

import re
import unicodedata

from shared.grading.answer_key import KeyQuestion
from shared.grading.equivalence import equivalent, parse_value
from shared.grading.marks import QuestionMark
from shared.grading.reader.layout import normalise_text
from shared.grading.reader.reading import AnswerReading


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _text_equal(answer: str, question: KeyQuestion) -> bool:
    said = normalise_text(answer)
    return any(said == normalise_text(form) for form in (question.answer or "", *question.accepted))


def _unit_error(answer: str, key: str) -> bool:
    """The right number with a missing, extra or wrong unit."""
    said, wanted = parse_value(answer), parse_value(key)
    if said is None or wanted is None or said.remainder is not None:
        return False
    digits = lambda text: re.sub(r"[^0-9./]", "", unicodedata.normalize("NFKC", text))  # noqa: E731
    return said.dimension != wanted.dimension and digits(answer) == digits(key)


def _not_like_the_key(answer: str, key: str) -> bool:
    """The key is a number (or quantity) and the reading is not one: letters where digits belong
    ("5b" for 56) are far more often a misreading than what a pupil wrote."""
    wanted, said = parse_value(key), parse_value(answer)
    if wanted is None:
        return False
    return said is None or bool(said.amount.free_symbols and not wanted.amount.free_symbols)


def mark_reading(reading: AnswerReading, question: KeyQuestion, subject: str, language: str) -> QuestionMark:
    """The verdict on one reading, with the confidence the verdict deserves."""
    zh = language == "zh"
    points = list(question.knowledge_points)
    if question.answer is None:
        return QuestionMark(
            student_answer=reading.text,
            is_correct=False,
            score=0,
            knowledge_points=points,
            error_type="illegible",
            confidence=0.0,
            correction="",
            explanation="答案表没有给出这道题的答案，离线批改无法判分。"
            if zh
            else "The answer key gives no answer for this question, so offline marking cannot mark it.",
        )
    key = question.answer
    if reading.state in ("illegible", "not_found"):
        return QuestionMark(
            student_answer=reading.text,
            is_correct=False,
            score=0,
            knowledge_points=points,
            error_type="illegible",
            confidence=0.0,
            correction=f"答案：{key}" if zh else f"Answer: {key}",
            explanation=(
                "离线识别读不出这道题的答案，需要老师查看。"
                if zh
                else "The offline reader could not read this answer; a teacher must look at it."
            ),
        )
    if reading.state == "blank":
        return QuestionMark(
            student_answer="",
            is_correct=False,
            score=0,
            knowledge_points=points,
            error_type="blank",
            confidence=reading.confidence,
            correction=f"答案：{key}" if zh else f"Answer: {key}",
            explanation="没有作答。" if zh else "No answer was given.",
        )
    check = equivalent(reading.text, key, tuple(question.accepted)) if subject == "math" else None
    correct = check if check is not None else _text_equal(reading.text, question)
    if correct:
        # A misreading that lands exactly on the key is far less likely than one that misses it.
        return QuestionMark(
            student_answer=reading.text,
            is_correct=True,
            score=question.points,
            knowledge_points=points,
            error_type="none",
            explanation="",
            correction="",
            confidence=round(0.5 + 0.5 * reading.confidence, 4),
        )
    confidence = reading.confidence
    said = normalise_text(reading.text)
    near = any(
        _edit_distance(said, normalise_text(form)) <= max(1, len(normalise_text(form)) // 5)
        for form in (key, *question.accepted)
    )
    if near and reading.confidence < 0.98:
        confidence *= 0.8  # a character or two from the key, read unsurely: perhaps a misreading
    if subject == "math" and _not_like_the_key(reading.text, key):
        confidence *= 0.6  # the key is a value and the reading is not: probably misread
    unit = subject == "math" and _unit_error(reading.text, key)
    error_type = "unit" if unit else "calculation" if subject == "math" else "concept"
    if zh:
        explanation = (
            f"单位不对：你写的是 {reading.text}，应为 {key}。"
            if unit
            else f"你的答案是 {reading.text}，正确答案是 {key}。"
        )
    else:
        explanation = (
            f"Wrong unit: you wrote {reading.text}; the answer is {key}."
            if unit
            else f"You wrote {reading.text}; the answer is {key}."
        )
    return QuestionMark(
        student_answer=reading.text,
        is_correct=False,
        score=0,
        knowledge_points=points,
        error_type=error_type,
        explanation=explanation,
        correction=f"正确答案：{key}" if zh else f"Correct answer: {key}",
        confidence=round(confidence, 4),
    )
