"""The ledger: one usage row per provider call, from its reservation to what it really cost.

Every lane (live, cascade, batch) goes through here:

1. `reserve` before the call: the worst case is held against the caps (shared.spending.caps).
2. After the call, exactly one of:
   - `store_reply`: the reply came back. Its body, tokens, request id and real cost are written
     first, in a short transaction of their own, before anything else touches the reply. The row
     is then `replied` until `mark_recorded` (its marks are in SQL): a task that fails in between
     finds it with `stored_reply` and records from it, without a second paid call.
   - `settle_unpaid`: no reply and nothing billed (429, refused, quota, 5xx, a batch not sent).
   - `settle_unknown`: the request was sent and no answer came (a timeout): the call may have been
     billed, so the row keeps its expected cost and says so.
3. `abandon_stale`: a reservation whose worker died keeps its worst case, so a cap still holds.

Outcomes are `UsageOutcome` values; ":batch" (through the Batch API, priced at its rate), ":flex"
(served at the Flex tier, priced at the batch rate) or ":unpriced" (a model with no price) may follow.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from shared.models import Usage, UsageOutcome
from shared.provider import ProviderReply
from shared.spending import caps
from shared.spending.costs import UnknownModel, call_cost

BATCH = ":batch"
FLEX = ":flex"
UNPRICED = ":unpriced"
STORED = tuple(UsageOutcome.replied + suffix for suffix in ("", BATCH, FLEX, UNPRICED))
NOT_CALLS = (UsageOutcome.reused, UsageOutcome.reserved, UsageOutcome.batch_not_sent)


@dataclass(frozen=True)
class CallCost:
    """What one call is expected to cost, and the most it can cost (reserved against the caps)."""

    prompt_tokens: int
    completion_tokens: int
    expected_cost: Decimal
    worst_case_cost: Decimal
    questions: int = 0  # asked about in the call (0: not a marking call)

    def at_batch_rate(self, discount: Decimal) -> CallCost:
        return replace(
            self, expected_cost=self.expected_cost * discount, worst_case_cost=self.worst_case_cost * discount
        )


def reserve(
    session: Session, *, exam_id: uuid.UUID, school_id: int, paper_id: uuid.UUID, model: str, cost: CallCost
) -> Usage:
    """Hold the call's worst case, or raise caps.BudgetExceeded. Call first in a fresh transaction."""
    caps.check(session, exam_id=exam_id, school_id=school_id, need=cost.worst_case_cost)
    usage = Usage(
        school_id=school_id,
        exam_id=exam_id,
        paper_id=paper_id,
        model=model,
        outcome=UsageOutcome.reserved,
        estimated_prompt_tokens=cost.prompt_tokens,
        estimated_completion_tokens=cost.completion_tokens,
        estimated_cost_usd=cost.expected_cost,
        cost_usd=cost.worst_case_cost,
        questions=cost.questions,
    )
    session.add(usage)
    session.flush()
    return usage


def reservation(session: Session, paper_id: uuid.UUID) -> Usage | None:
    """The paper's call in flight (a batch line waiting for its batch)."""
    return session.scalar(select(Usage).where(Usage.paper_id == paper_id, Usage.outcome == UsageOutcome.reserved))


def store_reply(session: Session, usage_id: int, reply: ProviderReply, *, batch: bool = False) -> None:
    """Keep the paid reply and what it really cost. The caller commits this on its own, first."""
    usage = session.get_one(Usage, usage_id)
    usage.request_id = reply.request_id
    usage.prompt_tokens = reply.prompt_tokens
    usage.cached_tokens = reply.cached_tokens
    usage.completion_tokens = reply.completion_tokens
    usage.reply_content = reply.content
    usage.reply_model = reply.model
    usage.seconds = reply.seconds
    flex = not batch and reply.service_tier == "flex"  # the provider's word for the tier it served
    usage.outcome = UsageOutcome.replied + (BATCH if batch else FLEX if flex else "")
    try:
        usage.cost_usd = call_cost(
            usage.model, reply.prompt_tokens, reply.cached_tokens, reply.completion_tokens, batch=batch or flex
        )
    except UnknownModel:
        usage.cost_usd = Decimal(0)
        usage.outcome = UsageOutcome.replied + UNPRICED


def stored_reply(session: Session, paper_id: uuid.UUID) -> Usage | None:
    """A reply paid for and stored, whose marks are not recorded yet."""
    return session.scalar(
        select(Usage).where(Usage.paper_id == paper_id, Usage.outcome.in_(STORED)).order_by(Usage.id.desc()).limit(1)
    )


