"""The short profile of bench.throughput: real API, Redis, PostgreSQL and workers against the
loopback server enforcing a requests-per-minute limit."""

import pytest

from bench.throughput import run

pytestmark = pytest.mark.integration


def test_markq_keeps_close_to_the_rate_limit_without_429s():
    summary = run("ci")
    markq = summary["runs"]["markq"]
    assert markq["failed"] == 0 and markq["graded"] == markq["papers"]
    # The full benchmark's target is 0.9; the short profile's 20 s window leaves a little less room.
    assert markq["ratio_to_maximum"] >= 0.85, markq
    assert markq["share_429"] <= 0.02, markq
