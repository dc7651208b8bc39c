"""Practice written by the model, where the installation has a key: one text-only call per
knowledge point, grade and language, reserved against the caps and kept in the ledger like every
call (reply first), then cached and served to every student who needs that point.

The answers the model gives to plain arithmetic are checked as the template answers are (the
equivalence check against sympy's value of the printed sum); a question whose answer fails is
dropped. Word problems are kept as written.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import sympy
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared.db import transaction
from shared.grading.equivalence import equivalent
from shared.grading.lane_live import store_reply_first
from shared.models import Exam, KnowledgePoint, PracticeSet, Usage, UsageOutcome
from shared.provider import ProviderError, ProviderTimedOut, QuotaExhausted, RateLimited
from shared.resources import Resources
from shared.spending import ledger
from shared.spending.costs import UnknownModel, call_cost, text_tokens

QUESTIONS = 5
MAX_OUTPUT = 900
SCHEMA = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "minItems": QUESTIONS,
            "maxItems": QUESTIONS,
            "items": {
                "type": "object",
                "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
                "required": ["question", "answer"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["questions"],
    "additionalProperties": False,
}


def practice_request(model: str, point: KnowledgePoint, grade: int, language: str) -> dict[str, Any]:
    name = point.name_in(language)
    ask = (
        f"为{grade}年级学生出{QUESTIONS}道练习题，知识点：{point.name_zh}（{point.name_en}）。"
        "题目要新，难度适合该年级，每题给出简短的标准答案（只写结果，带单位的写单位）。用中文。"
        if language == "zh"
        else (
            f"Write {QUESTIONS} new practice questions for grade {grade} on: {point.name_en} ({point.name_zh}). "
            "Suitable difficulty; give each a short answer (the result only, with its unit). In English."
        )
    )
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "You write short practice questions for a primary or middle school."},
            {"role": "user", "content": f"{ask}\n[{point.id}: {name}]"},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "practice", "strict": True, "schema": SCHEMA},
        },
        "max_completion_tokens": MAX_OUTPUT,
    }


def _cost(request: dict[str, Any]) -> ledger.CallCost:
    prompt = text_tokens(json.dumps(SCHEMA, sort_keys=True, separators=(",", ":"))) + sum(
        4 + text_tokens(m["content"]) for m in request["messages"]
    )
    try:
        expected = call_cost(request["model"], prompt, 0, MAX_OUTPUT // 2)
        worst = call_cost(request["model"], int(prompt * 1.2), 0, MAX_OUTPUT)
    except UnknownModel:
        expected = worst = Decimal(0)
    return ledger.CallCost(prompt, MAX_OUTPUT // 2, expected, worst)


def _arithmetic_ok(question: str, answer: str) -> bool:
    """A plain sum's answer against sympy's value of it; anything else (a word problem) passes."""
    left = question.split("=")[0].replace("×", "*").replace("÷", "/").replace("−", "-")
    try:
        value = sympy.sympify(left, rational=True)
    except (sympy.SympifyError, SyntaxError, TypeError, ValueError):
        return True
    if not getattr(value, "is_number", False):
        return True
    return equivalent(answer, str(sympy.nsimplify(value))) is not False


def parse_questions(content: str) -> list[dict[str, str]]:
    """The reply's questions, checked; raises ValueError for a reply that is not the schema."""
    items = json.loads(content)["questions"]
    if not isinstance(items, list):
        raise ValueError("questions is not a list")
    kept = []
    for item in items:
        question, answer = str(item["question"]).strip(), str(item["answer"]).strip()
        if question and answer and _arithmetic_ok(question, answer):
            kept.append({"question": question, "answer": answer})
    return kept


def cached(res: Resources, point_id: str, grade: int, language: str) -> list[dict[str, str]] | None:
    with res.sessions() as session:
        row = session.scalar(
            select(PracticeSet).where(
                PracticeSet.knowledge_point_id == point_id, PracticeSet.grade == grade, PracticeSet.language == language
            )
        )
        return list(row.questions) if row is not None else None


def model_practice(res: Resources, exam: Exam, point_id: str, language: str) -> list[dict[str, str]]:
    """The point's practice set for the exam's grade: from the cache, or one paid call (reserved
    against the exam's and the school's caps: raises caps.BudgetExceeded, or ProviderError)."""
    if (hit := cached(res, point_id, exam.grade, language)) is not None:
        return hit
    with res.sessions() as session:
        point = session.get_one(KnowledgePoint, point_id)
        request = practice_request(exam.model, point, exam.grade, language)
    with transaction(res.sessions) as session:
        usage_id = ledger.reserve(
            session, exam_id=exam.id, school_id=exam.school_id, paper_id=None, model=exam.model, cost=_cost(request)
        ).id
    try:
        reply = res.provider.complete(request)
    except ProviderTimedOut as exc:
        with transaction(res.sessions) as session:
            ledger.settle_unknown(session, usage_id, exc.request_id)
        raise
    except ProviderError as exc:
        outcome = (
            UsageOutcome.rate_limited
            if isinstance(exc, RateLimited)
            else UsageOutcome.insufficient_quota
            if isinstance(exc, QuotaExhausted)
            else UsageOutcome.unavailable
        )
        with transaction(res.sessions) as session:
            ledger.settle_unpaid(session, usage_id, outcome, exc.request_id)
        raise
    store_reply_first(res, usage_id, reply)  # paid: kept before anything else can fail
    try:
        questions = parse_questions(reply.content)
    except (ValueError, KeyError, TypeError):
        questions = []
    with transaction(res.sessions) as session:
        ledger.mark_recorded(
            session.get_one(Usage, usage_id), UsageOutcome.ok if questions else UsageOutcome.invalid_reply
        )
    if not questions:
        return []
    try:
        with transaction(res.sessions) as session:
            session.add(
                PracticeSet(
                    knowledge_point_id=point_id,
                    grade=exam.grade,
                    language=language,
                    questions=questions,
                    model=reply.model,
                    usage_id=usage_id,
                )
            )
    except IntegrityError:  # another request wrote the same set meanwhile: serve that one
        return cached(res, point_id, exam.grade, language) or questions
    return questions