def reply_of(usage: Usage) -> ProviderReply:
    return ProviderReply(
        content=usage.reply_content or "",
        model=usage.reply_model or usage.model,
        prompt_tokens=usage.prompt_tokens,
        cached_tokens=usage.cached_tokens,
        completion_tokens=usage.completion_tokens,
        request_id=usage.request_id,
    )


def mark_recorded(usage: Usage, outcome: UsageOutcome) -> None:
    """The stored reply became marks (ok) or could not (invalid_reply); the price stays."""
    usage.outcome = outcome + usage.outcome.removeprefix(UsageOutcome.replied)


def unusable_replies(session: Session, paper_id: uuid.UUID) -> int:
    """How many of the paper's paid replies could not be made into marks."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Usage)
            .where(Usage.paper_id == paper_id, Usage.outcome.startswith(UsageOutcome.invalid_reply.value))
        )
        or 0
    )


# The replies measured for an estimate: the school's latest marking calls.
MEASURED_CALLS = 200


def output_per_question(session: Session, *conditions: Any) -> float | None:
    """The reply tokens a question asked, over the latest marking calls recorded (None: none yet)."""
    latest = (
        select(Usage.completion_tokens, Usage.questions)
        .where(Usage.outcome.startswith(UsageOutcome.ok.value), Usage.questions > 0, *conditions)
        .order_by(Usage.id.desc())
        .limit(MEASURED_CALLS)
        .subquery()
    )
    completion, questions = session.execute(
        select(func.sum(latest.c.completion_tokens), func.sum(latest.c.questions))
    ).one()
    return float(completion) / float(questions) if questions else None


def flex_refusals(session: Session, paper_id: uuid.UUID) -> int:
    """How many times the Flex tier refused the paper's call for want of capacity."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Usage)
            .where(Usage.paper_id == paper_id, Usage.outcome == UsageOutcome.flex_unavailable)
        )
        or 0
    )


def settle_unpaid(session: Session, usage_id: int, outcome: UsageOutcome, request_id: str | None = None) -> None:
    """No reply came back and nothing was billed: the reservation is released."""
    usage = session.get_one(Usage, usage_id)
    usage.outcome = outcome
    usage.request_id = request_id
    usage.cost_usd = Decimal(0)


def settle_unknown(session: Session, usage_id: int, request_id: str | None = None) -> None:
    """The request was sent and no answer came: it may have been billed, so it keeps its expected
    cost (the caps count it) and says the real cost is unknown."""
    usage = session.get_one(Usage, usage_id)
    usage.outcome = UsageOutcome.unknown
    usage.request_id = request_id
    usage.cost_usd = usage.estimated_cost_usd


def record_reuse(session: Session, *, school_id: int, exam_id: uuid.UUID, paper_id: uuid.UUID, model: str) -> None:
    session.add(
        Usage(school_id=school_id, exam_id=exam_id, paper_id=paper_id, model=model, outcome=UsageOutcome.reused)
    )


def abandon_stale(session: Session, before: datetime) -> None:
    """A reservation whose worker died keeps its worst-case cost (the call may have been made and
    billed), so a cap still holds; it is only relabelled so it stops looking in flight."""
    session.execute(
        update(Usage)
        .where(Usage.outcome == UsageOutcome.reserved, Usage.created_at < before)
        .values(outcome=UsageOutcome.abandoned)
    )


# usage_totals' figures, in the order it selects them; the dollars are floats, the rest counts.
TOTALS = (
    "calls",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_usd",
    "estimated_prompt_tokens",
    "estimated_completion_tokens",
    "estimated_cost_usd",
    "reused",
    "in_flight",
)


def _figure(name: str, value: Any) -> int | float:
    return float(value) if name.endswith("_usd") else int(value)


def no_usage() -> dict[str, Any]:
    """usage_totals of a paper no call has been made for."""
    return {name: _figure(name, 0) for name in TOTALS}


def usage_totals(session: Session, *conditions: Any) -> dict[str, Any]:
    """The ledger summed: calls made, tokens and dollars, estimated beside actual. Reservations of
    calls in flight count in cost_usd (at their worst case) until the call settles."""

    def total(column: Any) -> Any:
        return func.coalesce(func.sum(column), 0)

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = session.execute(
        select(
            count(Usage.outcome.notin_(NOT_CALLS)),
            total(Usage.prompt_tokens),
            total(Usage.cached_tokens),
            total(Usage.completion_tokens),
            total(Usage.cost_usd),
            total(Usage.estimated_prompt_tokens),
            total(Usage.estimated_completion_tokens),
            total(Usage.estimated_cost_usd),
            count(Usage.outcome == UsageOutcome.reused),
            count(Usage.outcome == UsageOutcome.reserved),
        ).where(*conditions)
    ).one()
    return {name: _figure(name, value) for name, value in zip(TOTALS, row, strict=True)}
