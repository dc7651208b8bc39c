"""The short profile of bench.fairness: a 5-paper exam submitted behind another school's 40 papers
finishes within twice its time alone (real API, workers, Redis, PostgreSQL; the loopback server
at a fixed rate limit). Without the fair-share priorities it took 3.4 times as long here."""

import pytest

from bench.fairness import run

pytestmark = pytest.mark.integration


def test_a_small_exam_behind_a_large_one_finishes_within_twice_its_time_alone():
    summary = run("ci")
    assert summary["large_unfinished_when_small_submitted"] >= 30, summary  # it really was behind them
    assert summary["ratio"] <= 2.0, summary
    assert summary["large_unfinished_when_small_done"] > 0, summary  # it went ahead of the large exam
