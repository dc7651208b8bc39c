"""The task base: how a step of a paper's lane runs, in the spirit of warehouse's tasks.py.

A task body names its step and the domain function that does it; this base does the rest, the
same way for every lane:

- it asks `lanes.next_step` first and runs only its own step (anything else is sent on);
- it claims the paper (one conditional UPDATE: a duplicate delivery finds nothing to claim);
- the domain function commits its own short transactions; the next step is sent only after them;
- errors are classified once: `TryLater` and the infrastructure's transient errors (storage,
  database, Redis) release the paper and retry with backoff, counted in SQL up to max_attempts;
  `CannotMark` fails the paper with the reason; `Stopped` leaves it where it is (paused). A reply
  already paid for is stored first (shared.grading.lane_live), so a retry records it, never
  calling the provider again;
- a paper that finished (graded, needs review, failed) is announced to its webhooks, once.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable

import redis.exceptions
from flask import current_app
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import logs, webhooks
from shared.db import transaction
from shared.grading import lanes, papers
from shared.grading.steps import CannotMark, Stopped, TryLater
from shared.models import Paper, PaperStatus
from shared.resources import Resources
from shared.storage import StorageError
from worker.celery_app import PRIORITY_STEPS, FlaskTask

log = logging.getLogger(__name__)
MAX_COUNTDOWN = 600.0  # far below the broker's visibility timeout (3600 s)
TRANSIENT_COUNTDOWN = 60.0
TRANSIENT_RETRIES = 60
TRANSIENT = (StorageError, OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
FINISHED = (PaperStatus.graded, PaperStatus.needs_review, PaperStatus.failed)
STEP_TASKS = {
    lanes.Step.verify: "markq.verify_paper",
    lanes.Step.normalise: "markq.normalise_paper",
    lanes.Step.read_offline: "markq.read_paper",
    lanes.Step.call_live: "markq.grade_paper",
    lanes.Step.record: "markq.grade_paper",
}

Work = Callable[[Resources, uuid.UUID], str]


def resources() -> Resources:
    return current_app.extensions["markq"]


class PaperTask(FlaskTask):
    """Runs one lane step for one paper id."""

    abstract = True
    max_retries = None
    steps: tuple[lanes.Step, ...] = ()

    def run_step(self, paper_id: str, work: Work) -> str:
        with logs.bound(paper_id=paper_id):  # every line this step logs names its paper
            return self._run_step(paper_id, work)

    def _run_step(self, paper_id: str, work: Work) -> str:
        pid = uuid.UUID(paper_id)
        res = resources()
        with res.sessions() as session:
            step = lanes.step_for(session, pid)
            paper = session.get(Paper, pid)  # step_for loaded it: no second query
            exam_id = paper.exam_id if paper is not None else None
        with logs.bound(exam_id=exam_id):  # and its exam
            return self._claim_and_run(pid, step, res, work)

    def _claim_and_run(self, pid: uuid.UUID, step: lanes.Step, res: Resources, work: Work) -> str:
        if step not in self.steps:
            send_step(self.app, pid, step)
            return f"sent on: {step}"
        if not self._claim(res, pid):
            return "not claimed"
        try:
            outcome = work(res, pid)
        except Stopped as stop:
            return stop.outcome
        except CannotMark as exc:
            return self._fail(res, pid, exc.reason)
        except TryLater as exc:
            return self._try_later(res, pid, exc.reason, exc.countdown, counts_attempt=exc.counts_attempt)
        except TRANSIENT as exc:
            # Storage, the database or Redis away: not the paper's fault, so not an attempt, for
            # up to about an hour of tries (a minute apart at most); then it counts as one.
            retries = self.request.retries or 0
            log.warning("paper %s: %s; trying again (%d)", pid, exc, retries, exc_info=True)
            countdown = min(TRANSIENT_COUNTDOWN, 2.0 ** min(retries, 10)) * random.uniform(0.5, 1.0)
            return self._try_later(
                res, pid, f"{type(exc).__name__}: {exc}", countdown, counts_attempt=retries >= TRANSIENT_RETRIES
            )
        except Exception as exc:  # a page that cannot be decoded, a bug: the teacher sees why
            log.exception("paper %s failed in %s", pid, self.name)
            return self._fail(res, pid, f"{self.name.removeprefix('markq.')} failed: {exc}")
        advance(self.app, res, pid)
        return outcome

    @staticmethod
    def _claim(res: Resources, pid: uuid.UUID) -> bool:
        with transaction(res.sessions) as session:
            return papers.claim(session, pid)

    def _fail(self, res: Resources, pid: uuid.UUID, reason: str) -> str:
        with transaction(res.sessions) as session:
            papers.fail(session, pid, reason)
        notify(self.app, res, pid)
        return "failed"

    def _try_later(
        self, res: Resources, pid: uuid.UUID, reason: str, countdown: float | None, *, counts_attempt: bool
    ) -> str:
        """Release the paper and retry after `countdown` (None: exponential backoff with jitter);
        past max_attempts, fail it with the reason. With the database away, the sweep takes over."""
        attempts, gave_up = 1, False
        try:
            with transaction(res.sessions) as session:
                attempts = session.get_one(Paper, pid).attempts
                gave_up = counts_attempt and attempts >= res.settings.max_attempts
                if gave_up:
                    papers.fail(session, pid, f"gave up after {attempts} attempts: {reason}")
                else:
                    papers.release(session, pid, reason=reason, refund_attempt=not counts_attempt)
        except TRANSIENT:
            log.warning("paper %s could not be released (%s); the sweep will take it back", pid, reason)
        if gave_up:
            notify(self.app, res, pid)
            return "failed"
        if countdown is None:
            countdown = min(MAX_COUNTDOWN, 2.0**attempts) * random.uniform(0.5, 1.0)
        else:
            countdown = countdown * random.uniform(1.0, 1.1)
        raise self.retry(countdown=min(MAX_COUNTDOWN, countdown))


# Fair share: a paper's priority falls with the papers of its own exam still ahead of it, a step
# every FAIR_SHARE papers. A class's 5 papers submitted behind another school's 300 wait for at
# most FAIR_SHARE of them on each queue, not all 300.
FAIR_SHARE = 4


def fair_priority(pid: uuid.UUID, session: Session | None = None) -> int:
    """0 (first) to 9: this paper's place among its exam's unfinished papers, in steps; asked in
    the caller's `session` when it has one, else in a session of its own."""
    try:
        if session is not None:
            ahead = papers.unfinished_ahead(session, pid)
        else:
            with resources().sessions() as own:
                ahead = papers.unfinished_ahead(own, pid)
    except TRANSIENT:  # the database away: queue it anyway, at the lowest priority
        return PRIORITY_STEPS[-1]
    return min(PRIORITY_STEPS[-1], ahead // FAIR_SHARE)


def send_step(app: object, pid: uuid.UUID, step: lanes.Step, priority: int | None = None) -> None:
    """Queue the task of `step` (nothing for done, or a paper waiting for its batch), at its
    exam's fair-share priority (`priority` when the caller took it in its own transaction)."""
    if (name := STEP_TASKS.get(step)) is not None:
        if priority is None:
            priority = fair_priority(pid)
        app.send_task(name, args=(str(pid),), priority=priority)  # type: ignore[attr-defined]


def advance(app: object, res: Resources, pid: uuid.UUID) -> None:
    """After a step's transactions committed: send the next step, or announce a finished paper."""
    with res.sessions() as session:
        step = lanes.step_for(session, pid)
        finished = session.get_one(Paper, pid).status in FINISHED
    if step == lanes.Step.done and finished:
        notify(app, res, pid)
    else:
        send_step(app, pid, step)


def notify(app: object, res: Resources, pid: uuid.UUID) -> None:
    """Queue the webhook deliveries of a finished paper (and of its exam, if done)."""
    with transaction(res.sessions) as session:
        ids = webhooks.queue_events(session, pid)
    for delivery_id in ids:
        app.send_task("markq.deliver_webhook", args=(delivery_id,))  # type: ignore[attr-defined]
