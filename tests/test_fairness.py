"""The short profile of bench.fairness: a 5-paper exam submitted behind another school's 40 papers
is marked ahead of most of them (real API, workers, Redis, PostgreSQL; the loopback server at a
fixed rate limit). Without the fair-share priorities it would be marked after all 40.

The time target (behind / alone at most 2) is bench.fairness's to print, not this test's: in this
short profile the 5 papers alone take 1-2 s, so the ratio swings 1.0-2.8 from run to run with the
provider's rate-limit bucket (measured 2026-12-02), where what is ahead of them does not."""

import pytest

from bench.fairness import run

pytestmark = pytest.mark.integration


def test_a_small_exam_behind_a_large_one_is_marked_ahead_of_most_of_it():
    summary = run("ci")
    assert summary["large_unfinished_when_small_submitted"] >= 30, summary  # it really was behind them
    # With every paper at one priority it finished only after all 40 (docs/operations.md); fair
    # shares let it through while a third or more still wait (19-30 of 40 in three runs here).
    assert summary["large_unfinished_when_small_done"] >= summary["large_papers"] // 3, summary
