"""bench.offline keeps working: generated papers, read and marked against their known truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.handwriting import answer_key, make_paper

ROOT = Path(__file__).resolve().parent.parent


def test_generated_papers_carry_their_truth_and_are_the_same_every_run():
    paper = make_paper(3)
    assert paper.pages == make_paper(3).pages  # seeded: a benchmark run can be repeated
    key = answer_key(paper)
    assert [q["id"] for q in key["questions"]] == [w.question.id for w in paper.answers]
    for written in paper.answers:
        forms = (written.question.answer, *[a for a in written.question.accepted if a])
        assert (written.text in forms) == written.correct


def run_bench(module: str, *args: str) -> dict:
    """Run a benchmark as a user would; its last line, one JSON object."""
    run = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_offline_benchmark_prints_both_readings_and_its_own_layout_as_json():
    figures = run_bench(
        "bench.offline", "--papers", "1", "--held-out-seed", "20006", "--tuning-papers", "0", "--own-layout-papers", "1"
    )
    assert figures["papers"] == 1 and figures["seed"] == 20006 and figures["pages"] >= 1
    for reading in ("without_template", "with_template"):
        assert figures[reading]["questions"] > 0 and 0 <= figures[reading]["confident_share"] <= 1
        assert "kind:calc_row" in figures[reading]["by_group"] or "kind:fill" in figures[reading]["by_group"]
        assert figures[reading]["cpu_seconds_per_page"] > 0 and figures[reading]["targets_met"] in (True, False)
    assert figures["with_template"]["papers_aligned_share"] == 1.0
    assert figures["ocr_peak_memory_mb"] > 50  # the OCR engine's models are in this process
    own = figures["own_layout"]
    assert own["questions"] == len(make_paper(7000).answers)
    for share in ("confident_share", "accuracy_on_confident", "silently_wrong_share"):
        assert 0 <= own[share] <= 1
    assert 0 < own["vision_tokens_cascade"] < own["vision_tokens_all_pages"] or own["vision_tokens_cascade"] == 0
