"""The live lane's step: one provider call for a claimed paper, its reply stored first.

stored reply?  -> record it (no call)
prepare        -> the request, its cost bounds (pages sized once)
reuse?         -> copy an identical earlier result (no call)
quota paused?  -> wait with the exam
limiter        -> capacity now, or try later without counting an attempt
ledger.reserve -> the worst case against the caps, or pause
call           -> the reply, stored in its own transaction before anything else
record         -> archive, parse, marks; each may fail and run again from the stored reply
"""

from __future__ import annotations

import logging
import time
import uuid

from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.db import transaction
from shared.grading import papers
from shared.grading.marks import InvalidMarks, QuestionMark
from shared.grading.requests import MarkingContext, PreparedPaper, marking_context, prepare_paper
from shared.grading.results import archive_reply, parse_reply, record_marks
from shared.grading.reuse import reuse_earlier_result
from shared.grading.steps import CannotMark, Stopped, TryLater
from shared.limiter import TooLargeForLimit
from shared.models import PauseCause, Usage, UsageOutcome
from shared.provider import (
    FlexUnavailable,
    KeyRefused,
    ProviderReply,
    ProviderTimedOut,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    RequestRejected,
)
from shared.resources import Resources
from shared.spending import caps, ledger

log = logging.getLogger(__name__)

# How long a paid reply is held in memory while the database is unreachable, before giving up
# on it (the reservation then stays at its worst case, and the sweep retries the paper).
REPLY_STORE_SECONDS = 120.0


def call_live(res: Resources, paper_id: uuid.UUID) -> str:
    """Mark a claimed paper with one provider call (or none, when a reply is already stored)."""
    with transaction(res.sessions) as session:
        stored = ledger.stored_reply(session, paper_id)
        stored_id = stored.id if stored is not None else None
    if stored_id is not None:
        return record_stored_reply(res, paper_id, stored_id)
    prepared = _prepare(res, paper_id)
    if prepared is None:
        return "reused"
    usage_id = _reserve(res, prepared, _wait_for_capacity(res, prepared))
    reply = _call(res, prepared, usage_id)
    store_reply_first(res, usage_id, reply)
    _observe_limits(res, prepared, reply)
    return record_stored_reply(res, paper_id, usage_id)


def _prepare(res: Resources, paper_id: uuid.UUID) -> PreparedPaper | None:
    """The request, or None when an identical earlier result was reused; Stopped on a quota pause."""
    settings = res.settings
    with transaction(res.sessions) as session:
        prepared = prepare_paper(
            session,
            res.storage,
            paper_id,
            presign_seconds=settings.presign_seconds,
            max_completion_tokens=settings.max_completion_tokens,
            local_threshold=settings.local_confidence_threshold,
            flex_tries_before_standard=settings.flex_tries_before_standard,
        )
    with transaction(res.sessions) as session:
        if reuse_earlier_result(session, prepared) is not None:
            return None
        if (paused := caps.quota_pause(session, prepared.exam_id)) is not None:
            cause, reason = paused
            papers.pause(session, cause=cause, reason=reason, paper_id=paper_id, exam_id=prepared.exam_id)
    if paused is not None:
        raise Stopped("paused")
    return prepared


def _tokens_needed(prepared: PreparedPaper) -> int:
    return prepared.cost.prompt_tokens + prepared.request["max_completion_tokens"]


def _wait_for_capacity(res: Resources, prepared: PreparedPaper) -> bool:
    """Take the tokens from the shared limiter, sleeping through short waits; a long wait frees
    this worker (TryLater, not counted as an attempt). Returns whether the limiter was used."""
    if not res.settings.limiter_enabled:
        return False
    need = _tokens_needed(prepared)
    try:
        wait = res.limiter.acquire(prepared.model, need)
        while 0 < wait <= res.settings.short_wait_seconds:
            time.sleep(wait)
            wait = res.limiter.acquire(prepared.model, need)
    except TooLargeForLimit as exc:
        raise CannotMark(f"request too large: {exc}") from exc
    if wait > 0:
        raise TryLater("waiting for the provider's rate limit", wait, counts_attempt=False)
    return True


def _reserve(res: Resources, prepared: PreparedPaper, limited: bool) -> int:
    try:
        with transaction(res.sessions) as session:
            usage_id = ledger.reserve(
                session,
                exam_id=prepared.exam_id,
                school_id=prepared.school_id,
                paper_id=prepared.paper_id,
                model=prepared.model,
                cost=prepared.cost,
            ).id
            # A Flex call may wait past the provider timeout the lease allows for: hold the paper longer.
            flex = prepared.request.get("service_tier") == "flex"
            extra = max(0.0, res.settings.flex_timeout_seconds - res.settings.provider_timeout_seconds) if flex else 0.0
            papers.renew_lease(session, prepared.paper_id, extra_seconds=extra)
            return usage_id
    except caps.BudgetExceeded as exc:
        if limited:
            res.limiter.refund(prepared.model, _tokens_needed(prepared))
        with transaction(res.sessions) as session:
            papers.pause(
                session,
                cause=exc.cause,
                reason=exc.reason,
                paper_id=prepared.paper_id,
                **caps.pause_scope(exc, prepared.exam_id, prepared.school_id),
            )
        raise Stopped("paused") from exc


