"""The lanes: which step a paper takes next, decided in one place from its exam and its state.

Every task asks `next_step` and runs only the step it is told; nothing else in markq compares an
exam's reader or priority. A paper moves

    normalise (images queue) -> call live (calls queue) -> done                     reader vision
                                                       (at the Flex tier: priority flex)
    normalise (images queue) -> wait for a batch (beat sends it) -> done           vision, economy
    read offline (OCR queue) -> done                                               reader local
    read offline (OCR queue) -> [unsure questions] normalise -> call live -> done  reader cascade

and a paper whose paid reply is stored but not yet recorded always goes to `record`, never to a
second call. A paper past an unreleased trial run of an exam the offline reader reads first is
read (free) and then waits paused (`held_for_trial`).
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from sqlalchemy.orm import Session

from shared.models import Exam, FlexFallback, Paper, PaperStatus, PauseCause, Priority, Reader
from shared.spending import ledger
from shared.spending.costs import known_models, model_card

__all__ = ["Priority", "Reader", "Step", "next_step"]


class Step(enum.StrEnum):
    verify = "verify"  # check and decode files uploaded by URL (images queue)
    normalise = "normalise"  # decode and size the pages for the vision model (images queue)
    read_offline = "read_offline"  # the OCR engine reads and marks (OCR queue)
    call_live = "call_live"  # one provider call now (calls queue)
    record = "record"  # a stored reply waits to be recorded (calls queue, no call)
    wait_for_batch = "wait_for_batch"  # the economy lane: markq.send_batches collects it
    done = "done"  # nothing to do: finished, failed, paused, or someone else has it


ACTIVE = (PaperStatus.queued, PaperStatus.processing)


def next_step(exam: Exam, paper: Paper, *, reply_stored: bool = False) -> Step:
    """The step a queued (or claimed) paper takes next."""
    if paper.status not in ACTIVE:
        return Step.done
    if not all(page.verified for page in paper.pages):
        return Step.verify
    if reply_stored:
        return Step.record
    if reads_offline(exam) and (paper.local_reading is None or held_for_trial(exam, paper)):
        return Step.read_offline  # a paper the trial holds is read (free), then waits for release
    if exam.provider == Reader.local:
        return Step.read_offline  # read before, not recorded yet: the stored reading is marked
    if not pages_normalised(paper):
        return Step.normalise
    if exam.priority == Priority.economy:
        return Step.wait_for_batch
    return Step.call_live


def step_for(session: Session, paper_id: uuid.UUID) -> Step:
    """The next step of the paper with this id (done when there is no such paper)."""
    paper = session.get(Paper, paper_id)
    if paper is None:
        return Step.done
    exam = session.get_one(Exam, paper.exam_id)
    return next_step(exam, paper, reply_stored=ledger.stored_reply(session, paper_id) is not None)


def pages_normalised(paper: Paper) -> bool:
    return all(page.normalised_key is not None and page.sent_width is not None for page in paper.pages)


def held_for_trial(exam: Exam, paper: Paper) -> bool:
    """A paper past the exam's trial run, before the teacher releases the exam: it is read offline
    (free) and waits there, so the estimate for the rest counts what each paper will ask."""
    return paper.paused_for == PauseCause.trial and not exam.trial_released


def reads_offline(exam: Exam) -> bool:
    """The OCR engine reads this exam's papers first."""
    return exam.provider in (Reader.local, Reader.cascade)


def cuts_crops(exam: Exam) -> bool:
    """The offline reading keeps crops of the unsure questions, for the vision call after it."""
    return exam.provider == Reader.cascade


def cuts_vision_crops(exam: Exam) -> bool:
    """The vision model reads every question: with the exam's blank paper, from the questions'
    crops where that is fewer tokens than the pages."""
    return exam.provider == Reader.vision and bool(exam.template)


def asks_unsure_only(exam: Exam, paper: Paper) -> bool:
    """The vision call asks only about the questions the offline reader was unsure of."""
    return exam.provider == Reader.cascade and paper.local_reading is not None


def ends_offline(exam: Exam, unsure: list[str]) -> bool:
    """A paper read offline is finished there: a local exam, or a cascade with nothing unsure."""
    return exam.provider == Reader.local or not unsure


def priced_lane(exam: Exam) -> str | None:
    """The lane an estimate prices this exam on (None: the offline reader alone, which costs nothing)."""
    if exam.provider == Reader.local:
        return None
    if exam.provider == Reader.cascade:
        return "cascade"
    return {Priority.economy: "economy", Priority.flex: "flex"}.get(exam.priority, "vision")


def cascade_exams() -> Any:
    """The SQL condition for exams read offline first, their unsure questions sent to the model."""
    return Exam.provider == Reader.cascade


def batched_exams() -> Any:
    """The SQL condition for exams on the economy lane."""
    return Exam.priority == Priority.economy


def live_exams() -> Any:
    """The SQL condition for exams whose papers are marked as they come (not batched)."""
    return Exam.priority != Priority.economy


def reader_needs_vision(reader: Reader) -> bool:
    return reader in (Reader.vision, Reader.cascade)


def check_lane(reader: Reader, priority: Priority, unanswered: list[str], vision_available: bool) -> str | None:
    """Why an exam cannot take this lane here, in the teacher's words, or None."""
    if reader_needs_vision(reader) and not vision_available:
        return (
            f"provider {reader.value!r} needs the vision model, and this server has no OPENAI_API_KEY; "
            "use provider 'local' (offline marking against the answer key)"
        )
    if reader == Reader.local and unanswered:
        return (
            "offline marking compares each answer with the answer key, which gives no answer for "
            f"question(s) {', '.join(unanswered)}; add the answers, or use provider 'cascade' or 'vision'"
        )
    if reader != Reader.vision and priority == Priority.economy:
        return "priority 'economy' (the Batch API) is for provider 'vision' only"
    if reader == Reader.local and priority == Priority.flex:
        return "priority 'flex' is a tier of the vision model's calls; provider 'local' makes none"
    return None


def check_flex(priority: Priority, model: str) -> str | None:
    """Why this model cannot take the Flex tier, or None."""
    if priority != Priority.flex or model_card(model).flex:
        return None
    flex_models = [name for name in known_models() if model_card(name).flex]
    return f"model {model!r} has no Flex tier; flex is for {', '.join(flex_models)}"


def flex_tier(exam: Exam, flex_refusals: int, tries_before_standard: int) -> bool:
    """Whether the next call of this exam's paper asks for the Flex tier: a flex exam does, unless
    the Flex tier has refused the paper `tries_before_standard` times and the teacher allowed the
    standard tier (priced in full) as the fallback."""
    if exam.priority != Priority.flex:
        return False
    return exam.flex_fallback != FlexFallback.standard or flex_refusals < tries_before_standard
