"""The short profile of bench.faults: real API, worker and beat whose PostgreSQL, Redis and S3 pass
through fault proxies, for the faults no other test covers (a worker stopped mid-call, storage
refused at intake and while normalising)."""

import pytest

from bench.faults import run

pytestmark = pytest.mark.integration


def test_no_paper_and_no_paid_reply_is_lost_and_no_call_is_paid_twice():
    summary = run("ci")
    assert summary["cases"] == 3
    failed = [row for row in summary["rows"] if not row["passed"]]
    assert not failed, failed
    assert (summary["papers_lost"], summary["paid_replies_lost"], summary["extra_calls"]) == (0, 0, 0)