def _call(res: Resources, prepared: PreparedPaper, usage_id: int) -> ProviderReply:
    """The call; every failure settles the reservation and says what happens to the paper."""
    try:
        return res.provider.complete(prepared.request)
    except RateLimited as exc:
        _settle(res, usage_id, UsageOutcome.rate_limited, exc.request_id)
        if res.settings.limiter_enabled:
            res.limiter.hold(prepared.model, exc.retry_after)  # every worker holds back, not just this one
            res.limiter.observe(prepared.model, exc.headers)
        raise TryLater(exc.reason, exc.retry_after, counts_attempt=False) from exc
    except (QuotaExhausted, KeyRefused) as exc:  # the account, not the paper: the exam waits for a person
        quota = isinstance(exc, QuotaExhausted)
        with transaction(res.sessions) as session:
            outcome = UsageOutcome.insufficient_quota if quota else UsageOutcome.rejected
            ledger.settle_unpaid(session, usage_id, outcome, exc.request_id)
            cause = PauseCause.quota if quota else PauseCause.provider_key
            papers.pause(session, cause=cause, reason=exc.reason, paper_id=prepared.paper_id, exam_id=prepared.exam_id)
        raise Stopped("paused") from exc
    except FlexUnavailable as exc:  # not billed; asked again later, at the Flex tier or (if allowed) standard
        with transaction(res.sessions) as session:
            ledger.settle_unpaid(session, usage_id, UsageOutcome.flex_unavailable, exc.request_id)
            refusals = ledger.flex_refusals(session, prepared.paper_id)
        if res.settings.limiter_enabled:
            res.limiter.refund(prepared.model, _tokens_needed(prepared))
        wait = max(exc.retry_after, res.settings.flex_retry_seconds * 2 ** min(refusals - 1, 4))
        raise TryLater(exc.reason, wait, counts_attempt=False) from exc
    except RequestRejected as exc:
        _settle(res, usage_id, UsageOutcome.rejected, exc.request_id)
        raise CannotMark(exc.reason) from exc
    except ProviderTimedOut as exc:
        with transaction(res.sessions) as session:
            ledger.settle_unknown(session, usage_id, exc.request_id)
        raise TryLater(exc.reason) from exc
    except ProviderUnavailable as exc:
        _settle(res, usage_id, UsageOutcome.unavailable, exc.request_id)
        raise TryLater(exc.reason) from exc


def _settle(res: Resources, usage_id: int, outcome: UsageOutcome, request_id: str | None) -> None:
    with transaction(res.sessions) as session:
        ledger.settle_unpaid(session, usage_id, outcome, request_id)


@retry(
    retry=retry_if_exception_type(OperationalError),
    wait=wait_exponential(multiplier=0.5, max=10),
    stop=stop_after_delay(REPLY_STORE_SECONDS),
    reraise=True,
)
def store_reply_first(res: Resources, usage_id: int, reply: ProviderReply, *, batch: bool = False) -> None:
    """The paid reply into SQL, alone in its transaction, retried while the database is away."""
    with transaction(res.sessions) as session:
        ledger.store_reply(session, usage_id, reply, batch=batch)


def _observe_limits(res: Resources, prepared: PreparedPaper, reply: ProviderReply) -> None:
    """Feed the provider's headers to the limiter. Only pacing: a Redis outage here costs nothing."""
    if not res.settings.limiter_enabled:
        return
    try:
        res.limiter.observe(prepared.model, reply.headers)
        res.limiter.refund(prepared.model, prepared.request["max_completion_tokens"] - reply.completion_tokens)
    except Exception:  # noqa: BLE001 - the reply is stored; pacing catches up from the next headers
        log.warning("limiter not updated after a reply for paper %s", prepared.paper_id, exc_info=True)


# A reply that cannot be made into marks (truncated, or not the schema) is asked for once more;
# after that many, its questions go to a teacher with the reason instead of failing the paper.
UNUSABLE_REPLIES = 2


def record_stored_reply(res: Resources, paper_id: uuid.UUID, usage_id: int, *, ask_again: bool = True) -> str:
    """Archive, parse and record a stored reply. Any failure here leaves the reply stored, and the
    next run records from it: the provider is never asked twice for one reply. An unusable reply
    is asked for once more (`ask_again`; the Batch lane cannot), then goes to review."""
    threshold = res.settings.local_confidence_threshold
    with transaction(res.sessions) as session:
        reply = ledger.reply_of(session.get_one(Usage, usage_id))
        context = marking_context(session, paper_id, threshold)
    key = archive_reply(res.storage, context, reply)
    with transaction(res.sessions) as session:
        usage = session.get_one(Usage, usage_id)
        try:
            marks = parse_reply(context, reply)
        except InvalidMarks as exc:
            ledger.mark_recorded(usage, UsageOutcome.invalid_reply)
            session.flush()
            if not ask_again or ledger.unusable_replies(session, paper_id) >= UNUSABLE_REPLIES:
                reason = f"the model's reply was unusable ({exc}): a teacher must mark this answer"
                return record_marks(
                    session, context, unusable_marks(context, reason), key, local_threshold=threshold, review=reason
                ).value
            again = f"the model's reply was unusable ({exc}); asking once more"
        else:
            ledger.mark_recorded(usage, UsageOutcome.ok)
            return record_marks(session, context, marks, key, local_threshold=threshold).value
    raise TryLater(again)


def unusable_marks(context: MarkingContext, reason: str) -> dict[str, QuestionMark]:
    """Placeholder marks for the questions a reply was asked about: nothing read, for review."""
    asked = context.asked_key or context.answer_key
    return {
        q.id: QuestionMark(
            student_answer="",
            is_correct=False,
            score=0,
            knowledge_points=list(q.knowledge_points),
            error_type="illegible",
            explanation=reason,
            correction="",
            confidence=0.0,
        )
        for q in asked.questions
    }
