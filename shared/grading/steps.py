"""How a step of a paper's lane ends, when it does not simply return its outcome.

The worker's task base maps these (and the infrastructure's own errors) to what happens next:
try later with backoff, fail the paper with the reason, or stop here (paused, waiting).
"""

from __future__ import annotations


class TryLater(Exception):
    """A transient condition: release the paper and run the step again after `countdown` seconds
    (None: exponential backoff). A wait the provider asked for does not count as an attempt."""

    def __init__(self, reason: str, countdown: float | None = None, *, counts_attempt: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.countdown = countdown
        self.counts_attempt = counts_attempt


class CannotMark(Exception):
    """Permanent: the paper fails with this reason, and the teacher is told."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stopped(Exception):
    """The step ended early and the paper waits where it is (paused by a cap or the quota)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome
